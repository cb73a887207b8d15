"""Approximate unlearning: methods that edit a trained model instead of retraining it.

Importing the package registers the built-in methods (their modules import torch only
inside their functions, so this stays light).
"""

from unlearn_ops.approx import methods as methods  # registers the built-in methods
