"""The difference attack: it singles out a one-record deletion, and label-only outputs stop it.

The scoring on hand-made outputs; the attack on a real SISA ensemble of digits (the
default S=8, R=4 MLP, as in the issue's measurement on main) trained once, with three
single-record forgets each on a fresh copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unlearn_ops.errors import ConfigError
from unlearn_ops.params import Params, ReleaseParams
from unlearn_ops.privacy.mitigations import limit_outputs
from unlearn_ops.privacy.pair import difference_attack, difference_scores, score_attack


def test_the_scores_are_the_true_label_drop_and_the_l2_move() -> None:
    parent = np.array([[0.7, 0.3], [0.4, 0.6]])
    child = np.array([[0.2, 0.8], [0.4, 0.6]])

    scores = difference_scores(parent, child, np.array([0, 1]))

    np.testing.assert_allclose(scores["true_label"], [0.5, 0.0])
    np.testing.assert_allclose(scores["l2"], [np.sqrt(0.5), 0.0])


def test_outputs_of_two_shapes_or_a_label_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        difference_scores(np.ones((3, 2)), np.ones((3, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 2\)"):
        difference_scores(np.ones((3, 2)), np.ones((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match="needs deleted and other records"):
        score_attack("l2", np.array([]), np.array([0.1]))


def test_separated_scores_give_auc_one_and_full_tpr_with_intervals() -> None:
    rng = np.random.default_rng(0)
    result = score_attack("l2", rng.uniform(2, 3, 20), rng.uniform(0, 1, 500), rounds=200)

    assert result.auc == 1.0
    assert result.tpr_at_1pct_fpr == 1.0
    assert result.auc_ci == (1.0, 1.0)
    assert (result.positives, result.negatives) == (20, 500)


def test_identical_versions_leak_nothing() -> None:
    rng = np.random.default_rng(1)
    outputs = rng.dirichlet(np.ones(3), 200)
    deleted = np.zeros(200, dtype=bool)
    deleted[:10] = True

    results = difference_attack(outputs, outputs, rng.integers(0, 3, 200), deleted, rounds=100)

    assert results["true_label"].auc == 0.5
    assert results["l2"].auc == 0.5


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, ...]]:
    """(parent outputs, child outputs, labels, deleted mask) for three one-record forgets."""
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.datasets import load_digits
    from unlearn_ops.sisa.ensemble import SisaEnsemble

    params = Params()
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    root: Path = tmp_path_factory.mktemp("pair") / "parent"
    parent = SisaEnsemble(root, params, settings)
    parent.fit(load_digits())
    columns = parent.columns()
    table = pd.concat([parent.read_shard(s) for s in parent.shard_ids], ignore_index=True)
    features = table[list(columns.feature_columns)].to_numpy(np.float32)
    labels = table[columns.label_column].to_numpy()
    before = parent.predict_proba(features)
    found = []
    for draw, row in enumerate(np.random.default_rng(0).choice(len(table), 3, replace=False)):
        copy = root.parent / f"child-{draw}"
        shutil.copytree(root, copy)
        child = SisaEnsemble(copy, params, settings)
        child.forget([table[columns.id_column].iloc[row]])
        deleted = np.zeros(len(table), dtype=bool)
        deleted[row] = True
        found.append((before, child.predict_proba(features), labels, deleted))
    return found


def test_a_one_record_deletion_is_singled_out(pairs: list[tuple[np.ndarray, ...]]) -> None:
    aucs = [difference_attack(*pair, rounds=50)["true_label"].auc for pair in pairs]

    assert np.median(aucs) >= 0.95


def test_label_only_outputs_bring_the_attack_down(pairs: list[tuple[np.ndarray, ...]]) -> None:
    label_only = ReleaseParams(outputs="label")
    aucs = []
    for parent, child, labels, deleted in pairs:
        served = (limit_outputs(parent, label_only), limit_outputs(child, label_only))
        aucs.append(difference_attack(*served, labels, deleted, rounds=50)["true_label"].auc)

    assert np.median(aucs) <= 0.6
