"""Pipeline parameters (`params.yaml`): the *what* of a run, parsed once into frozen models.

`params.yaml` holds S, R, the seed, the model, training and gate settings and the dataset
spec. Settings (where things live, secrets) are in :mod:`unlearn_ops.settings` instead.

Why this module is long: it is the one schema of `params.yaml`, one small frozen model
per section (with its field descriptions, the documentation users read); splitting the
sections across modules would scatter that schema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unlearn_ops.errors import ConfigError

__all__ = [
    "ApprovalCondition",
    "ApprovalParams",
    "ApprovalRule",
    "ComplianceParams",
    "DatasetParams",
    "DpParams",
    "FairnessGateParams",
    "GateParams",
    "ModelParams",
    "Params",
    "RegistryParams",
    "ReleaseParams",
    "SisaParams",
    "TrainingParams",
    "UnlearningParams",
    "load_params",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# A share of a whole, from 0 to 1: an accuracy, a drop of one, a part of a full training.
_Share = Annotated[float, Field(ge=0.0, le=1.0)]


class DatasetParams(_Frozen):
    """Which table to learn from and how to read it."""

    source: str = Field("digits", description="A built-in dataset name or a .csv/.parquet path.")
    id_column: str = Field("record_id", description="Column with the unique record id.")
    label_column: str = Field("label", description="Column with the integer class label.")
    feature_columns: tuple[str, ...] | None = Field(
        None, description="Feature columns; all other columns when omitted."
    )
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of records kept out of training for evaluation."
    )
    subject_column: str | None = Field(
        None,
        description="Column naming the data subject of each record (a file's column), so "
        "that a request can name a subject instead of records.",
    )
    sensitive_column: str | None = Field(
        None,
        description="Column of a group attribute (a file's column), kept beside the features "
        "and never one: the fairness gate reports held-out accuracy per group.",
    )

    @model_validator(mode="after")
    def _sensitive_column_is_no_feature(self) -> DatasetParams:
        column = self.sensitive_column
        taken = (self.id_column, self.label_column, *(self.feature_columns or ()))
        if column is not None and column in taken:
            raise ValueError(
                f"sensitive_column {column!r} is the id, the label or a feature column: "
                "a group attribute is kept beside the features, never used as one"
            )
        return self


class SisaParams(_Frozen):
    """Sharding and slicing (Bourtoule et al. 2021, section IV)."""

    shards: int = Field(8, ge=1, le=1024, description="S: number of disjoint shards.")
    slices: int = Field(4, ge=1, le=256, description="R: slices per shard (training stages).")
    salt: str = Field(
        "unlearn-ops", min_length=1, description="Key of the hash that assigns records."
    )
    aggregation: Literal["mean", "vote"] = Field(
        "mean", description="How shard outputs combine: mean of probabilities or majority vote."
    )


class ModelParams(_Frozen):
    """The shard model, built by a registered factory (see :mod:`unlearn_ops.sisa.models`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str = Field("mlp", description="Registered model factory name.")
    hidden_sizes: tuple[int, ...] = Field((128,), description="MLP hidden layer widths.")
    channels: tuple[int, ...] = Field((16, 32), description="CNN channels per conv block.")
    image_shape: tuple[int, int, int] | None = Field(
        None, description="(channels, height, width) for image models; inferred if square."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout rate (seeded).")


class DpParams(_Frozen):
    """DP-SGD training of the shards (opacus, the `dp` extra); off by default.

    Each shard is trained to (epsilon, delta) over all its stages; the accountant's
    figures go into the version's tags (see :mod:`unlearn_ops.privacy.mitigations`).
    """

    enabled: bool = Field(False, description="Train every shard with DP-SGD.")
    epsilon: float = Field(8.0, gt=0.0, le=1000.0, description="Target epsilon per shard.")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="Target delta per shard.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Per-sample gradient clipping norm.")


class TrainingParams(_Frozen):
    """How each SISA stage is trained, and whether the workspace is SISA or monolithic."""

    mode: Literal["sisa", "monolithic"] = Field(
        "sisa",
        description="`sisa`: forgets retrain the affected shards exactly. `monolithic`: one "
        "model on all the data (sisa.shards = sisa.slices = 1); a forget runs "
        "`unlearning.method` at once (a provisional version) and a full retrain follows.",
    )
    epochs_per_stage: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    dp: DpParams = DpParams()


class FairnessGateParams(_Frozen):
    """The fairness gate: per-class recall and per-group accuracy against the champion.

    A class or group fails when its drop exceeds the limit and is significant at
    `gates.significance` (Bonferroni-corrected over the cells gated; see
    :mod:`unlearn_ops.privacy.fairness`).
    """

    enabled: bool = Field(True, description="Run the fairness gate in every flow that gates.")
    max_class_recall_drop: _Share = Field(
        0.1, description="Largest recall drop of any class against the champion."
    )
    max_group_accuracy_drop: _Share = Field(
        0.05, description="Largest accuracy drop of any group (dataset.sensitive_column)."
    )
    min_group_size: int = Field(
        30,
        ge=1,
        description="Held-out records a group needs to be gated; smaller ones are reported.",
    )


class GateParams(_Frozen):
    """Thresholds that a new model version must meet to be promoted.

    The drop against the champion fails only when it exceeds `max_accuracy_drop` and is
    significant at `significance` on the held-out records both versions are compared on
    (see :mod:`unlearn_ops.serving.gates`).
    """

    min_accuracy: _Share = Field(0.8, description="Held-out accuracy floor.")
    max_accuracy_drop: _Share = Field(
        0.02, description="Largest accuracy drop against the champion."
    )
    significance: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="Level of the one-sided paired test a drop over the limit must pass to "
        "fail the gate (a drop that chance explains on this few records passes).",
    )
    fairness: FairnessGateParams = FairnessGateParams()
    privacy: bool = Field(
        False,
        description="Run the membership audit on every forget (docs/PRIVACY_AUDIT.md): a "
        "`fail` verdict fails the gate; `inconclusive` passes it and says so.",
    )


class RegistryParams(_Frozen):
    """Where versions are registered (the MLflow server itself comes from settings)."""

    model_name: str = Field(
        "unlearn-ops-model",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="Registered model name in MLflow.",
    )


class ComplianceParams(_Frozen):
    """Legal deadline and retention of superseded artifacts."""

    deadline_days: int = Field(
        30, ge=1, le=3650, description="Days from a request to the first version honouring it."
    )
    retention_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="Days a superseded version that still holds forgotten records is kept "
        "(for rollback by replay and audit) before `purge` deletes it.",
    )
    holds: Literal["whole", "partial"] = Field(
        "whole",
        description="A request naming records under a legal hold waits entirely (`whole`) "
        "or has its other records erased now (`partial`).",
    )


class ApprovalCondition(_Frozen):
    """When a rule applies: every condition given must hold (none given is refused).

    The retraining share and the expected accuracy change are the approval form's
    (:func:`unlearn_ops.deletion.approval.approval_summary`); an expected change that is
    unknown (no forget version yet) fails `max_accuracy_change`. A federation client's
    withdrawal names no record: `min_records` and `max_records` never hold for it, and its
    retraining share is its group's remaining clients over the whole federation's
    (:func:`unlearn_ops.deletion.approval.withdrawal_summary`).
    """

    withdrawal: bool | None = Field(
        None,
        description="true: only a federation client's withdrawal; false: only record "
        "deletions; unset: both.",
    )

    max_retrain_share: _Share | None = Field(
        None, description="At most this share of a full training retrains."
    )
    max_accuracy_change: _Share | None = Field(
        None, description="The expected accuracy drop is at most this."
    )
    min_records: int | None = Field(None, ge=1, description="The batch forgets at least this.")
    max_records: int | None = Field(None, ge=1, description="The batch forgets at most this.")
    reasons: tuple[str, ...] | None = Field(
        None, min_length=1, description="Some request's reason is one of these (exact text)."
    )

    @model_validator(mode="after")
    def _names_a_condition(self) -> ApprovalCondition:
        if all(value is None for value in self.model_dump().values()):
            raise ValueError("`when` names no condition (use `default` for a catch-all)")
        return self


class ApprovalRule(_Frozen):
    """One approval rule: `when` it applies, `then` what happens (first match wins)."""

    name: str | None = Field(None, description="Its name in the ledger (`rule N` if none).")
    when: ApprovalCondition
    then: Literal["auto", "ask"]


class ApprovalParams(_Frozen):
    """Whether a drain asks a person before retraining for a batch (issue 16).

    The rules are tried in order and the first whose `when` holds decides; `default`
    decides when none does. `UNLEARN_OPS_APPROVAL_REQUIRED=true` still means "always ask".
    """

    rules: tuple[ApprovalRule, ...] = ()
    default: Literal["auto", "ask"] = "auto"


class ReleaseParams(_Frozen):
    """What a release gives away about the pair of versions around a deletion (issue 12).

    The defaults keep the behaviour before these switches: every request is released as
    soon as it is drained, the served model answers every class probability, and the
    weights are released as trained. See docs/PRIVACY_AUDIT.md for what each one costs.
    """

    min_batch: int = Field(
        1,
        ge=1,
        le=100_000,
        description="Hold a release until this many requests wait (the legal deadline, "
        "compliance.deadline_days, still forces it).",
    )
    deadline_margin_days: float = Field(
        1.0,
        ge=0.0,
        description="Release a held batch this many days before its oldest request's deadline.",
    )
    outputs: Literal["probabilities", "top_k", "rounded", "label"] = Field(
        "probabilities",
        description="What the served model answers: every probability, the top k only, "
        "probabilities rounded, or the label only.",
    )
    top_k: int = Field(1, ge=1, description="Probabilities kept with outputs: top_k.")
    decimals: int = Field(1, ge=0, le=6, description="Decimals kept with outputs: rounded.")
    weight_noise: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="Standard deviation of fresh Gaussian noise added to released weights.",
    )


class UnlearningParams(_Frozen):
    """How a monolithic workspace forgets before its exact retrain (docs: PRIVACY.md), and
    how a federation's drain removes a client withdrawn through the inbox.

    `method` is a registered approximate method (:func:`unlearn_ops.approx.base.run_method`),
    `options` override its paper's defaults. The provisional version is audited against
    `reference_models` retrain oracles (models trained without the forgotten records,
    cached by content key like the checkpoints); 0 skips the audit. `withdrawals`: `exact`
    retrains the client's group; `federaser` erases it approximately at once (a provisional
    version; `federation remove-exactly` owes the exact removal by the deadline), exactly
    where the group cannot be erased.
    """

    # SalUn: the one method the per-example audit did not flag on the benchmark's random
    # forget sets, with the learning rate tuned there for these MLPs (docs/APPROXIMATE.md).
    method: str = Field("salun", min_length=1, description="Approximate method's name.")
    options: dict[str, float | int | bool | str] = Field(
        default_factory=lambda: dict[str, float | int | bool | str](lr=0.001),
        description="Options of the method over its paper's defaults.",
    )
    reference_models: int = Field(
        2, ge=0, le=64, description="Retrain oracles of the membership audit (0, or 2 or more)."
    )
    withdrawals: Literal["exact", "federaser"] = Field(
        "exact",
        description="How the drain removes a federation client withdrawn through the inbox.",
    )

    @model_validator(mode="after")
    def _enough_references(self) -> UnlearningParams:
        if self.reference_models == 1:
            raise ValueError("reference_models must be 0 (no audit) or at least 2")
        return self


class Params(_Frozen):
    """Everything in `params.yaml`."""

    seed: int = Field(0, ge=0, lt=2**63)
    dataset: DatasetParams = DatasetParams()
    sisa: SisaParams = SisaParams()
    model: ModelParams = ModelParams()
    training: TrainingParams = TrainingParams()
    gates: GateParams = GateParams()
    registry: RegistryParams = RegistryParams()
    compliance: ComplianceParams = ComplianceParams()
    approval: ApprovalParams = ApprovalParams()
    release: ReleaseParams = ReleaseParams()
    unlearning: UnlearningParams = UnlearningParams()

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    @model_validator(mode="after")
    def _monolithic_is_one_model(self) -> Params:
        if self.training.mode == "monolithic" and (self.sisa.shards, self.sisa.slices) != (1, 1):
            raise ValueError(
                "training.mode monolithic trains one model: set sisa.shards and sisa.slices "
                f"to 1 (got {self.sisa.shards} and {self.sisa.slices})"
            )
        return self

    @property
    def monolithic(self) -> bool:
        """Whether forgets are approximate first, then exact (issue 14)."""
        return self.training.mode == "monolithic"

    def training_hash(self) -> str:
        """Hash of the settings that change trained weights (not the gates, not the dataset).

        It seeds every checkpoint key, so changing any of these never reuses a checkpoint.
        """
        # `mode` changes no weight (a monolithic model is one shard of one slice).
        training = self.training.model_dump(mode="json", exclude={"dp", "mode"})
        if self.training.dp.enabled:
            # Only when on: a workspace made before DP existed keeps its checkpoint keys.
            training["dp"] = self.training.dp.model_dump(mode="json")
        relevant = {
            "seed": self.seed,
            "sisa": {
                "shards": self.sisa.shards,
                "slices": self.sisa.slices,
                "salt": self.sisa.salt,
            },
            "model": self.model.model_dump(mode="json"),
            "training": training,
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        """The params as YAML, in the layout of `params.yaml`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "params") -> Params:
        """Validate a mapping (as read from YAML) into params.

        Raises:
            ConfigError: naming every field that is wrong.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(source, [f"expected a mapping, got {type(data).__name__}"])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError.from_validation(source, exc) from exc


def load_params(path: str | Path) -> Params:
    """Read and validate a `params.yaml`.

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(path), ["file not found"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML ({exc.__class__.__name__})"]) from exc
    return Params.from_mapping(data, source=str(path))
