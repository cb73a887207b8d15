"""The `make bench` harness: the core (training and forgetting) and the flows end to end."""
