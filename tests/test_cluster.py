"""Prediction on a real Dask cluster gives exactly the single-process result."""

import math
import os
import time

import numpy as np
import pytest

from napari_deconoising.core.io import read_image, write_image
from napari_deconoising.core.predict import tile_halo
from napari_deconoising.core.predict_file import predict_file

pytest.importorskip("distributed")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Dask starts its worker processes with one thread per library (its nanny sets
    OMP_NUM_THREADS=1), and a sum over more threads rounds differently in the last bit.
    With the same thread count on both sides the results must be identical."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_local_cluster_equals_single_process(trained, tmp_path, precision, monkeypatch):
    from napari_deconoising.core import precision as precision_mod
    from napari_deconoising.core.cluster import dask_client
    from napari_deconoising.core.quantize import int8_unavailable

    if precision == "int8":
        if int8_unavailable(trained.config):
            pytest.skip(int8_unavailable(trained.config))
        # The tiny model's nearly flat output would send int8 back to fp32; workers calibrate
        # on the client's crops and must build the very same int8 network.
        monkeypatch.setitem(precision_mod.TOLERANCE, "predict", 1.0)
    img = np.random.default_rng(0).normal(trained.mean, trained.std, (2, 150, 100)).astype(np.float32)
    write_image(tmp_path / "in.zarr", img, "TYX")
    kw = dict(tile_size=2 * tile_halo(trained) + 40, device="cpu", batch_size=2,  # tiles of two shapes
              precision=precision)
    predict_file(trained, tmp_path / "in.zarr", tmp_path / "one.zarr", tmp_path / "one_dec.tif", **kw)
    seen = []
    # Two worker processes: the model, plan and file references travel pickled, as to a real cluster.
    with dask_client(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "two.zarr", tmp_path / "two_dec.tif",
                     client=client, progress=lambda d, t: seen.append((d, t)), **kw)
        # no worker keeps the network after the run (a long-lived cluster would hold it, GPU memory too)
        from napari_deconoising.core import cluster

        for _ in range(50):  # the workers are told without waiting for them
            if set(client.run(lambda: len(cluster._NETS)).values()) == {0}:
                break
            time.sleep(0.1)
        assert set(client.run(lambda: len(cluster._NETS)).values()) == {0}
    assert seen[-1][0] == seen[-1][1] > 2
    for a, b in (("one.zarr", "two.zarr"), ("one_dec.tif", "two_dec.tif")):
        np.testing.assert_array_equal(read_image(tmp_path / a)[0], read_image(tmp_path / b)[0])
    if precision == "int8":  # and it was int8, not fp32
        predict_file(trained, tmp_path / "in.zarr", tmp_path / "fp32.zarr", **{**kw, "precision": "fp32"})
        assert not np.array_equal(read_image(tmp_path / "one.zarr")[0], read_image(tmp_path / "fp32.zarr")[0])


def test_cluster_error_reaches_the_caller_and_leaves_no_output(trained, tmp_path):
    from distributed import Client, LocalCluster

    from napari_deconoising.core import DataError

    img = np.random.default_rng(1).normal(trained.mean, trained.std, (40, 40)).astype(np.float32)
    img[30, 30] = np.nan
    write_image(tmp_path / "nan.zarr", img, "YX")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client, pytest.raises(DataError, match="NaN"):
        predict_file(trained, tmp_path / "nan.zarr", tmp_path / "out.zarr", client=client, device="cpu",
                     tile_size=2 * tile_halo(trained) + 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.zarr"]


def test_cli_scheduler_uses_an_existing_cluster(trained, tmp_path, capsys):
    from distributed import LocalCluster

    from napari_deconoising.cli import main

    img = np.random.default_rng(2).normal(trained.mean, trained.std, (50, 40)).astype(np.float32)
    write_image(tmp_path / "in.tif", img)
    trained.save(tmp_path / "m.pt")
    tile = str(2 * tile_halo(trained) + 8)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        assert main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "in.tif"), "--denoised",
                     str(tmp_path / "c.zarr"), "--tile-size", tile, "--device", "cpu",
                     "--scheduler", cluster.scheduler_address]) == 0
    assert f"Dask: 1 worker at {cluster.scheduler_address}" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "in.tif"), "--denoised",
                 str(tmp_path / "one.zarr"), "--tile-size", tile, "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "c.zarr")[0], read_image(tmp_path / "one.zarr")[0])


def test_local_workers_split_the_ram_the_budget_grows_into(trained3d, tmp_path, monkeypatch):
    """Each worker holds a tile at once: where a 3D network's tiles would grow past the CPU cap, two
    workers grow them only into half the RAM share each (two full shares would double it)."""
    import torch
    import zarr

    from napari_deconoising.core import tile_plan
    from napari_deconoising.core.cluster import dask_client

    per_voxel = tile_plan._BYTES_PER_PIXEL_CHANNEL * trained3d.config.channels
    monkeypatch.setattr(tile_plan, "_CPU_CAP_BYTES", per_voxel * 20 * 48 * 48)  # planned in this process
    monkeypatch.setattr(tile_plan, "_available_bytes", lambda device: per_voxel * 40 * 100 * 100)
    img = np.random.default_rng(1).normal(trained3d.mean, trained3d.std, (16, 300, 300)).astype(np.float32)
    write_image(tmp_path / "in.zarr", img, "ZYX")
    cpu = torch.device("cpu")
    whole, split = (tile_plan.auto_tile_shape(trained3d, cpu, img.shape, share=k) for k in (1, 2))
    assert math.prod(split) < math.prod(whole)
    with dask_client(workers=2) as client:
        predict_file(trained3d, tmp_path / "in.zarr", tmp_path / "out.zarr", client=client, device="cpu",
                     precision="fp32")
    chunks = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["0"].chunks
    assert chunks == tile_plan.tile_grid(trained3d, img.shape, split).cores


def test_relative_paths_reach_workers_that_run_in_another_folder(trained, tmp_path, monkeypatch, capsys):
    """A scheduler and worker started elsewhere (as on a cluster) run in their own folder: the
    paths the tasks carry, inputs and temporary outputs alike, must not depend on ours."""
    import subprocess
    import sys

    from distributed import Client, LocalCluster

    from napari_deconoising.cli import main

    img = np.random.default_rng(3).normal(trained.mean, trained.std, (50, 40)).astype(np.float32)
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write_image(tmp_path / "data" / "in.tif", img)
    trained.save(tmp_path / "data" / "m.pt")
    tile = str(2 * tile_halo(trained) + 8)
    monkeypatch.chdir(tmp_path / "data")
    assert main(["predict", "m.pt", "in.tif", "--denoised", "one.zarr", "--tile-size", tile, "--device", "cpu",
                 "--precision", "fp32"]) == 0
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                  cwd=tmp_path / "elsewhere", env={**os.environ, "OMP_NUM_THREADS": "1"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with Client(cluster) as client:
                client.wait_for_workers(1, timeout=120)
            argv = ["predict", "m.pt", "in.tif", "--denoised", "c.zarr", "--deconvolved", "c_dec.tif",
                    "--tile-size", tile, "--device", "cpu", "--precision", "fp32",
                    "--scheduler", cluster.scheduler_address]
            assert main(argv) == 0, capsys.readouterr().err
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == []  # nothing written there
    np.testing.assert_allclose(read_image("c.zarr")[0], read_image("one.zarr")[0], rtol=1e-5, atol=1e-6)
    assert read_image("c_dec.tif")[0].shape == img.shape


def test_local_workers_say_an_error_in_one_line(trained, tmp_path, capfd):
    """A task that fails on a worker (a NaN) is reported once, by the command, without the
    workers' own log of it; a Dask dashboard already on port 8787 is no matter either."""
    import socket

    from napari_deconoising.cli import main

    img = np.random.default_rng(4).normal(trained.mean, trained.std, (40, 40)).astype(np.float32)
    img[30, 30] = np.nan
    write_image(tmp_path / "nan.tif", img)
    trained.save(tmp_path / "m.pt")
    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", 8787))  # as another Dask's dashboard would (if none is there already)
        holder.listen()
    except OSError:
        pass  # something holds it already
    try:
        code = main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "nan.tif"), "--denoised",
                     str(tmp_path / "out.tif"), "--workers", "1", "--device", "cpu", "--precision", "fp32",
                     "--tile-size", str(2 * tile_halo(trained) + 8)])
    finally:
        holder.close()
    err = capfd.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith(("Dask: ", "precision "))]
    assert lines == ["deconoising: error: the image contains NaN or infinite values (first found at Y=30, X=30); "
                     "fill or crop them first"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "nan.tif"]


def test_a_batch_runs_file_after_file_on_the_same_workers(trained, tmp_path, capsys):
    """Each file scatters the model anew: under a key of its own, or the previous file's
    cancel takes it away from the next ("lost dependencies")."""
    from napari_deconoising.cli import main

    img = np.random.default_rng(5).normal(trained.mean, trained.std, (2, 60, 50)).astype(np.float32)
    for name in ("a.tif", "b.tif", "c.tif"):
        write_image(tmp_path / name, img, "TYX")
    trained.save(tmp_path / "m.pt")
    code = main(["predict", str(tmp_path / "m.pt"), *(str(tmp_path / n) for n in ("a.tif", "b.tif", "c.tif")),
                 "--output-dir", str(tmp_path / "o"), "--no-deconvolved", "--device", "cpu", "--precision", "fp32",
                 "--tile-size", str(2 * tile_halo(trained) + 8), "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_denoised.tif", "b_denoised.tif",
                                                                  "c_denoised.tif"]
    assert np.array_equal(read_image(tmp_path / "o" / "a_denoised.tif")[0],
                          read_image(tmp_path / "o" / "c_denoised.tif")[0])


def test_ctrl_c_stops_local_workers_quietly(trained, tmp_path):
    """Ctrl-C goes to the whole process group, workers included: one line, from the command."""
    import signal
    import subprocess
    import sys

    img = np.random.default_rng(6).normal(trained.mean, trained.std, (40, 400, 400)).astype(np.float32)
    write_image(tmp_path / "big.tif", img, "TYX")
    trained.save(tmp_path / "m.pt")
    proc = subprocess.Popen([sys.executable, "-m", "napari_deconoising", "predict", str(tmp_path / "m.pt"),
                             str(tmp_path / "big.tif"), "--denoised", str(tmp_path / "out.tif"), "--device", "cpu",
                             "--precision", "fp32", "--workers", "1"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    try:
        for line in proc.stderr:  # the first tile is under way once the precision is said
            lines.append(line)
            if line.startswith("precision "):
                break
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        rest = proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert code == 2, err
    assert rest.strip().splitlines() == [
        f"deconoising: error: interrupted: no output written for {tmp_path / 'big.tif'}; 0 of 1 file done"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "m.pt"]
