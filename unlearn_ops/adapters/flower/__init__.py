"""Flower (flwr 1.42) driven through its own environment's command line: run, status, nodes."""
