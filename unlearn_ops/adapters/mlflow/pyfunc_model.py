"""Model code MLflow logs with each version: serves :class:`SisaPyfuncModel` (pyfunc_ensemble)."""

import mlflow

from unlearn_ops.adapters.mlflow.pyfunc_ensemble import SisaPyfuncModel

mlflow.models.set_model(SisaPyfuncModel())
