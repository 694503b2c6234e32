"""The decision cache: where it lives, keys, corrupt files, switching it off."""

from __future__ import annotations

import json

from napari_deconoising.core.precision import PrecisionChoice
from napari_deconoising.core.precision_cache import CACHE_ENV, ISA_LIMIT_ENVS, DecisionCache, cache_dir, cache_key

CHOICE = PrecisionChoice("bf16", "measured: bf16 2x faster", "measured", {"fp32": 1.0, "bf16": 0.5},
                         {"fp32": 0.0, "bf16": 0.004})
NET = {"depth": 2, "channels": 8, "ndim": 2, "psf": [9, 9], "input": [8, 32, 32]}


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    for off in ("off", "0", "", "none"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir().name == "napari-deconoising"


def test_key_depends_on_everything_that_changes_timings():
    base = cache_key("AMD EPYC [x86_64, flags 1]", "cpu", "train", NET, "2.13.0")
    assert base == cache_key("AMD EPYC [x86_64, flags 1]", "cpu", "train", dict(reversed(NET.items())), "2.13.0")
    others = [
        cache_key("AMD EPYC [x86_64, flags 2]", "cpu", "train", NET, "2.13.0"),
        cache_key("AMD EPYC [x86_64, flags 1]", "cuda", "train", NET, "2.13.0"),
        cache_key("AMD EPYC [x86_64, flags 1]", "cpu", "predict", NET, "2.13.0"),
        cache_key("AMD EPYC [x86_64, flags 1]", "cpu", "train", {**NET, "channels": 16}, "2.13.0"),
        cache_key("AMD EPYC [x86_64, flags 1]", "cpu", "train", NET, "2.14.0"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_key_depends_on_instruction_set_limits(monkeypatch):
    """A decision made with oneDNN's bf16 units must not be reused where oneDNN may not use them."""
    for var in ISA_LIMIT_ENVS:
        monkeypatch.delenv(var, raising=False)
    args = ("AMD EPYC [x86_64, flags 1]", "cpu", "predict", NET, "2.13.0")
    native = cache_key(*args)
    assert native == cache_key(*args, limits={})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    limited = cache_key(*args)
    assert limited != native
    assert limited == cache_key(*args, limits={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})
    assert limited != cache_key(*args, limits={"ONEDNN_MAX_CPU_ISA": "AVX2"})


def test_put_then_get(tmp_path):
    cache = DecisionCache(tmp_path / "sub")
    assert cache.get("k") is None
    cache.put("k", CHOICE, {"machine": "AMD EPYC"})
    hit = DecisionCache(tmp_path / "sub").get("k")
    assert hit.precision == "bf16" and hit.source == "cached" and hit.seconds == CHOICE.seconds
    assert json.loads(cache.path.read_text())["k"]["machine"] == "AMD EPYC"
    cache.put("k2", CHOICE)
    assert set(json.loads(cache.path.read_text())) == {"k", "k2"}


def test_corrupt_or_foreign_file_is_ignored_and_replaced(tmp_path):
    cache = DecisionCache(tmp_path)
    cache.path.write_text("{not json")
    assert cache.get("k") is None
    cache.path.write_text(json.dumps(["a", "list"]))
    assert cache.get("k") is None
    cache.path.write_text(json.dumps({"k": {"precision": "bf16"}}))  # entry lacks fields
    assert cache.get("k") is None
    cache.put("k", CHOICE)
    assert cache.get("k").precision == "bf16"


def test_disabled_cache_stores_nothing(tmp_path):
    cache = DecisionCache(None)
    cache.put("k", CHOICE)
    assert cache.get("k") is None and cache.path is None


def test_unwritable_folder_does_not_raise(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = DecisionCache(blocker / "sub")  # a folder below a file cannot be created
    cache.put("k", CHOICE)
    assert cache.get("k") is None


def test_an_entry_of_an_unknown_precision_counts_as_none(tmp_path):
    cache = DecisionCache(tmp_path)
    for precision in ("fp8", None):
        cache.path.write_text(json.dumps({"k": {**CHOICE.to_json(), "precision": precision}}))
        assert cache.get("k") is None


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from napari_deconoising.core import precision_cache

    def full_disk(obj, f, **kwargs):
        f.write('{"partial')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(precision_cache.json, "dump", full_disk)
    cache = DecisionCache(tmp_path)
    cache.put("k", CHOICE)  # ignored, as every failed write
    assert list(tmp_path.iterdir()) == []
