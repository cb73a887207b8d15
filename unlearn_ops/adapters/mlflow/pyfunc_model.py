"""The MLflow pyfunc model of a SISA ensemble, logged as models-from-code.

No `from __future__ import annotations` here: MLflow reads `predict`'s type hints at run time.

MLflow executes this file when it logs and when it loads the model: it must end with
`mlflow.models.set_model(...)` and is not imported by the package. Artifacts: the shard
weights (`shard-000`, ...), `ensemble` (ensemble.json) and `params` (params.yaml).

    model = mlflow.pyfunc.load_model("models:/NAME@champion")
    model.predict(pd.read_csv("new.csv"))  # DataFrame: prediction, probability_0..K-1

The input is what pandas users have (issue 11, finding 2): feature columns of any numeric
or boolean dtype (float64 from `pd.read_csv`, integers, booleans) are cast to float32 here;
columns are taken by name, in any order, and other columns (the id, the label) are
ignored, as MLflow ignores inputs its signature does not name. The signature gives the
feature columns MLflow's `Any` type so that MLflow's own check does not refuse float64
first. A column that is not numeric, or a missing or infinite value, is refused with a
ValueError naming the columns (training refuses them too). The output keeps the input's
index (so it lines up with the rows it scores), and `prediction` is the integer class label
as trained.
"""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class SisaPyfuncModel(PythonModel):
    """Aggregates the shard models' class probabilities, as the served ensemble does."""

    def load_context(self, context: PythonModelContext) -> None:
        """Build the shard modules from the artifacts."""
        import torch

        from unlearn_ops.params import load_params
        from unlearn_ops.sisa.models import build_model

        artifacts = context.artifacts
        manifest = json.loads(Path(artifacts["ensemble"]).read_text(encoding="utf-8"))
        self.params = load_params(artifacts["params"])
        self.feature_columns = list(manifest["feature_columns"])
        self.num_classes = int(manifest["num_classes"])
        self.modules = []
        for key in sorted(k for k in artifacts if k.startswith("shard-")):
            module = build_model(self.params.model, len(self.feature_columns), self.num_classes)
            state = torch.load(artifacts[key], weights_only=True)
            module.load_state_dict(state)
            module.eval()
            self.modules.append(module)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        """Predicted class and class probabilities for each row of features."""
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


mlflow.models.set_model(SisaPyfuncModel())
