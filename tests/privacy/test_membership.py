"""The membership audit on digits: it fails a weak forget, passes an exact SISA forget.

Tiny MLPs on a small subset of digits (60 records per shard, 512 hidden units, many
epochs) memorise enough for the positive control to find the records: the audit has power
here, which is what makes its pass mean something.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from unlearn_ops.privacy.confidence import (
    AuditSamples,
    ConfidenceSample,
    logit_confidence,
    module_confidences,
    shard_sample,
    shard_samples,
    split_heldout,
)
from unlearn_ops.privacy.membership import audit_membership

SHARDS = 8
TRAIN = 480
HELDOUT = 360
FORGOTTEN = 100
EPOCHS = 200


def fit(features: np.ndarray, labels: np.ndarray, seed: int) -> torch.nn.Module:
    """A 512-unit MLP trained to memorise (Adam, batch 32, no regularisation)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 32):
            batch = order[start : start + 32]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    """A fixed split: held-out, training records, their shards, the records to forget."""
    torch.set_num_threads(1)
    features, labels = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    held, train = order[:HELDOUT], order[HELDOUT : HELDOUT + TRAIN]
    forgotten = np.zeros(TRAIN, dtype=bool)
    forgotten[rng.choice(TRAIN, FORGOTTEN, replace=False)] = True
    return {
        "x": (features / 16).astype(np.float32),
        "y": labels.astype(np.int64),
        "held": held,
        "train": train,
        "shard": np.arange(TRAIN) % SHARDS,
        "forgotten": forgotten,
    }


def test_logit_confidence_is_stable_and_matches_the_definition() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [800.0, 0.0, 0.0]])
    phi = logit_confidence(logits, np.array([0, 0]))
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert phi[0] == pytest.approx(np.log(p[0]) - np.log(1 - p[0]))
    assert phi[1] == pytest.approx(800.0 - np.log(2.0))  # p_y rounds to 1: no inf


def test_shard_sample_takes_the_own_shard_as_target_and_the_others_as_references() -> None:
    phi = np.arange(12, dtype=float).reshape(3, 4)  # 3 shards, 4 records
    sample = shard_sample(phi, [0, 1, 2, 1])
    assert sample.target.tolist() == [0.0, 5.0, 10.0, 7.0]
    assert sample.references[:, 0].tolist() == [4.0, 8.0]
    assert sample.references[:, 2].tolist() == [2.0, 6.0]
    assert sample.groups.tolist() == [0, 1, 2, 1]
    calibration, control = split_heldout(sample)
    assert calibration.target.tolist() == [0.0, 10.0]
    assert control.target.tolist() == [5.0, 7.0]


def test_confidence_sample_refuses_a_single_reference() -> None:
    with pytest.raises(ValueError, match="models >= 2"):
        ConfidenceSample(np.zeros(3), np.zeros((1, 3)))


def sisa_samples(data: dict[str, np.ndarray], models: list[torch.nn.Module]) -> AuditSamples:
    x, y, train = data["x"], data["y"], data["train"]
    rows = train[data["forgotten"]]
    return shard_samples(
        module_confidences(models, x[rows], y[rows]),
        data["shard"][data["forgotten"]],
        module_confidences(models, x[data["held"]], y[data["held"]]),
    )


def test_an_exact_sisa_forget_passes_with_a_working_positive_control(
    digits: dict[str, np.ndarray],
) -> None:
    x, y, train, shard, gone = (digits[k] for k in ("x", "y", "train", "shard", "forgotten"))
    parent = [fit(x[train[shard == s]], y[train[shard == s]], s) for s in range(SHARDS)]
    new = [
        fit(x[train[(shard == s) & ~gone]], y[train[(shard == s) & ~gone]], s)
        for s in range(SHARDS)
    ]
    audit = audit_membership(sisa_samples(digits, new), sisa_samples(digits, parent))
    assert audit.verdict == "pass", audit.reason
    assert audit.flagged <= audit.allowed <= 3
    assert audit.control_tpr_1 is not None
    assert audit.control_tpr_1.value >= 0.10
    assert audit.auc.low < 0.5 < audit.auc.high  # forgotten records look never seen
    assert set(audit.scores) == {"forgotten", "positive control", "negative control"}
    # Deterministic: the same version audited twice gives the same numbers.
    again = audit_membership(sisa_samples(digits, new), sisa_samples(digits, parent))
    assert again.to_dict() == audit.to_dict()
    # Without the parent's models there is no power to show: never a pass.
    alone = audit_membership(sisa_samples(digits, new), None)
    assert alone.verdict == "inconclusive"


@pytest.mark.slow
def test_a_weak_forget_is_reported_as_remembering(digits: dict[str, np.ndarray]) -> None:
    x, y, train, gone = digits["x"], digits["y"], digits["train"], digits["forgotten"]
    retained = train[~gone]
    original = fit(x[train], y[train], 100)
    # The weak forget: a few fine-tuning steps on the retained records only.
    weak = copy.deepcopy(original)
    optimizer = torch.optim.Adam(weak.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    features, labels = torch.from_numpy(x[retained]), torch.from_numpy(y[retained])
    for _ in range(5):
        batch = torch.randint(0, len(labels), (64,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(weak(features[batch]), labels[batch]).backward()
        optimizer.step()
    # OUT references for a monolithic model: retrained on the retained records, other seeds.
    references = [fit(x[retained], y[retained], 200 + k) for k in range(4)]

    def samples(target: torch.nn.Module) -> AuditSamples:
        parts = []
        for rows in (train[gone], digits["held"]):
            phi = module_confidences([target, *references], x[rows], y[rows])
            parts.append(ConfidenceSample(phi[0], phi[1:]))
        calibration, control = split_heldout(parts[1])
        return AuditSamples(parts[0], calibration, control)

    audit = audit_membership(samples(weak), samples(original))
    assert audit.verdict == "fail", audit.reason
    assert audit.flagged > audit.allowed
    assert audit.auc.low > 0.5
