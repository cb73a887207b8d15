"""Loading a team's MLflow model for adoption (issue 14): which flavours hold a torch module."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from unlearn_ops.adapters.mlflow.adopted import load_torch_classifier
from unlearn_ops.errors import AdoptionError


def _log(tmp_path: Path, name: str, log: Any) -> str:
    """Run `log(name)` in a sqlite store of tmp_path; the store's URI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own warnings about its type hints
        import mlflow

        uri = f"sqlite:///{tmp_path / 'team.db'}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            experiment = mlflow.create_experiment(
                name, artifact_location=(tmp_path / "artifacts").as_uri()
            )
            with mlflow.start_run(experiment_id=experiment):
                log(name)
        finally:
            mlflow.set_tracking_uri("")
            mlflow.set_registry_uri("")
    return uri


def test_a_python_model_holding_a_module_is_adopted_and_others_are_refused(
    tmp_path: Path,
) -> None:
    from sklearn.dummy import DummyClassifier
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow inspects type hints at import and here
        import mlflow.pyfunc
        import mlflow.sklearn

        class Wrapped(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
            def __init__(self) -> None:
                self.module = nn.Sequential(nn.Linear(4, 3))

            def predict(self, context: Any, model_input: list[Any], params: Any = None) -> Any:
                return model_input

    uri = _log(
        tmp_path,
        "wrapped",
        lambda name: mlflow.pyfunc.log_model(
            name="model", python_model=Wrapped(), registered_model_name=name, pip_requirements=[]
        ),
    )
    module = load_torch_classifier("models:/wrapped/1", uri)
    assert isinstance(module, nn.Sequential)
    assert not module.training

    _log(
        tmp_path,
        "sk",
        lambda name: mlflow.sklearn.log_model(
            DummyClassifier().fit([[0.0], [1.0]], [0, 1]),
            name="model",
            registered_model_name=name,
            pip_requirements=[],
        ),
    )
    with pytest.raises(AdoptionError, match=r"not a torch classifier \(flavours \["):
        load_torch_classifier("models:/sk/1", uri)
    with pytest.raises(AdoptionError, match="not an MLflow model URI"):
        load_torch_classifier(str(tmp_path), uri)
