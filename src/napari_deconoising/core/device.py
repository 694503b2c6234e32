"""Choosing where and in which precision the network runs."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .precision import PrecisionChoice, candidates, choose, cpu_info, native_bf16
from .precision_cache import DecisionCache, cache_key
from .probe import Probe, autocast, measure, memory_format, uses_channels_last

__all__ = ["available_devices", "resolve_device", "ExecutionPlan", "execution_plan", "choose_precision",
           "release_memory"]


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
    """True when the CPU has native bf16 units (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm).

    Read from the CPU's flags: oneDNN's own check also says yes where it only emulates bf16.
    """
    return native_bf16(cpu_info())


# The autocast dtype of each float precision (None: plain fp32).
_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ExecutionPlan:
    """Device plus numeric mode for the forward pass, and why this mode."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    channels_last: bool
    use_grad_scaler: bool
    reason: str = "requested"
    quantized: bool = False  # int8: the network is quantised (:mod:`.quantize`), no autocast
    fallback: str = "fp32"  # int8 only: what runs where int8 misses the tolerance on the image

    @property
    def precision(self) -> str:
        if self.quantized:
            return "int8"
        return {d: p for p, d in _AUTOCAST_DTYPES.items()}[self.dtype]

    def fall_back(self, why: str) -> ExecutionPlan:
        """This int8 plan run in its ``fallback`` precision instead, with ``why`` added to the reason."""
        return dataclasses.replace(self, quantized=False, dtype=_AUTOCAST_DTYPES[self.fallback],
                                   reason=f"{self.reason}; {why}")

    @property
    def reduced(self) -> bool:
        """Activations smaller than fp32's (bf16, fp16, int8): tiles can be larger."""
        return self.dtype is not None or self.quantized

    def memory_format(self, ndim: int) -> torch.memory_format:
        """The memory format for ``ndim``-D feature maps (channels-last when the plan says so)."""
        return memory_format(self.channels_last, ndim)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device.type, self.precision)

    def describe(self) -> str:
        """One line for users: device, precision and why."""
        return f"{self.device} {self.precision} ({self.reason})"

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """A host array as a tensor on the plan's device, in the plan's memory layout.

        To a GPU through pinned (page-locked) memory without blocking, so the copy
        overlaps with the kernels still queued; the CPU gets a view, not a copy.
        """
        t = torch.from_numpy(array)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            t = t.to(self.device)
        return t.contiguous(memory_format=memory_format(self.channels_last, t.ndim - 2))


def _machine(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (compute capability {torch.cuda.get_device_capability(dev)})"
    return cpu_info().fingerprint


def choose_precision(dev: torch.device, probe: Probe | None = None, cache: DecisionCache | None = None,
                     measure_fn: Callable | None = None) -> PrecisionChoice:
    """The ``precision="auto"`` decision for a device.

    Candidates are the precisions the device runs natively (:func:`.precision.candidates`);
    with one candidate that is the answer. With more and a ``probe``, each is timed on
    the probe's network and checked against fp32 (:func:`.precision.choose`), and the
    result is cached per machine, device, task, network shape and torch version.
    Without a probe the reduced precision is taken unmeasured.
    """
    cache = DecisionCache() if cache is None else cache
    known, cands, why_not, key = _known_choice(dev, probe, cache)
    if known is not None:
        return known
    seconds, errors = (measure_fn or measure)(probe, dev, cands)
    choice = choose(seconds, errors, probe.task)
    if why_not:  # what was left out of the measurement, and why
        choice = dataclasses.replace(choice, reason=f"{choice.reason}; {why_not}")
    busy = _cpu_busy() if dev.type == "cpu" else None
    if busy is not None:
        # Other work can make one precision look slower than it is; use the answer for this
        # run only, and measure again next time (issue 8: a loaded CPU once made bf16 lose).
        return dataclasses.replace(choice, reason=f"{choice.reason}; not cached: {busy}")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cache.put(key, choice, {"machine": _machine(dev), "task": probe.task, "network": dict(probe.network),
                            "torch": torch.__version__, "measured": when})
    return choice


def known_precision(dev: torch.device, probe: Probe, cache: DecisionCache | None = None) -> str | None:
    """What :func:`choose_precision` answers without measuring: a sole candidate or a cached
    decision; None when it would have to measure."""
    known = _known_choice(dev, probe, DecisionCache() if cache is None else cache)[0]
    return None if known is None else known.precision


def _known_choice(dev: torch.device, probe: Probe | None, cache: DecisionCache
                  ) -> tuple[PrecisionChoice | None, list[str], str, str | None]:
    """The answer without measuring (or None), the candidates, why others were left out, the cache key."""
    cuda_bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    int8 = probe is not None and probe.int8
    graphed = probe is not None and probe.graphed
    cands, why_not = candidates(dev.type, cpu_info() if dev.type == "cpu" else None, cuda_bf16, int8=int8,
                                graphed=graphed)
    if len(cands) == 1:
        only = PrecisionChoice(cands[0], f"only candidate: {why_not}" if why_not else "only candidate")
        return only, cands, why_not, None
    if probe is None:
        unmeasured = PrecisionChoice(cands[1], f"native {cands[1]} on this {dev.type.upper()}, not measured")
        return unmeasured, cands, why_not, None
    key = cache_key(_machine(dev), dev.type, probe.task, probe.network, torch.__version__,
                    candidates=cands if "int8" in cands or graphed else None)
    return cache.get(key), cands, why_not, key


def _cpu_busy() -> str | None:
    """Why the CPU is too busy for a measurement worth keeping (1-min load above the core count), or None."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):  # no load average on Windows
        return None
    return f"the CPU was busy (load average {load:.1f} on {cores} cores)" if load > cores else None


def execution_plan(device: str | torch.device = "auto", precision: str = "auto", *,
                   probe: Probe | None = None, cache: DecisionCache | None = None) -> ExecutionPlan:
    """Pick device and precision.

    ``precision="auto"`` measures (once per machine, network and task; see
    :func:`choose_precision`): on the CPU fp32 against bf16 where the CPU has native
    bf16 units, and against int8 where the probe allows it (prediction,
    :mod:`.quantize`), on CUDA fp32, bf16 and fp16, on MPS fp32 only. Memory is
    channels-last on the CPU and CUDA in every precision, except 3D training on CUDA
    (:func:`.probe.uses_channels_last`; the probe, when given, says the task and dimensions).
    An explicit ``"int8"`` is for CPU prediction only; the caller quantises the network.
    """
    dev = resolve_device(device)
    channels_last = uses_channels_last(dev.type, probe.ndim, probe.task) if probe else uses_channels_last(dev.type)
    fallback = "fp32"
    if precision == "auto":
        choice = choose_precision(dev, probe, cache)
        precision = choice.precision
        reason = ("cached " if choice.source == "cached" else "") + choice.reason
        if precision == "int8":  # the runner-up, should int8 miss on an image
            rest = {p: s for p, s in choice.seconds.items() if p != "int8"}
            if "fp32" in rest:
                fallback = choose(rest, choice.errors, probe.task if probe else "predict").precision
    else:
        reason = "requested"
    if precision == "int8":
        if dev.type != "cpu":
            raise RuntimeError(f"int8 runs on the CPU only, not on {dev.type}; use auto, fp32, bf16 or fp16")
        return ExecutionPlan(dev, None, channels_last, use_grad_scaler=False, reason=reason,
                             quantized=True, fallback=fallback)
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, bf16, fp16 or int8 (prediction)")
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is torch.float16 and dev.type == "cpu":
        raise RuntimeError("fp16 is not supported on the CPU; use bf16 or fp32")
    if dev.type == "cuda":
        # Patches and tiles keep one shape for a whole run: let cuDNN time its algorithms once.
        torch.backends.cudnn.benchmark = True
    return ExecutionPlan(dev, dtype, channels_last, use_grad_scaler=dtype is torch.float16,
                         reason=reason)


def release_memory(device: torch.device) -> None:
    """Give cached accelerator memory back after a model is dropped."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
