"""The Flower App of unlearn-ops: federated training by client groups, and client removal.

The ServerApp (:mod:`.server_app`) reads a plan (which groups to train, with which
clients, the federation's params, where to write), federates each group with
:class:`.strategy.GroupFedAvg`, and writes every group's round checkpoints, the clients'
updates and a `result.json`. The ClientApp (:mod:`.client_app`) trains the site's own
table with :func:`unlearn_ops.federated.client.local_update`. Both run in .venv-flower;
the strategy's arithmetic is the pure library :mod:`unlearn_ops.federated`, so the
simulation engine and this deployment compute the same thing.
"""
