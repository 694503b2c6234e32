"""Which numeric precisions this machine runs natively, and the rule that picks one.

Native bf16 is a first filter only: a CPU without bf16 units (AVX512-BF16 or AMX on
x86, ``bf16`` / FEAT_BF16 on Arm) emulates it, which oneDNN happily does and which
costs 2x (issue 8). Among the precisions that pass, the choice is made by timing the
actual network (see :mod:`.probe`) and checking its error against fp32 (:func:`choose`).
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "CPUInfo", "parse_cpuinfo", "cpu_info", "native_bf16", "candidates",
           "PrecisionChoice", "choose", "TOLERANCE", "MIN_SPEEDUP", "CHECKED_ON_THE_IMAGE", "OUTPUT_WEIGHTS",
           "relative_error"]

# The precisions a decision can name ("auto" decides among them).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

# What every prediction entry point uses unless told otherwise (the CLI, predict_file,
# the widgets, out-of-core and Dask prediction): measured once per machine and network.
DEFAULT_PRECISION = "auto"

# Largest accepted error of a reduced precision against fp32: the RMS difference of the
# outputs (denoised and phantom) relative to the fp32 output's standard deviation.
# Prediction: 1 % of the image's contrast, well below what the denoising changes and
# invisible in a display (bf16 measured 0.2-0.5 % with trained networks, issue 8).
# Training: 5 %, a guard against broken backends only; bf16 forward passes measured
# 0.8-1.6 %, and training in bf16 reaches fp32's quality (docs/benchmarks.md).
TOLERANCE = {"train": 0.05, "predict": 0.01}
# A reduced precision must beat fp32 by this factor to be chosen: below it the probe's
# timing noise (a shared CPU) could decide, and fp32 is exact.
MIN_SPEEDUP = 1.15

_X86_BF16 = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CPUInfo:
    """The CPU's model name, architecture and feature flags."""

    model: str
    arch: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def fingerprint(self) -> str:
        """Model plus a hash of the flags: identifies the machine for the decision cache."""
        digest = hashlib.sha256(" ".join(sorted(self.flags)).encode()).hexdigest()[:12]
        return f"{self.model} [{self.arch}, flags {digest}]"


def parse_cpuinfo(text: str, arch: str = "") -> CPUInfo:
    """Model and flags from the text of Linux' ``/proc/cpuinfo``.

    x86 lists ``flags``, Arm ``Features``; the model is ``model name`` on x86 and on some
    Arm kernels, else the implementer/part numbers.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:  # the first processor block speaks for all
            fields[key] = value.strip()
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    model = fields.get("model name") or fields.get("hardware") or ""
    if not model and "cpu implementer" in fields:
        model = f"Arm implementer {fields['cpu implementer']} part {fields.get('cpu part', '?')}"
    if not arch:
        arch = "arm64" if "asimd" in flags else "x86_64" if "sse2" in flags else ""
    return CPUInfo(model or "unknown CPU", arch or "unknown", flags)


def _sysctl(name: str) -> str:
    try:
        r = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def cpu_info() -> CPUInfo:
    """This machine's CPU (Linux: ``/proc/cpuinfo``; macOS: ``sysctl``)."""
    arch = platform.machine().lower()
    system = platform.system()
    if system == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                return parse_cpuinfo(f.read(), arch)
        except OSError:
            pass
    if system == "Darwin":
        flags = {"bf16"} if _sysctl("hw.optional.arm.FEAT_BF16") == "1" else set()
        return CPUInfo(_sysctl("machdep.cpu.brand_string") or "Apple CPU", arch, frozenset(flags))
    return CPUInfo(platform.processor() or "unknown CPU", arch or "unknown")


def native_bf16(cpu: CPUInfo) -> bool:
    """True when the CPU computes bf16 in hardware (x86 AVX512-BF16/AMX-BF16, Arm BF16)."""
    if any(f in cpu.flags for f in _X86_BF16):
        return True
    return cpu.arch in ("arm64", "aarch64") and "bf16" in cpu.flags


# Why fp16 is not tried for training where steps are replayed as a CUDA graph and bf16 runs.
GRAPHED_NO_FP16 = ("fp16 not tried: its loss scaling runs each step without the CUDA graph, "
                   "and bf16 with the graph trained faster (docs/benchmarks.md, GPU)")


def candidates(device_type: str, cpu: CPUInfo | None = None, cuda_bf16: bool = False,
               int8: bool = False, graphed: bool = False) -> tuple[list[str], str]:
    """Precisions worth measuring on a device, fp32 first, and why others were left out.

    ``int8``: the caller can run int8 (prediction of a model :mod:`.quantize` covers); a
    CPU candidate then. ``graphed``: training steps will be replayed as a CUDA graph
    (:mod:`.cuda_graph`), which fp16's loss scaling prevents; on a GPU with bf16, fp16
    is then left out (:data:`GRAPHED_NO_FP16`).
    """
    if device_type == "cuda":
        if not cuda_bf16:
            return ["fp32", "fp16"], "no bf16 on this GPU"
        if graphed:
            return ["fp32", "bf16"], GRAPHED_NO_FP16
        return ["fp32", "bf16", "fp16"], ""
    if device_type == "mps":
        return ["fp32"], "mixed precision is not used on Apple MPS"
    cpu = cpu or cpu_info()
    extra = ["int8"] if int8 else []
    if native_bf16(cpu):
        return ["fp32", "bf16", *extra], ""
    have = "AVX512-BF16 or AMX-BF16" if cpu.arch in ("x86_64", "amd64") else "BF16 instructions"
    return ["fp32", *extra], f"this CPU has no native bf16 ({have} missing), so bf16 would only be emulated"


@dataclass(frozen=True)
class PrecisionChoice:
    """A chosen precision, why, and the measurements behind it.

    ``seconds`` and ``errors`` map each measured precision to its probe time (per step
    or tile) and its error against fp32; ``source`` is ``"measured"``, ``"cached"`` or
    ``"rule"`` (nothing to measure).
    """

    precision: str
    reason: str
    source: str = "rule"
    seconds: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"precision": self.precision, "reason": self.reason, "seconds": dict(self.seconds),
                "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, d: Mapping) -> PrecisionChoice:
        """The choice :meth:`to_json` wrote; ValueError for a precision this version does not run
        (a newer version's, or a hand-edited file), so that the cache treats it as no entry."""
        if d["precision"] not in PRECISIONS:
            raise ValueError(f"unknown precision {d['precision']!r} in a cached decision")
        seconds = {str(k): float(v) for k, v in d["seconds"].items()}
        errors = {str(k): float(v) for k, v in d["errors"].items()}
        return cls(str(d["precision"]), str(d["reason"]), "cached", seconds, errors)


# Precisions whose error is checked on every image they predict, with a fall-back there
# (:mod:`.quantize`): the probe times them, its synthetic tile does not judge their error (the
# paper-size model's int8 error was 1.63 % on the probe tile and 0.82 % on a real image).
CHECKED_ON_THE_IMAGE = ("int8",)


def choose(seconds: Mapping[str, float], errors: Mapping[str, float], task: str,
           tolerance: float | None = None) -> PrecisionChoice:
    """Pick the fastest precision whose error against fp32 is within ``tolerance``.

    ``seconds`` must contain ``"fp32"``; a reduced precision has to be at least
    :data:`MIN_SPEEDUP` times faster than fp32 to be chosen. The probe's error does not
    rule out a precision of :data:`CHECKED_ON_THE_IMAGE` when predicting.
    """
    tol = TOLERANCE[task] if tolerance is None else tolerance
    unit = "step" if task == "train" else "tile"
    base = seconds["fp32"]
    later = CHECKED_ON_THE_IMAGE if task == "predict" else ()
    ok = {p: s for p, s in seconds.items()
          if p == "fp32" or p in later or errors.get(p, float("inf")) <= tol}
    fast = {p: s for p, s in ok.items() if p == "fp32" or base / s >= MIN_SPEEDUP}
    best = min(fast, key=fast.get)
    notes = []
    for p, s in sorted(seconds.items(), key=lambda kv: kv[1]):
        if p == "fp32":
            continue
        if p not in ok:
            notes.append(f"{p} error {errors.get(p, float('nan')):.2%} > tolerance {tol:.0%}")
        elif p != best:
            notes.append(f"{p} {base / s:.2f}x fp32's speed")
    if best == "fp32":
        why = "; ".join(notes) if notes else "nothing else to compare"
        reason = f"fp32 ({base:.3g} s/{unit}): {why}"
    else:
        checked = " on the probe tile, checked on each image" if best in later else ""
        reason = (f"{best}: {base / seconds[best]:.1f}x faster than fp32 ({seconds[best]:.3g} vs {base:.3g} s/{unit}), "
                  f"error {errors[best]:.2%} of fp32{checked} (tolerance {tol:.0%})")
        if notes:
            reason += "; " + "; ".join(notes)
    return PrecisionChoice(best, f"measured: {reason}", "measured", dict(seconds), dict(errors))


# Weight of each output's error in :func:`relative_error`: (denoised, phantom). The phantom
# (deconvolved image) counts half: it is a high-pass estimate whose own error against the
# truth is about 12 dB larger than the denoised image's, and int8's 1.1 % there changed its
# PSNR by 0.003 dB (docs/benchmarks.md, "int8 prediction").
OUTPUT_WEIGHTS = (1.0, 0.5)


def relative_error(out: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """Largest RMS difference over the outputs, each relative to the reference's standard deviation
    and weighted by :data:`OUTPUT_WEIGHTS` (the phantom's counts half)."""
    errs = []
    for o, r, w in zip(out, ref, OUTPUT_WEIGHTS):
        o, r = o.detach().double().cpu(), r.detach().double().cpu()
        scale = float(r.std()) or 1.0
        errs.append(w * float(torch.sqrt(torch.mean((o - r) ** 2))) / scale)
    return max(errs)
