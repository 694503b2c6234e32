"""Messages for the user: every notification goes through _notify.show."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_deconoising._widgets import _notify  # noqa: E402
from napari_deconoising._widgets._notify import describe_error  # noqa: E402


def test_levels_reach_the_matching_napari_function(monkeypatch):
    seen = []
    for level in ("info", "warning", "error"):
        monkeypatch.setattr(
            _notify.notifications, f"show_{level}", lambda msg, _l=level: seen.append((_l, msg))
        )
    _notify.info("a")
    _notify.warning("b")
    _notify.error("c")
    assert seen == [("info", "a"), ("warning", "b"), ("error", "c")]


def test_notify_error_shows_and_returns_the_message(notifications):
    from napari_deconoising.core import DataError

    msg = _notify.notify_error(DataError("image is constant"), what="training")
    assert msg == "Cannot use this image: image is constant"
    assert notifications["error"] == [msg]


def test_out_of_memory_suggests_smaller_tiles():
    import torch

    msg = describe_error(
        RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), what="prediction"
    )
    assert "smaller tile size" in msg and "patch size" in msg
    assert "smaller tile size" in describe_error(torch.OutOfMemoryError("boom"))
    assert "smaller tile size" in describe_error(MemoryError())
    assert describe_error(RuntimeError("shape mismatch"), what="training") == (
        "Training failed: shape mismatch"
    )


@pytest.mark.parametrize(
    ("exc", "start"),
    [
        ("DataError", "Cannot use this image: "),
        ("ConfigError", "Invalid setting: "),
        ("PSFError", "Problem with the PSF: "),
        ("ModelFileError", "Cannot load the model: "),
        ("Cancelled", "Training was cancelled"),
    ],
)
def test_core_errors_are_translated(exc, start):
    from napari_deconoising import core

    msg = describe_error(getattr(core, exc)("details here"), what="training")
    assert msg.startswith(start)
    assert exc == "Cancelled" or msg.endswith("details here")


def test_unexpected_errors_name_their_type():
    assert describe_error(KeyError("x"), what="prediction") == "Prediction failed (KeyError): 'x'"
