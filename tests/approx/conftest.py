"""A tiny trained model and its retained / forgotten split, shared by the method tests."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.conftest import columns_of, synthetic_frame
from unlearn_ops.approx.base import UnlearnData
from unlearn_ops.approx.monolithic import train_monolithic
from unlearn_ops.params import Params
from unlearn_ops.sisa.datasets import Dataset


@pytest.fixture(scope="session")
def blobs() -> Dataset:
    """300 records of 3 overlapping blobs: about 83% training accuracy, so records differ.

    On well-separated blobs every loss is near 0 and there is nothing to forget.
    """
    return Dataset.from_frame(synthetic_frame(300, 0, spread=0.8), source="blobs")


@pytest.fixture(scope="session")
def original(blobs: Dataset, tiny_params: Params) -> nn.Module:
    """An MLP [16] trained on the 300 records (never edit it: use `fresh_model`)."""
    return train_monolithic(blobs.frame, columns_of(blobs), tiny_params, seed=1)


@pytest.fixture
def fresh_model(original: nn.Module) -> Callable[[], nn.Module]:
    """A new copy of the trained model per call."""
    return lambda: copy.deepcopy(original)


@pytest.fixture(scope="session")
def split(blobs: Dataset) -> UnlearnData:
    """Every 10th record forgotten (30), the rest retained (270)."""
    frame = blobs.frame
    x = torch.tensor(frame[list(blobs.feature_columns)].to_numpy(dtype="float32"))
    y = torch.tensor(frame[blobs.label_column].to_numpy(dtype="int64"))
    gone = torch.arange(len(y)) % 10 == 0
    return UnlearnData(x[~gone], y[~gone], x[gone], y[gone], blobs.num_classes)


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy of `model` on (x, y), in eval mode."""
    model.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))
