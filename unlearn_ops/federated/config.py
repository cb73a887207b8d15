"""The federation's params: rounds, local training, the client model, groups and erasure.

Frozen pydantic models with `extra="forbid"`, like :mod:`unlearn_ops.params`; the *where*
(the id-hash key) comes from settings and is passed to the functions that need it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unlearn_ops.params import ModelParams

__all__ = ["ErasureParams", "FederationParams"]


class ErasureParams(BaseModel):
    """FedEraser (Liu et al., IWQoS 2021, section IV): what the server keeps, how it calibrates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval: int = Field(
        1, ge=1, description="Delta: the server keeps clients' updates every this many rounds."
    )
    calibration_epochs: int = Field(
        1, ge=1, description="Local epochs of a calibration round (the paper uses E/2)."
    )
    scale_to_interval: bool = Field(
        True,
        description="Stretch each retained round's step to the length (per array) of the "
        "global model's move over its whole interval, so that T / Delta calibrated steps "
        "travel as far as the T rounds did (with Delta = 1 this changes nothing).",
    )
    granularity: Literal["unit", "layer"] = Field(
        "unit",
        description="Where a calibrated update takes its stored update's length: per output "
        "unit ('unit': each row of a weight matrix, each filter of a convolution; biases per "
        "array) or per array ('layer', as in the paper). Per unit keeps each class's step in "
        "the output layer (docs/FEDERATED_UNLEARNING.md).",
    )
    finish_rounds: int = Field(
        0,
        ge=0,
        le=1000,
        description="Ordinary FedAvg rounds (local_epochs each) of the remaining clients after "
        "the calibrated replay, from its result: a short fine-tune that pulls the replayed "
        "model back to the remaining clients' optimum (not in the paper; 0 is FedEraser).",
    )


class FederationParams(BaseModel):
    """How a federation trains: rounds of FedAvg over client groups.

    Every client trains `local_epochs` epochs per round from its group's model; the group
    model is the example-weighted mean of the updates (FedAvg). With `num_groups` G > 1,
    clients are split into G groups by a keyed hash of their id (KNOT, INFOCOM 2023), each
    group federates on its own, and the served model is the mean of the groups'
    probabilities (as SISA's ensemble).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    rounds: int = Field(20, ge=1, le=10_000, description="Federated rounds.")
    local_epochs: int = Field(2, ge=1, le=1000, description="Local epochs per round.")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum (reset each round).")
    model: ModelParams = ModelParams(name="mlp", hidden_sizes=(64,))
    num_groups: int = Field(1, ge=1, le=1024, description="G: client groups (KNOT).")
    seed: int = Field(0, ge=0, description="Seed of inits and local training.")
    erasure: ErasureParams = ErasureParams()

    def erasure_cost(self) -> float:
        """FedEraser's local epochs per remaining client over a full retrain's.

        The retained rounds' calibration epochs plus the finishing rounds' local epochs,
        over rounds x local epochs: the share of a retrain's client-epochs it costs.
        """
        retained = -(-self.rounds // self.erasure.interval)
        epochs = (
            retained * self.erasure.calibration_epochs
            + self.erasure.finish_rounds * self.local_epochs
        )
        return epochs / (self.rounds * self.local_epochs)
