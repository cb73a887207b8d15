"""Devices for training: which one to use, and the settings that make it deterministic.

On the CPU, deterministic kernels and a fixed intra-op thread count make a training a pure
function of its inputs. On CUDA the same holds on one kind of device (deterministic
kernels, cuBLAS's fixed workspace, cuDNN without autotuning), but CPU and CUDA kernels
differ: weights record the device kind they were trained on (:func:`device_kind`), and
certificates compare like with like. torch is imported inside the functions.
"""

from __future__ import annotations

import os

from unlearn_ops.errors import DeviceUnavailableError

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "device_kind",
    "device_name",
    "resolve_device",
    "use_deterministic_device",
    "use_deterministic_torch",
]


def resolve_device(requested: str) -> str:
    """`auto` becomes `cuda` when a GPU is visible, else `cpu`.

    Raises:
        DeviceUnavailableError: `cuda` asked for and none is visible.
    """
    if requested != "cpu":
        # cuBLAS reads it when its first handle is made: set before anything runs on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("cuda", "torch sees no CUDA device")
    return requested


CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""What deterministic cuBLAS needs (PyTorch's "Reproducibility" notes)."""


def device_kind(device: str) -> str:
    """`cpu` or `cuda` (`cuda:1` is of kind `cuda`): what decides whether bits can match."""
    return device.partition(":")[0]


def device_name(device: str) -> str:
    """A readable name of the device: `cpu`, or the GPU's model (`cuda: NVIDIA H200`)."""
    if device_kind(device) != "cuda":
        return "cpu"
    import torch

    return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"


def use_deterministic_torch(threads: int, device: str = "cpu") -> None:
    """Deterministic kernels and a fixed intra-op thread count, for the whole process.

    These are process-wide torch settings; shards train in parallel threads, so they are
    set, never toggled back and forth (a thread restoring them would change another
    thread's numerics mid-training).
    """
    import torch

    if device_kind(device) == "cuda":
        use_deterministic_device()
    if not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def use_deterministic_device() -> None:
    """CUDA's part of determinism: cuBLAS's fixed workspace and cuDNN without autotuning.

    `CUBLAS_WORKSPACE_CONFIG` only counts before cuBLAS starts; it is set (unless the
    environment chose a value) by :func:`resolve_device`, and again here for callers that
    pass `cuda` directly.
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
