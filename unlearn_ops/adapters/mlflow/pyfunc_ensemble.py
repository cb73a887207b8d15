"""The MLflow pyfunc model of a SISA ensemble: the class each version's model code serves.

No `from __future__ import annotations` here: MLflow reads `predict`'s type hints at run time.

Each version is logged as models-from-code with :mod:`unlearn_ops.adapters.mlflow.pyfunc_model`,
a few lines that import this class from the installed package (pinned in the version's
requirements) and call `mlflow.models.set_model(...)`: the code is shared by the versions
instead of copied into each (issue 15). Artifacts: `shards`
(the manifest naming each shard's weights in the content-addressed blob store of the
experiment, :mod:`unlearn_ops.adapters.mlflow.blobs`), `ensemble` (ensemble.json) and
`params` (params.yaml). Versions logged before the blob store carry the shard weights
themselves (`shard-000`, ...) and load as before.

    model = mlflow.pyfunc.load_model("models:/NAME@champion")
    model.predict(pd.read_csv("new.csv"))  # DataFrame: prediction, probability_0..K-1

The model itself is :class:`unlearn_ops.serving.predictor.EnsemblePredictor` (what it
accepts and returns is said there). The signature gives the feature columns MLflow's `Any`
type so that MLflow's own check does not refuse float64 (issue 11, finding 2) before the
predictor casts it.

`release.outputs` in the version's params limits what is served (issue 12: a caller who
queries the versions before and after a deletion singles out the deleted records from
the difference of their probabilities): `label` answers one-hot probabilities, `top_k`
the k largest, `rounded` probabilities to `release.decimals`; `prediction` is unchanged.

Versions logged by unlearn-ops 0.1 froze an older, self-contained model file, which imports
`unlearn_ops.models` and `unlearn_ops.aggregation`: those import paths are kept.
"""

import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class SisaPyfuncModel(PythonModel):
    """The served ensemble (:class:`EnsemblePredictor`) behind MLflow's pyfunc interface."""

    def load_context(self, context: PythonModelContext) -> None:
        """Build the shard modules from the artifacts (the shard blobs that `shards` names)."""
        import tempfile
        from pathlib import Path

        from unlearn_ops.adapters.mlflow.blobs import local_artifacts
        from unlearn_ops.serving.predictor import EnsemblePredictor

        with tempfile.TemporaryDirectory(prefix="unlearn-shards-") as scratch:
            artifacts = local_artifacts(context.artifacts, Path(scratch))
            self.predictor = EnsemblePredictor.from_artifacts(artifacts)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        """Predicted class and class probabilities (as `release.outputs` allows) per row."""
        frame = self.predictor.predict(model_input)
        release = self.predictor.params.release
        if release.outputs != "probabilities":
            from unlearn_ops.privacy.mitigations import limit_outputs

            columns = [c for c in frame.columns if c.startswith("probability_")]
            frame[columns] = limit_outputs(frame[columns].to_numpy(), release)
        return frame
