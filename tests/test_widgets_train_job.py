"""The training job's Ready message carries the precision decision."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_deconoising._widgets._train_job import Ready, TrainControl, train_job  # noqa: E402


def test_ready_carries_precision_and_reason(sample, tiny_config):
    job = train_job(TrainControl(), sample.noisy, tiny_config.replace(precision="auto"), "YX", None, None)
    ready = next(job)
    job.close()
    assert isinstance(ready, Ready) and ready.precision in ("fp32", "bf16") and ready.device == "cpu"
    assert ready.reason.startswith(("measured", "cached measured", "only candidate"))
    pinned = next(train_job(TrainControl(), sample.noisy, tiny_config, "YX", None, None))
    assert (pinned.precision, pinned.reason) == ("fp32", "requested")
