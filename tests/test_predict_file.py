"""Predicting files of any size: zarr/OME-Zarr/TIFF in, OME-Zarr/BigTIFF out, equal to in-memory."""

import numpy as np
import pytest
import tifffile
import torch

from napari_deconoising.core.io import ImageFileError, read_image, write_image
from napari_deconoising.core.predict import tile_halo
from napari_deconoising.core.predict_file import predict_file


@pytest.fixture
def stack(trained):
    return np.random.default_rng(0).normal(trained.mean, trained.std, (2, 60, 50)).astype(np.float32)


def test_zarr_in_zarr_out_equals_in_memory(trained, stack, tmp_path):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image as ome_write

    # A two-level image written by the ome-zarr library itself (NGFF 0.5 / zarr v3), with a pixel size.
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    ome_write(stack, root, axes="tyx", scale_factors=(2,),
              coordinate_transformations=[[{"type": "scale", "scale": [1.0, 0.5, 0.25]}],
                                          [{"type": "scale", "scale": [1.0, 1.0, 0.5]}]])
    tile = 2 * tile_halo(trained) + 16
    ref = trained.predict(stack, "TYX", device="cpu", tile_size=tile, batch_size=2, precision="fp32")
    axes = predict_file(trained, tmp_path / "in.zarr", tmp_path / "den.zarr", tmp_path / "dec.zarr",
                        tile_size=tile, device="cpu", batch_size=2, precision="fp32")
    assert axes == "TYX"
    for name, want in (("den.zarr", ref.denoised), ("dec.zarr", ref.deconvolved)):
        node = next(iter(Reader(parse_url(str(tmp_path / name)))()))
        assert [a["name"] for a in node.metadata["axes"]] == ["t", "y", "x"]
        assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.5, 0.25]
        np.testing.assert_allclose(np.asarray(node.data[0]), want, rtol=1e-5, atol=1e-5)


def test_tiff_in_bigtiff_out(trained, stack, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", stack, metadata={"axes": "TYX"}, photometric="minisblack")
    tile = 2 * tile_halo(trained) + 16
    ref = trained.predict(stack, "TYX", device="cpu", tile_size=tile, batch_size=2, precision="fp32")
    predict_file(trained, tmp_path / "in.tif", tmp_path / "den.tif", tile_size=tile, device="cpu", batch_size=2,
                 precision="fp32")
    with tifffile.TiffFile(tmp_path / "den.tif") as tif:
        assert tif.is_bigtiff
    data, axes = read_image(tmp_path / "den.tif")
    assert axes == "TYX"
    np.testing.assert_allclose(data, ref.denoised, rtol=1e-5, atol=1e-5)


def test_refuses_to_overwrite_input_and_leaves_nothing_on_error(trained, stack, tmp_path):
    write_image(tmp_path / "in.zarr", stack, "TYX")
    with pytest.raises(ImageFileError, match="overwrite the input"):
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "in.zarr", device="cpu")
    with pytest.raises(ImageFileError, match="order"):
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "o.zarr", axes="YXT", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


@pytest.fixture
def bf16_measured_faster(monkeypatch):
    """``precision="auto"`` with injected probe timings that favour bf16; records each probe."""
    from napari_deconoising.core import device as device_mod

    calls = []

    def fake_measure(probe, dev, precisions):
        calls.append((probe.task, tuple(precisions)))
        return {"fp32": 1.0, "bf16": 0.25}, {"fp32": 0.0, "bf16": 0.001}

    monkeypatch.setattr(device_mod, "candidates", lambda *a, **k: (["fp32", "bf16"], ""))
    monkeypatch.setattr(device_mod, "measure", fake_measure)
    monkeypatch.setenv("NAPARI_DECONOISING_CACHE", "off")
    return calls


def test_default_precision_is_measured_once_and_used_for_every_tile(trained, stack, tmp_path, bf16_measured_faster):
    write_image(tmp_path / "in.zarr", stack, "TYX")
    tile = 2 * tile_halo(trained) + 16
    out = {}
    for prec in (None, "bf16", "fp32"):
        kw = {} if prec is None else {"precision": prec}
        predict_file(trained, tmp_path / "in.zarr", tmp_path / f"{prec}.zarr", tile_size=tile, device="cpu", **kw)
        out[prec] = read_image(tmp_path / f"{prec}.zarr")[0]
    assert bf16_measured_faster == [("predict", ("fp32", "bf16"))]  # the default alone measured, once
    np.testing.assert_array_equal(out[None], out["bf16"])
    assert np.abs(out[None] - out["fp32"]).max() > 1e-5  # bf16 really ran


def test_dask_workers_get_the_decision_not_auto(trained, stack, tmp_path, monkeypatch, bf16_measured_faster):
    from napari_deconoising.core import cluster

    seen = []

    def fake_run_on_cluster(client, run_job, model, plan, source, outputs, work, device, precision, crops=()):
        seen.append(precision)
        yield from ()

    monkeypatch.setattr(cluster, "run_on_cluster", fake_run_on_cluster)
    write_image(tmp_path / "in.zarr", stack, "TYX")
    from types import SimpleNamespace

    client = SimpleNamespace(nthreads=lambda: {"tcp://worker": 1})  # all predict_file asks of a Client itself
    predict_file(trained, tmp_path / "in.zarr", tmp_path / "o.zarr", device="cpu", client=client)
    assert seen == ["bf16"] and len(bf16_measured_faster) == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiles_sized_for_the_precision_it_runs(trained, tmp_path, monkeypatch, precision):
    """Without a tile size, a bf16 plan gets tiles for half the bytes; output chunks are the tile cores."""
    import zarr

    from napari_deconoising.core import tile_plan

    monkeypatch.setattr(tile_plan, "_available_bytes",
                        lambda device: tile_plan._BYTES_PER_PIXEL_CHANNEL * trained.config.channels * 96**2)
    img = np.random.default_rng(5).normal(trained.mean, trained.std, (240, 240)).astype(np.float32)
    write_image(tmp_path / "in.zarr", img, "YX")
    predict_file(trained, tmp_path / "in.zarr", tmp_path / "den.zarr", device="cpu", precision=precision)
    tile = tile_plan.auto_tile_shape(trained, torch.device("cpu"), img.shape, reduced=precision == "bf16")
    chunks = zarr.open_group(str(tmp_path / "den.zarr"), mode="r")["0"].chunks
    assert chunks == tile_plan.tile_grid(trained, img.shape, tile).cores


def test_pixel_size_and_units_reach_both_outputs(trained, tmp_path):
    import zarr
    from ome_zarr.writer import write_image as ome_write

    from napari_deconoising.core.lazy_io import open_lazy

    vol = np.random.default_rng(3).normal(trained.mean, trained.std, (3, 60, 50)).astype(np.float32)
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    ome_write(vol, root, axes=[{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"], scale_factors=(2,),
              coordinate_transformations=[[{"type": "scale", "scale": [0.3, 0.1, 0.1]}],
                                          [{"type": "scale", "scale": [0.3, 0.2, 0.2]}]])
    predict_file(trained, tmp_path / "in.zarr", tmp_path / "den.zarr", tmp_path / "dec.tif", device="cpu",
                 precision="fp32")
    for name in ("den.zarr", "dec.tif"):
        lazy = open_lazy(tmp_path / name)
        assert lazy.axes == "ZYX" and lazy.scale == pytest.approx((0.3, 0.1, 0.1)), name
        assert lazy.units == ("micrometer",) * 3, name


def test_an_axis_given_another_letter_loses_its_size(trained, tmp_path):
    from napari_deconoising.core.lazy_io import open_lazy

    vol = np.random.default_rng(3).normal(trained.mean, trained.std, (3, 60, 50)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", vol, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "spacing": 0.3, "unit": "um"})
    predict_file(trained, tmp_path / "in.tif", tmp_path / "out.zarr", axes="TYX", device="cpu", precision="fp32")
    lazy = open_lazy(tmp_path / "out.zarr")  # the Z spacing is not a time step; Y and X keep theirs
    assert lazy.axes == "TYX" and lazy.scale == pytest.approx((1.0, 0.1, 0.1))
    assert lazy.units == (None, "micrometer", "micrometer")


def test_an_ome_zarr_origin_reaches_the_outputs(trained, stack, tmp_path):
    """A tile of a larger project (MoBIE, a stitched plate) stays where it was: the NGFF translation."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image as ome_write

    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    ome_write(stack, root, axes="tyx", scale_factors=(),
              coordinate_transformations=[[{"type": "scale", "scale": [1.0, 0.5, 0.25]},
                                           {"type": "translation", "translation": [0.0, 12.5, 7.0]}]])
    tile = 2 * tile_halo(trained) + 16
    predict_file(trained, tmp_path / "in.zarr", tmp_path / "den.zarr", tmp_path / "dec.zarr", tile_size=tile,
                 device="cpu", batch_size=2, precision="fp32")
    for name in ("den.zarr", "dec.zarr"):
        node = next(iter(Reader(parse_url(str(tmp_path / name)))()))
        transforms = {t["type"]: t for t in node.metadata["coordinateTransformations"][0]}
        assert transforms["scale"]["scale"] == [1.0, 0.5, 0.25]
        assert transforms["translation"]["translation"] == [0.0, 12.5, 7.0]


def test_an_output_inside_or_around_the_input_is_refused(trained, stack, tmp_path):
    """A zarr output of the input's store, or of an array in it, would replace the input (issue: data loss)."""
    write_image(tmp_path / "in.zarr", stack, "TYX")
    (tmp_path / "link").symlink_to(tmp_path)
    for source, output, why in ((tmp_path / "in.zarr", tmp_path / "in.zarr" / "0", "lies inside it"),
                                (tmp_path / "in.zarr", tmp_path / "link" / "in.zarr" / "0", "lies inside it"),
                                (tmp_path / "in.zarr" / "0", tmp_path / "in.zarr", "holds it"),
                                (tmp_path / "in.zarr" / "0", tmp_path / "link" / "in.zarr", "holds it")):
        with pytest.raises(ImageFileError, match=f"refusing to overwrite the input image .*{why}"):
            predict_file(trained, source, tmp_path / "ok.tif", output, device="cpu", precision="fp32")
    np.testing.assert_array_equal(read_image(tmp_path / "in.zarr")[0], stack)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "link"]


def test_two_outputs_of_one_name_are_refused(trained, stack, tmp_path):
    write_image(tmp_path / "in.tif", stack, "TYX")
    with pytest.raises(ImageFileError, match="two outputs name the same file"):
        predict_file(trained, tmp_path / "in.tif", tmp_path / "o.tif", tmp_path / "." / "o.tif", device="cpu",
                     precision="fp32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(trained, stack, tmp_path, batch_size):
    write_image(tmp_path / "in.tif", stack, "TYX")
    with pytest.raises(ValueError, match=f"batch_size={batch_size}: must be at least 1"):
        predict_file(trained, tmp_path / "in.tif", tmp_path / "o.tif", device="cpu", precision="fp32",
                     batch_size=batch_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_auto_keeps_its_runner_up_where_int8_misses(int8_misses, trained, stack, tmp_path):
    """The plan "auto" made reaches the tiles: int8 falls back to bf16 (auto's runner-up), not to fp32."""
    write_image(tmp_path / "in.tif", stack, "TYX")
    plans = []
    predict_file(trained, tmp_path / "in.tif", tmp_path / "o.tif", device="cpu", on_plan=plans.append)
    assert plans[0].precision == "bf16" and plans[0].reason.endswith("so bf16"), plans[0].reason
    assert plans[0].reason.startswith("measured: int8: 4.0x faster than fp32"), plans[0].reason


@pytest.fixture
def per_channel(trained, tmp_path, monkeypatch):
    """A model per channel, a CYX input, and the keyword arguments each channel's prediction got."""
    from napari_deconoising.core.channels import ChannelModels
    from napari_deconoising.core.model import DecoNoisingModel

    calls = []
    real = DecoNoisingModel.predict

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DecoNoisingModel, "predict", spy)
    img = np.random.default_rng(2).normal(trained.mean, trained.std, (2, 40, 37)).astype(np.float32)
    write_image(tmp_path / "in.tif", img, "CYX")
    return ChannelModels([trained, trained]), calls


@pytest.mark.parametrize("name", ["o.zarr", "o.tif"])
def test_a_model_per_channel_gets_the_batch_size_and_lower_case_axes(per_channel, tmp_path, name):
    model, calls = per_channel
    axes = predict_file(model, tmp_path / "in.tif", tmp_path / name, axes="cyx", device="cpu", precision="fp32",
                        batch_size=1)
    assert axes == "CYX" and read_image(tmp_path / name)[1] == "CYX"
    assert [c["batch_size"] for c in calls] == [1, 1]


def test_a_model_per_channel_checks_its_outputs_before_predicting(per_channel, tmp_path):
    model, calls = per_channel
    with pytest.raises(ImageFileError, match="order"):  # OME-Zarr cannot hold the channels after Y
        predict_file(model, tmp_path / "in.tif", tmp_path / "o.tif", tmp_path / "o.zarr", axes="YCX", device="cpu",
                     precision="fp32")
    with pytest.raises(ValueError, match="one network per channel predicts in memory"):
        predict_file(model, tmp_path / "in.tif", tmp_path / "o.tif", device="cpu", precision="fp32", client=object())
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
