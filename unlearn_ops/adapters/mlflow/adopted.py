"""Reading a team's own registered torch classifier out of MLflow, for `unlearn-ops adopt`.

Two layouts are understood (README, "Adopting a model"): a model logged with
`mlflow.pytorch.log_model` (the `pytorch` flavour gives the `torch.nn.Module`), or a
pyfunc whose Python model exposes the module as `.module`. Anything else is refused with
one :class:`~unlearn_ops.errors.AdoptionError`; MLflow's own errors (no such model, no
such run) become one too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from unlearn_ops.errors import AdoptionError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_torch_classifier"]

# The loader of a custom `mlflow.pyfunc.PythonModel` (the only pyfunc that may hold a module).
_PYTHON_MODEL = "mlflow.pyfunc.model"
NOT_TORCH_HINT = (
    "log it with mlflow.pytorch.log_model, or as a pyfunc whose python model has a "
    "`.module` attribute holding the torch.nn.Module"
)


def load_torch_classifier(model_uri: str, tracking_uri: str | None = None) -> nn.Module:
    """The `torch.nn.Module` registered at `model_uri` (`models:/name/version`, `runs:/...`).

    Args:
        model_uri: the model's MLflow URI.
        tracking_uri: the MLflow server or store holding it (MLflow's default when None).

    Raises:
        AdoptionError: MLflow cannot load it, or it holds no torch module.
    """
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException
    from torch import nn

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if not model_uri.startswith(("models:/", "runs:/")):
        raise AdoptionError(model_uri, "not an MLflow model URI", "give models:/NAME/VERSION")
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    try:
        flavors = mlflow.models.get_model_info(model_uri).flavors
    except (MlflowException, OSError) as exc:
        raise AdoptionError(model_uri, f"MLflow cannot read it ({exc})") from exc
    module: object
    try:
        if "pytorch" in flavors:
            import mlflow.pytorch

            module = mlflow.pytorch.load_model(model_uri, map_location="cpu")
        elif flavors.get("python_function", {}).get("loader_module") == _PYTHON_MODEL:
            # A custom PythonModel may wrap a module; another flavour's pyfunc (sklearn,
            # xgboost, ...) holds none, and is refused without unpickling it.
            loaded = mlflow.pyfunc.load_model(model_uri)
            try:
                wrapper = loaded.unwrap_python_model()
            except MlflowException:
                wrapper = None  # another flavour's pyfunc (sklearn, ...): no module inside
            module = getattr(wrapper, "module", None)
        else:
            module = None
    except (MlflowException, OSError, AttributeError) as exc:
        raise AdoptionError(model_uri, f"MLflow cannot load it ({exc})", NOT_TORCH_HINT) from exc
    if not isinstance(module, nn.Module):
        found = type(module).__name__ if module is not None else f"flavours {sorted(flavors)}"
        raise AdoptionError(model_uri, f"not a torch classifier ({found})", NOT_TORCH_HINT)
    return module.cpu().eval()
