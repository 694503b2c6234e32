"""Training from data larger than memory: zarr / dask / memory-mapped inputs are read patch by patch."""

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_deconoising.core import TrainConfig
from napari_deconoising.core.train import Trainer

CFG = TrainConfig(depth=2, channels=8, patch_size=32, batch_size=8, steps_per_epoch=2, epochs=1, seed=0,
                  precision="fp32", device="cpu")


def _history(images, axes):
    trainer = Trainer(images, CFG, axes=axes)
    list(trainer.run())
    return trainer


def test_lazy_inputs_train_exactly_like_numpy(sample, tmp_path):
    import zarr

    from napari_deconoising.core.lazy_io import open_lazy

    stack = np.stack([sample.noisy, sample.noisy.T[::-1], sample.noisy[::-1]]).astype(np.float32)
    ref = _history(stack, "TYX")
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=stack.shape, chunks=(1, 40, 40), dtype="f4")
    z[...] = stack
    tifffile.imwrite(tmp_path / "s.tif", stack, metadata={"axes": "TYX"}, photometric="minisblack")
    for lazy in (z, open_lazy(tmp_path / "s.tif").dask()):
        t = _history(lazy, "TYX")
        assert not isinstance(t.slices[0], np.ndarray)  # stayed lazy
        assert (t.mean, t.std) == pytest.approx((ref.mean, ref.std), rel=1e-9)
        assert [h["train_loss"] for h in t.history] == pytest.approx([h["train_loss"] for h in ref.history],
                                                                      rel=1e-5)


def _peak_traced(data, axes="YX"):
    tracemalloc.start()
    try:
        trainer = Trainer(data, CFG, axes=axes)
        trainer.sampler.sample(CFG.batch_size)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_data(sample, monkeypatch):
    """One chunk a plane, 4x the planes: the traced peak stays put (chunks in flight, not the data)."""
    import dask.array as da

    from napari_deconoising.core import data

    monkeypatch.setattr(data, "GROUP_BYTES", 4 * 2**20)  # 64 MiB scaled down to this test's data

    def lazy(t):
        return da.from_array(np.tile(sample.noisy, (t, 4, 4)).astype(np.float32), chunks=(1, 384, 384))

    _peak_traced(lazy(2), "TYX")  # imports and warms everything up (dask's first compute) before measuring
    small, big = lazy(20), lazy(80)  # 80 planes of 384^2 px: 47 MB
    peaks = [_peak_traced(small, "TYX"), _peak_traced(big, "TYX")]
    assert peaks[1] < big.nbytes / 5, f"peak {peaks[1] / 1e6:.1f} MB for {big.nbytes / 1e6:.1f} MB of data"
    assert peaks[1] < 1.5 * peaks[0] + 1e6, f"peaks {peaks[0] / 1e6:.1f} MB -> {peaks[1] / 1e6:.1f} MB"
