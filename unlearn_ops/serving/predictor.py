"""The served ensemble as a predictor: shard weights, manifest and params in, a frame out.

One implementation behind every way a version is served: the MLflow pyfunc model
(:mod:`unlearn_ops.adapters.mlflow.pyfunc_model`, which MLflow executes as code) and the
in-memory registry that tests inject (:class:`~unlearn_ops.testing.InMemoryRegistry`).

The input is what pandas users have (issue 11, finding 2): feature columns of any numeric
or boolean dtype (float64 from `pd.read_csv`, integers, booleans) are cast to float32 here;
columns are taken by name, in any order, and other columns (the id, the label) are ignored.
A column that is not numeric, or a missing or infinite value, is refused with a ValueError
naming the columns (training refuses them too). The output keeps the input's index (so it
lines up with the rows it scores), and `prediction` is the integer class label as trained.
torch is imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from unlearn_ops.params import Params, load_params

if TYPE_CHECKING:
    import torch

__all__ = ["EnsemblePredictor", "float32_features"]


class EnsemblePredictor:
    """Aggregates the shard models' class probabilities, as the served ensemble does.

    Args:
        params: the version's params (model family, aggregation).
        feature_columns: the features, in training order.
        num_classes: the number of classes.
        modules: the shard models, in shard order, in eval mode.
    """

    def __init__(
        self,
        params: Params,
        feature_columns: list[str],
        num_classes: int,
        modules: list[torch.nn.Module],
    ) -> None:
        self.params = params
        self.feature_columns = feature_columns
        self.num_classes = num_classes
        self.modules = modules

    @classmethod
    def from_artifacts(cls, artifacts: Mapping[str, str | Path]) -> EnsemblePredictor:
        """Build it from a version's model files: `shard-000`..., `ensemble`, `params`."""
        import torch

        from unlearn_ops.sisa.models import build_model

        manifest = json.loads(Path(artifacts["ensemble"]).read_text(encoding="utf-8"))
        params = load_params(artifacts["params"])
        feature_columns = list(manifest["feature_columns"])
        num_classes = int(manifest["num_classes"])
        modules = []
        for key in sorted(k for k in artifacts if k.startswith("shard-")):
            module = build_model(params.model, len(feature_columns), num_classes)
            module.load_state_dict(torch.load(artifacts[key], weights_only=True))
            module.eval()
            modules.append(module)
        return cls(params, feature_columns, num_classes, modules)

    def predict(self, model_input: Any) -> pd.DataFrame:
        """Predicted class and class probabilities for each row of features.

        Raises:
            ValueError: a feature column is missing, not numeric, or not finite.
        """
        import torch

        from unlearn_ops.sisa.aggregation import aggregate

        frame = pd.DataFrame(model_input)
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"model input lacks {len(missing)} feature column(s), e.g. {missing[:3]}; "
                f"expected the {len(self.feature_columns)} columns the ensemble was trained on"
            )
        inputs = torch.from_numpy(float32_features(frame, self.feature_columns))
        with torch.no_grad():
            outputs = np.stack(
                [torch.softmax(module(inputs), dim=1).numpy() for module in self.modules]
            )
        scores = aggregate(outputs, self.params.sisa.aggregation)
        result = pd.DataFrame(
            scores,
            columns=[f"probability_{k}" for k in range(self.num_classes)],
            index=frame.index,
        )
        result.insert(0, "prediction", scores.argmax(axis=1).astype(np.int64))
        return result


def float32_features(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The feature columns, in training order, as one float32 matrix.

    Raises:
        ValueError: a column is not numeric or boolean, or holds a missing or infinite value.
    """
    converted = []
    not_numeric = []
    for column in columns:
        values = frame[column]
        if values.dtype == object:
            # JSON payloads and MLflow's `Any` columns can arrive as Python objects.
            values = values.infer_objects()
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            converted.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            not_numeric.append(column)
    if not_numeric:
        raise ValueError(
            f"feature column(s) {not_numeric[:5]} are not numeric; the ensemble takes "
            "floats, integers or booleans"
        )
    matrix = np.column_stack(converted) if converted else np.zeros((len(frame), 0))
    named = [c for index, c in enumerate(columns) if not np.isfinite(matrix[:, index]).all()]
    if named:
        raise ValueError(
            f"feature column(s) {named[:5]} hold missing or infinite values; the ensemble "
            "was trained on finite numbers only"
        )
    return np.ascontiguousarray(matrix, dtype=np.float32)
