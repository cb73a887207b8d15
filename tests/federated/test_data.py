"""The hmnist loader (on generated files of that layout), the Dirichlet split, label flipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.federated.conftest import blobs
from unlearn_ops.errors import DatasetError
from unlearn_ops.federated.data import (
    HMNIST_PIXELS,
    flip_labels,
    load_hmnist_csv,
    make_federated_data,
    split_dirichlet,
)


def _hmnist(path: Path, rows: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.integers(0, 256, size=(rows, 784)), columns=list(HMNIST_PIXELS))
    frame["label"] = rng.integers(0, 7, size=rows)
    frame.to_csv(path, index=False)
    return frame


def test_load_hmnist_scales_pixels_and_keeps_labels(tmp_path: Path) -> None:
    frame = _hmnist(tmp_path / "hmnist_28_28_L.csv")
    features, labels = load_hmnist_csv(tmp_path / "hmnist_28_28_L.csv")
    assert features.shape == (20, 784)
    assert features.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_allclose(features * 255.0, frame[list(HMNIST_PIXELS)].to_numpy(), atol=1e-4)
    np.testing.assert_array_equal(labels, frame["label"].to_numpy())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["pixel0100"]), "missing column(s) pixel0100"),
        (lambda f: f.drop(columns=["label"]), "missing column(s) label"),
        (lambda f: f.assign(label=7), "label 7 out of range"),
        (lambda f: f.assign(pixel0000=300), "pixel values must lie in 0..255"),
        (lambda f: f.assign(pixel0001="dark"), "must be numbers"),
        (lambda f: f.assign(label=1.5), "non-negative integers"),
        (lambda f: f.iloc[:0], "no rows"),
    ],
)
def test_bad_hmnist_files_raise_one_clear_error(tmp_path: Path, change, message: str) -> None:
    path = tmp_path / "hmnist.csv"
    frame = _hmnist(path)
    change(frame).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_hmnist_csv(path)


def test_missing_or_unreadable_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_hmnist_csv(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="not a readable CSV"):
        load_hmnist_csv(tmp_path / "empty.csv")


def test_dirichlet_split_is_a_seeded_partition() -> None:
    x, y = blobs(per_class=60)
    first = split_dirichlet(x, y, num_clients=5, alpha=0.5, seed=7)
    again = split_dirichlet(x, y, num_clients=5, alpha=0.5, seed=7)
    other = split_dirichlet(x, y, num_clients=5, alpha=0.5, seed=8)
    assert [c.digest() for c in first] == [c.digest() for c in again]
    assert [c.digest() for c in first] != [c.digest() for c in other]
    assert sum(c.num_examples for c in first) == len(y)
    assert all(c.num_examples >= 10 for c in first)
    rows = {tuple(r) for c in first for r in np.round(c.features, 5)}
    assert len(rows) == len(y)  # every example in exactly one client
    assert [c.client_id for c in first] == [f"client-0{i}" for i in range(5)]


def test_small_alpha_gives_skewed_clients() -> None:
    x, y = blobs(per_class=100)
    skewed = split_dirichlet(x, y, num_clients=4, alpha=0.1, seed=1)
    even = split_dirichlet(x, y, num_clients=4, alpha=100.0, seed=1)

    def top_share(clients) -> float:
        return float(np.mean([np.bincount(c.labels).max() / c.num_examples for c in clients]))

    assert top_share(skewed) > top_share(even) + 0.2


def test_holdout_and_root_sets_are_disjoint_from_clients() -> None:
    x, y = blobs()
    data = make_federated_data(x, y, num_clients=3, alpha=1.0, seed=0, root_size=20)
    assert len(data.root_labels) == 20
    client_rows = {r.tobytes() for c in data.clients for r in c.features}
    assert not client_rows & {r.tobytes() for r in data.test_features}
    assert not client_rows & {r.tobytes() for r in data.root_features}
    total = sum(c.num_examples for c in data.clients) + len(data.test_labels) + 20
    assert total == len(y)


def test_flip_labels_relabels_only_the_source_class() -> None:
    x, y = blobs(per_class=10)
    client = split_dirichlet(x, y, num_clients=1, alpha=1.0, seed=0)[0]
    flipped = flip_labels(client, source_class=0, target_class=2)
    assert not np.any(flipped.labels == 0)
    assert np.sum(flipped.labels == 2) == np.sum(client.labels == 2) + np.sum(client.labels == 0)
    assert np.array_equal(flipped.labels[client.labels == 1], client.labels[client.labels == 1])
    assert flipped.digest() != client.digest()
