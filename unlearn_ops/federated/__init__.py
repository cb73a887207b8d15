"""Federated unlearning: clients that leave or are expelled from a federation, exactly or not.

The strategy code is a pure library (numpy and torch, no Flower import), so that the same
functions run in the in-process simulation engine (:mod:`.simulation`, the benchmark and
most tests) and in a real Flower deployment (a ServerApp calling :mod:`.averaging`,
:mod:`.groups`, :mod:`.detection` and :mod:`.removal`; a ClientApp calling
:func:`unlearn_ops.federated.client.local_update`).

Modules: :mod:`.config` (the federation's params), :mod:`.data` (client tables: the HAM10000
`hmnist_28_28_L.csv` layout, a non-IID Dirichlet split, label flipping), :mod:`.client`
(deterministic local training), :mod:`.averaging` (FedAvg), :mod:`.calibration`
(FedEraser's arithmetic), :mod:`.groups` (KNOT-style client groups, round checkpoints),
:mod:`.history` (stored client updates for FedEraser), :mod:`.detection` (FLTrust and
FoolsGold scores, flagging), :mod:`.removal` (exact and approximate client removal),
:mod:`.simulation` (the in-process engine).
"""
