"""The online membership test (IN and OUT references) on synthetic confidences.

Records whose phi under IN models sits above their phi under OUT models by a
record-specific gap, as LiRA's Gaussians model them: the test must find targets drawn
from the IN side, let targets drawn from the OUT side pass, and flag never-seen records
at about alpha.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_ops.privacy.confidence import AuditSamples, ConfidenceSample, split_heldout
from unlearn_ops.privacy.membership import audit_membership
from unlearn_ops.privacy.references import inclusion_plan
from unlearn_ops.privacy.scoring import score_membership

MODELS = 32
CANDIDATES = 100
HELDOUT = 600


def draw(rng: np.random.Generator, records: int, member: bool) -> ConfidenceSample:
    """phi under a target and MODELS references, half of them IN for each record."""
    mu_out = rng.normal(4.0, 2.0, records)
    gap = rng.exponential(1.0, records)  # most records barely move; a few move a lot
    sd = rng.uniform(0.5, 1.5, records)
    inside = inclusion_plan(records, MODELS, 0.5, int(rng.integers(1 << 30)))
    noise = rng.normal(0.0, 1.0, (MODELS, records)) * sd
    references = mu_out + inside * gap + noise
    target = mu_out + member * gap + rng.normal(0.0, 1.0, records) * sd
    return ConfidenceSample(target, references, inside=inside)


def samples(seed: int, member: bool) -> AuditSamples:
    rng = np.random.default_rng(seed)
    calibration, control = split_heldout(draw(rng, HELDOUT, member=False))
    return AuditSamples(draw(rng, CANDIDATES, member), calibration, control)


def test_inclusion_plan_puts_every_record_in_the_same_number_of_models() -> None:
    plan = inclusion_plan(50, 16, 0.5, seed=3)
    assert plan.shape == (16, 50)
    assert set(plan.sum(axis=0)) == {8}
    assert (plan == inclusion_plan(50, 16, 0.5, seed=3)).all()  # seeded
    assert not (plan == inclusion_plan(50, 16, 0.5, seed=4)).all()
    assert set(inclusion_plan(50, 16, 0.01, seed=3).sum(axis=0)) == {2}  # at least 2 IN
    with pytest.raises(ValueError, match="at least 4"):
        inclusion_plan(5, 3, 0.5, seed=0)


def test_online_scores_rank_members_above_never_seen_records() -> None:
    members = score_membership(samples(0, member=True))
    outs = score_membership(samples(0, member=False))
    assert members.method == outs.method == "online"
    assert np.median(members.candidates) > np.median(members.heldout)
    assert members.candidates.mean() > outs.candidates.mean()
    # Never-seen records' p-values (read off the calibration half) are about uniform; the
    # rate under 1% shares one noisy threshold per draw, so it is averaged over draws.
    p_null = outs.p_values("heldout")
    assert 0.4 < np.median(p_null) < 0.6
    rates = [
        np.mean(score_membership(samples(s, False)).p_values("heldout") < 0.01) for s in range(8)
    ]
    assert 0.005 < np.mean(rates) < 0.025


def test_too_few_calibration_records_fall_back_to_the_offline_test() -> None:
    scored = score_membership(samples(0, member=True), min_calibration=HELDOUT)
    assert scored.method == "offline"  # the calibration half holds HELDOUT / 2 records


def test_the_online_audit_fails_a_member_and_passes_a_non_member_with_power() -> None:
    remembered = audit_membership(samples(1, member=True), samples(1, member=True), resamples=200)
    assert remembered.verdict == "fail", remembered.reason
    assert remembered.method == "online"
    forgotten = audit_membership(samples(1, member=False), samples(1, member=True), resamples=200)
    assert forgotten.verdict == "pass", forgotten.reason
    assert forgotten.control_tpr_1 is not None
    assert forgotten.control_tpr_1.value >= 0.10
    assert forgotten.auc.low < 0.5 < forgotten.auc.high
    no_power = audit_membership(samples(1, member=False), samples(1, member=False), resamples=200)
    assert no_power.verdict == "inconclusive", no_power.reason
