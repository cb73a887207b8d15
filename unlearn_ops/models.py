"""Import path kept for pyfunc models logged before the package was split into sub-packages.

A version's pyfunc model is logged as code (MLflow freezes the file in the artifact), and
the files logged by unlearn-ops 0.1 import `unlearn_ops.models.build_model`: removing this
module would make those versions unloadable. The concept lives in :mod:`unlearn_ops.sisa.models`.
"""

from unlearn_ops.sisa.models import build_model, register_model, registered_models

__all__ = ["build_model", "register_model", "registered_models"]
