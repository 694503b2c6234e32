"""Out-of-core benchmark: predict a synthetic OME-Zarr volume larger than memory, zarr to zarr.

For each volume size (GiB of float32 input) and each number of Dask workers, one fresh
``deconoising predict`` process predicts the volume into an OME-Zarr output
(denoised only) and reports:

* wall time of the prediction (a Dask cluster's start-up not counted) and throughput
  in megapixels per second (input pixels / that time);
* peak resident memory (``VmHWM``) of the main process and of every Dask worker, so
  "memory does not grow with the volume" can be read off two sizes.

The input is written chunk by chunk from a dask random array (never in memory as a
whole), as a TYX stack of 4096 x 4096 planes. The model is a depth-2, 8-channel
DecoNoising network with Gaussian PSF sigma 1.5 and random weights: throughput does
not depend on the weights, and a small network keeps the run about the data path.

Usage::

    python benchmarks/large_data.py --gib 8 1 --workers 1 2      # the issue's numbers (hours on 2 cores)
    python benchmarks/large_data.py --gib 0.25 1 --workers 1 2   # minutes
    python benchmarks/large_data.py --smoke                      # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PLANE = 4096


def make_model(path: Path) -> None:
    """A depth-2, 8-channel model with random weights (throughput does not depend on them)."""
    from napari_deconoising.core import DecoNoisingModel, TrainConfig
    from napari_deconoising.core.network import DecoNoisingNet
    from napari_deconoising.core.psf import gaussian_psf

    psf = gaussian_psf(1.5)
    net = DecoNoisingNet(psf, depth=2, channels=8, ndim=2)
    cfg = TrainConfig(depth=2, channels=8, psf_sigma=1.5)
    DecoNoisingModel(cfg, net.state_dict(), mean=100.0, std=10.0, psf=psf).save(path)


def make_volume(path: Path, gib: float, plane: int = PLANE) -> tuple[int, ...]:
    """A float32 TYX OME-Zarr volume of about ``gib`` GiB, written plane chunk by plane chunk."""
    import dask.array as da

    from napari_deconoising.core.ome import create_ome_zarr

    planes = max(1, round(gib * 1024**3 / (4 * plane * plane)))
    shape = (planes, plane, plane)
    target = create_ome_zarr(path, shape, "TYX", chunks=(1, 1024, 1024))
    noise = da.random.default_rng(0).normal(100.0, 10.0, size=shape, chunks=(1, 1024, 1024)).astype("f4")
    da.store(noise, target, lock=False)  # chunk by chunk, bounded memory
    return shape


def run_predict(model: Path, src: Path, out: Path, workers: int | None, tile: int) -> dict:
    """One ``deconoising predict`` in a fresh process; its wall time and peak RSS (workers too)."""
    code = f"""
import json, sys, time
from napari_deconoising.core.model import load_model
from napari_deconoising.core.predict import peak_rss_bytes
from napari_deconoising.core.predict_file import predict_file
model = load_model({str(model)!r})
workers = {workers!r}
worker_rss = []
if workers:
    from napari_deconoising.core.cluster import dask_client
    with dask_client(workers) as client:
        client.wait_for_workers(workers)
        t0 = time.perf_counter()  # the prediction alone, not the cluster's start
        predict_file(model, {str(src)!r}, {str(out)!r}, tile_size={tile}, device="cpu", client=client)
        seconds = time.perf_counter() - t0
        worker_rss = list(client.run(peak_rss_bytes).values())
else:
    t0 = time.perf_counter()
    predict_file(model, {str(src)!r}, {str(out)!r}, tile_size={tile}, device="cpu")
    seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "main_rss": peak_rss_bytes(), "worker_rss": worker_rss}}))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, nargs="+", default=[8.0, 1.0], help="input sizes in GiB (float32)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask worker counts (0: no Dask)")
    p.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    p.add_argument("--plane", type=int, default=PLANE, help="side of the square planes of the TYX volume")
    p.add_argument("--dir", help="scratch folder (default: a temporary one, deleted at the end)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--smoke", action="store_true", help="a tiny volume, one worker count; seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.gib, args.workers, args.plane = [0.004], [0], 256
    plane = args.plane
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="deconoising-large-"))
    scratch.mkdir(parents=True, exist_ok=True)
    results = {"machine": common.machine_info(), "runs": []}
    print(common.machine_line(results["machine"]))
    try:
        make_model(scratch / "model.pt")
        for gib in args.gib:
            src = scratch / f"in_{gib:g}GiB.zarr"
            t0 = time.perf_counter()
            shape = make_volume(src, gib, plane)
            px = shape[0] * shape[1] * shape[2]
            print(f"input {shape} float32 = {4 * px / 1024**3:.2f} GiB (written in {time.perf_counter() - t0:.0f} s)")
            for w in args.workers:
                out = scratch / f"out_{gib:g}_{w}.zarr"
                r = run_predict(scratch / "model.pt", src, out, w or None, args.tile)
                r.update(gib=4 * px / 1024**3, shape=list(shape), workers=w, mp_per_s=px / r["seconds"] / 1e6)
                results["runs"].append(r)
                peak = max([r["main_rss"], *r["worker_rss"]]) / 1024**3
                print(f"{r['gib']:.2f} GiB, {w or 'no'} Dask workers: {r['seconds']:.0f} s, "
                      f"{r['mp_per_s']:.2f} MP/s, peak RSS main {r['main_rss'] / 1024**3:.2f} GiB"
                      + (f", workers {', '.join(f'{b / 1024**3:.2f}' for b in r['worker_rss'])} GiB"
                         if r["worker_rss"] else "") + f" (max {peak:.2f} GiB)")
                shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(src, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
