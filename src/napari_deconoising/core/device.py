"""Choosing where and in which precision the network runs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

__all__ = ["available_devices", "resolve_device", "ExecutionPlan", "execution_plan", "release_memory"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Devices present on this machine, best first (``"cpu"`` always last)."""
    devs = []
    if torch.cuda.is_available():
        devs.append("cuda")
    if _mps_available():
        devs.append("mps")
    devs.append("cpu")
    return devs


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"mps"`` into a usable ``torch.device``.

    Raises
    ------
    RuntimeError
        If the requested accelerator is not present, with a hint what to use instead.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    if kind == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was requested but Apple MPS is not available (use 'auto' or 'cpu')")
    if kind not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 units (AVX512-BF16 or AMX) that oneDNN uses."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class ExecutionPlan:
    """Device plus numeric mode for the forward pass."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    channels_last: bool
    use_grad_scaler: bool

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def memory_format(self, ndim: int) -> torch.memory_format:
        """The memory format for ``ndim``-D feature maps (channels-last when the plan says so)."""
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last if ndim == 2 else torch.channels_last_3d

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def execution_plan(device: str | torch.device = "auto", precision: str = "auto") -> ExecutionPlan:
    """Pick device and precision.

    ``precision="auto"``: bf16 (or fp16 with loss scaling where bf16 is missing) on
    CUDA; fp32 on MPS; on the CPU bf16 with channels-last memory where the CPU has
    native bf16 units (per training step 4.8x faster than fp32 at the paper's size and
    3.2x at the demo's on the Xeon we develop on, see docs/benchmarks.md), else fp32.
    """
    dev = resolve_device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif dev.type == "cpu" and cpu_has_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and dev.type == "cpu":
        raise RuntimeError("fp16 is not supported on the CPU; use bf16 or fp32")
    channels_last = dev.type == "cpu" and dtype is torch.bfloat16
    return ExecutionPlan(dev, dtype, channels_last, use_grad_scaler=dtype is torch.float16)


def release_memory(device: torch.device) -> None:
    """Give cached accelerator memory back after a model is dropped."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
