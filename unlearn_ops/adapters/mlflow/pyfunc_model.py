"""The MLflow pyfunc model of a SISA ensemble, logged as models-from-code.

No `from __future__ import annotations` here: MLflow reads `predict`'s type hints at run time.

MLflow executes this file when it logs and when it loads the model: it must end with
`mlflow.models.set_model(...)` and is not imported by the package. Artifacts: the shard
weights (`shard-000`, ...), `ensemble` (ensemble.json) and `params` (params.yaml).

    model = mlflow.pyfunc.load_model("models:/NAME@champion")
    model.predict(features)  # DataFrame: prediction, probability_0..K-1
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
        inputs = torch.from_numpy(frame[self.feature_columns].to_numpy(dtype=np.float32, copy=True))
        with torch.no_grad():
            outputs = np.stack(
                [torch.softmax(module(inputs), dim=1).numpy() for module in self.modules]
            )
        scores = aggregate(outputs, self.params.sisa.aggregation)
        result = pd.DataFrame(scores, columns=[f"probability_{k}" for k in range(self.num_classes)])
        result.insert(0, "prediction", scores.argmax(axis=1))
        return result


mlflow.models.set_model(SisaPyfuncModel())
