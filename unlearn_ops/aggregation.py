"""Import path kept for pyfunc models logged before the package was split into sub-packages.

The pyfunc files logged by unlearn-ops 0.1 import `unlearn_ops.aggregation.aggregate` (MLflow
freezes the file in the artifact). The concept lives in :mod:`unlearn_ops.sisa.aggregation`.
"""

from unlearn_ops.sisa.aggregation import aggregate

__all__ = ["aggregate"]
