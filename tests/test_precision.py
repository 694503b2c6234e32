"""CPU flag parsing, native-bf16 detection and the precision decision rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_deconoising.core.precision import (
    MIN_SPEEDUP,
    TOLERANCE,
    CPUInfo,
    PrecisionChoice,
    candidates,
    choose,
    native_bf16,
    parse_cpuinfo,
)

# Trimmed /proc/cpuinfo texts of real machines (first processor block, and a second one
# that must not override it).
XEON_AVX512_NO_BF16 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""
XEON_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16
"""
EPYC_ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx_vnni avx512_bf16 avx512_vnni
"""
LAPTOP_AVX2 = """processor\t: 0
model name\t: Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz
flags\t\t: fpu sse2 avx avx2 fma f16c
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve bf16 i8mm
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd40
"""
GRAVITON2 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


@pytest.mark.parametrize(
    "text, arch, model, bf16",
    [
        (XEON_AVX512_NO_BF16, "x86_64", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", False),
        (XEON_AMX, "x86_64", "Intel(R) Xeon(R) Processor", True),
        (EPYC_ZEN5, "x86_64", "AMD EPYC", True),
        (LAPTOP_AVX2, "x86_64", "Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz", False),
        (GRAVITON3, "arm64", "Arm implementer 0x41 part 0xd40", True),
        (GRAVITON2, "arm64", "Arm implementer 0x41 part 0xd0c", False),
    ],
)
def test_parse_cpuinfo_and_native_bf16(text, arch, model, bf16):
    cpu = parse_cpuinfo(text)
    assert cpu.arch == arch
    assert cpu.model == model
    assert native_bf16(cpu) is bf16


def test_parse_cpuinfo_keeps_given_arch_and_handles_empty_text():
    cpu = parse_cpuinfo("", arch="riscv64")
    assert cpu == CPUInfo("unknown CPU", "riscv64", frozenset())
    assert not native_bf16(cpu)


def test_arm_bf16_flag_only_counts_on_arm():
    assert not native_bf16(CPUInfo("x", "x86_64", frozenset({"bf16"})))
    assert native_bf16(CPUInfo("Apple M2", "arm64", frozenset({"bf16"})))


def test_fingerprint_changes_with_flags_not_order():
    a = CPUInfo("AMD EPYC", "x86_64", frozenset({"avx2", "avx512f"}))
    b = CPUInfo("AMD EPYC", "x86_64", frozenset({"avx512f", "avx2"}))
    c = CPUInfo("AMD EPYC", "x86_64", frozenset({"avx2"}))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_candidates_per_device():
    assert candidates("cpu", parse_cpuinfo(EPYC_ZEN5))[0] == ["fp32", "bf16"]
    cands, why = candidates("cpu", parse_cpuinfo(XEON_AVX512_NO_BF16))
    assert cands == ["fp32"] and "AVX512-BF16" in why and "emulated" in why
    assert candidates("cpu", parse_cpuinfo(GRAVITON2))[1].count("BF16 instructions") == 1
    assert candidates("cuda", cuda_bf16=True)[0] == ["fp32", "bf16", "fp16"]
    assert candidates("cuda", cuda_bf16=False)[0] == ["fp32", "fp16"]
    assert candidates("mps")[0] == ["fp32"]


def test_graphed_training_on_a_gpu_with_bf16_leaves_fp16_out():
    cands, why = candidates("cuda", cuda_bf16=True, graphed=True)
    assert cands == ["fp32", "bf16"] and "CUDA graph" in why
    # Without bf16, fp16 is the only reduced precision left: it stays (and runs eagerly).
    assert candidates("cuda", cuda_bf16=False, graphed=True)[0] == ["fp32", "fp16"]
    assert candidates("cpu", parse_cpuinfo(EPYC_ZEN5), graphed=True)[0] == ["fp32", "bf16"]


def test_choose_fastest_within_tolerance():
    c = choose({"fp32": 1.0, "bf16": 0.4}, {"fp32": 0.0, "bf16": 0.003}, "predict")
    assert c.precision == "bf16" and c.source == "measured"
    assert "2.5x faster" in c.reason and "0.30%" in c.reason and "tolerance 1%" in c.reason


def test_choose_rejects_inaccurate_and_slow_modes():
    too_wrong = choose({"fp32": 1.0, "bf16": 0.4}, {"fp32": 0.0, "bf16": 0.02}, "predict")
    assert too_wrong.precision == "fp32" and "error 2.00% > tolerance 1%" in too_wrong.reason
    # The same error is fine for training, whose tolerance is larger.
    assert choose({"fp32": 1.0, "bf16": 0.4}, {"fp32": 0.0, "bf16": 0.02}, "train").precision == "bf16"
    emulated = choose({"fp32": 1.0, "bf16": 2.2}, {"fp32": 0.0, "bf16": 0.001}, "train")
    assert emulated.precision == "fp32" and "0.45x fp32's speed" in emulated.reason
    marginal = choose({"fp32": 1.0, "bf16": 1.0 / (MIN_SPEEDUP - 0.05)}, {"bf16": 0.0}, "train")
    assert marginal.precision == "fp32"
    nan_error = choose({"fp32": 1.0, "fp16": 0.3}, {"fp16": math.nan}, "predict")
    assert nan_error.precision == "fp32"


def test_choose_among_three():
    c = choose({"fp32": 1.0, "bf16": 0.3, "fp16": 0.25}, {"bf16": 0.004, "fp16": 0.03}, "predict")
    assert c.precision == "bf16" and "fp16 error" in c.reason


@given(st.dictionaries(st.sampled_from(["bf16", "fp16"]), st.floats(0.01, 10.0)),
       st.dictionaries(st.sampled_from(["bf16", "fp16"]), st.floats(0.0, 0.2)),
       st.sampled_from(["train", "predict"]))
def test_choice_law(times, errors, task):
    """The choice is never slower than fp32, always within tolerance, and the fastest such."""
    seconds = {"fp32": 1.0, **times}
    c = choose(seconds, errors, task)
    if c.precision != "fp32":
        assert errors[c.precision] <= TOLERANCE[task]
        assert seconds["fp32"] / seconds[c.precision] >= MIN_SPEEDUP
    ok = [p for p in times if errors.get(p, 1.0) <= TOLERANCE[task] and 1.0 / times[p] >= MIN_SPEEDUP]
    assert seconds[c.precision] == min([1.0] + [times[p] for p in ok])


def test_choice_round_trips_json():
    c = choose({"fp32": 1.0, "bf16": 0.4}, {"fp32": 0.0, "bf16": 0.003}, "train")
    back = PrecisionChoice.from_json(c.to_json())
    assert (back.precision, back.reason, back.seconds, back.errors) == (c.precision, c.reason, c.seconds, c.errors)
    assert back.source == "cached"


def _prediction_entry_points():
    from napari_deconoising.core.model import DecoNoisingModel
    from napari_deconoising.core.predict import predict_iter, prediction_plan
    from napari_deconoising.core.predict_file import predict_file
    from napari_deconoising.core.stream import predict_lazy_iter

    return [DecoNoisingModel.predict, predict_iter, prediction_plan, predict_file, predict_lazy_iter]


@pytest.mark.parametrize("fn", _prediction_entry_points(), ids=lambda f: f.__qualname__)
def test_every_prediction_entry_point_defaults_to_the_measured_choice(fn):
    """One default for the widgets' in-memory and large-layer paths, files, the CLI and Dask (issue 8)."""
    import inspect

    from napari_deconoising.core.precision import DEFAULT_PRECISION

    assert DEFAULT_PRECISION == "auto"
    assert inspect.signature(fn).parameters["precision"].default == DEFAULT_PRECISION


def test_cli_predict_defaults_to_the_measured_choice():
    from napari_deconoising.cli import build_parser

    args = build_parser().parse_args(["predict", "model.pt", "in.tif"])
    assert args.precision == "auto"


@pytest.mark.parametrize("precision", ["fp8", None, 16])
def test_a_choice_of_an_unknown_precision_does_not_load(precision):
    """A newer version's (or a hand-edited) decision: refused here, so the cache counts it as no entry."""
    entry = {**choose({"fp32": 1.0}, {}, "predict").to_json(), "precision": precision}
    with pytest.raises(ValueError, match="unknown precision"):
        PrecisionChoice.from_json(entry)
