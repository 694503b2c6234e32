"""Out-of-core benchmark: predict a synthetic OME-Zarr volume larger than memory, zarr to zarr.

For each volume size (GiB of float32 input) and each number of Dask workers, one fresh
``deconoising predict`` process predicts the volume into an OME-Zarr output
(denoised only) and reports:

* wall time of the prediction (a Dask cluster's start-up not counted) and throughput
  in megapixels per second (input pixels / that time);
* CPU time of the prediction (all processes, workers included) and megapixels per CPU
  second: on a shared machine this is the number that compares across runs;
* peak resident memory (``VmHWM``) of the main process and of every Dask worker, so
  "memory does not grow with the volume" can be read off two sizes.

With ``--careamics`` the same volume also goes through CAREamics' ``predict_to_disk``
(zarr to zarr, in the benchmark venv, see ``careamics_predict_runner.py``) with a
network of the same size, the same tile and an overlap of twice our halo.

The input is written chunk by chunk from a dask random array (never in memory as a
whole), as a TYX stack of 4096 x 4096 planes. The model is a depth-2, 8-channel
DecoNoising network with Gaussian PSF sigma 1.5 and random weights: throughput does
not depend on the weights, and a small network keeps the run about the data path.
Pin the run with ``taskset``: the Dask workers and CAREamics inherit the pinning, and
every process runs one thread.

Usage::

    taskset -c 0 python benchmarks/large_data.py --gib 8 --workers 1 --out r8.json          # about an hour
    python benchmarks/large_data.py --gib 1 --workers 1 2 --careamics --out r1.json          # CAREamics too
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


def run_predict(model: Path, src: Path, out: Path, workers: int | None, tile: int, precision: str = "fp32") -> dict:
    """One ``deconoising predict`` in a fresh process: wall time, CPU time and peak RSS (workers too)."""
    code = f"""
import json, os, resource, sys, time
import torch
from napari_deconoising.core.model import DecoNoisingModel
from napari_deconoising.core.predict import peak_rss_bytes
from napari_deconoising.core.predict_file import predict_file
model = DecoNoisingModel.load({str(model)!r})
workers = {workers!r}

def placement():  # the cores this process may use and its torch threads: pinning must reach the workers
    return sorted(os.sched_getaffinity(0)), torch.get_num_threads()

def cpu_seconds():  # on a shared machine, pixels per CPU second compare where wall time cannot
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

worker_rss, worker_place, worker_cpu = [], [], []
if workers:
    from napari_deconoising.core.cluster import dask_client
    with dask_client(workers) as client:
        client.wait_for_workers(workers)
        before = client.run(cpu_seconds)
        c0, t0 = cpu_seconds(), time.perf_counter()  # the prediction alone, not the cluster's start
        predict_file(model, {str(src)!r}, {str(out)!r}, tile_size={tile}, device="cpu", precision={precision!r},
                     client=client)
        seconds, main_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        worker_cpu = [c - before[w] for w, c in client.run(cpu_seconds).items()]
        worker_rss = list(client.run(peak_rss_bytes).values())
        worker_place = list(client.run(placement).values())
else:
    c0, t0 = cpu_seconds(), time.perf_counter()
    predict_file(model, {str(src)!r}, {str(out)!r}, tile_size={tile}, device="cpu", precision={precision!r})
    seconds, main_cpu = time.perf_counter() - t0, cpu_seconds() - c0
print(json.dumps({{"seconds": seconds, "main_rss": peak_rss_bytes(), "worker_rss": worker_rss,
                  "main_place": placement(), "worker_place": worker_place,
                  "cpu_s": main_cpu + sum(worker_cpu), "worker_cpu_s": worker_cpu}}))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_careamics(py: Path, scratch: Path, src: Path, tile: int, overlap: int) -> dict:
    """CAREamics' ``predict_to_disk`` of the same volume with a network of the same size (fresh processes)."""
    runner = Path(__file__).resolve().parent / "careamics_predict_runner.py"
    ckpt = scratch / "careamics_train"
    if not ckpt.exists():
        job = {"mode": "train", "work": str(ckpt), "depth": 2, "channels": 8}
        (scratch / "careamics_ckpt.json").write_text(json.dumps(common.run_peer(py, job, runner=runner)))
    checkpoint = json.loads((scratch / "careamics_ckpt.json").read_text())["checkpoint"]
    out_dir = scratch / "careamics_out"
    job = {"mode": "predict_to_disk", "checkpoint": checkpoint, "source": str(src), "out_dir": str(out_dir),
           "axes": "SYX", "tile": tile, "overlap": overlap, "batch": 1, "threads": 1}
    try:
        return common.run_peer(py, job, timeout=6 * 3600, runner=runner)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, nargs="+", default=[8.0, 1.0], help="input sizes in GiB (float32)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask worker counts (0: no Dask)")
    p.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    p.add_argument("--plane", type=int, default=PLANE, help="side of the square planes of the TYX volume")
    p.add_argument("--dir", help="scratch folder (default: a temporary one, deleted at the end)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="our precision (fp32, as CAREamics' default; the CLI's auto picks by measurement)")
    p.add_argument("--careamics", action="store_true",
                   help="also time CAREamics' predict_to_disk on every volume (needs the benchmark venv)")
    p.add_argument("--smoke", action="store_true", help="a tiny volume, one worker count; seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.gib, args.workers, args.plane = [0.004], [0], 256
    plane = args.plane
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="deconoising-large-"))
    scratch.mkdir(parents=True, exist_ok=True)
    if args.careamics:
        args.peer, note = common.peer_python(install=False)
        if args.peer is None:
            p.error(note)
    results = {"machine": common.machine_info(), "runs": []}
    print(common.machine_line(results["machine"]))
    try:
        make_model(scratch / "model.pt")
        for gib in args.gib:
            src = scratch / f"in_{gib:g}GiB.zarr"
            t0 = time.perf_counter()
            shape = make_volume(src, gib, plane)
            px = shape[0] * shape[1] * shape[2]
            print(f"input {shape} float32 = {4 * px / 1024**3:.2f} GiB "
                  f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
            for w in args.workers:
                _ours_run(args, results, scratch, src, shape, w)
            if args.careamics:
                _careamics_run(args, results, scratch, src, shape)
            shutil.rmtree(src, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def _record(args: argparse.Namespace, results: dict, run: dict) -> None:
    """Keep one run, and save the results after every run, so a stopped series keeps what it measured."""
    results["runs"].append(run)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


def _ours_run(args: argparse.Namespace, results: dict, scratch: Path, src: Path, shape: tuple, w: int) -> None:
    """Our prediction of the volume ``src`` with ``w`` Dask workers (0: in one process)."""
    px = shape[0] * shape[1] * shape[2]
    out = scratch / f"out_{src.stem}_{w}.zarr"
    r = run_predict(scratch / "model.pt", src, out, w or None, args.tile, args.precision)
    r.update(gib=4 * px / 1024**3, shape=list(shape), workers=w, precision=args.precision,
             mp_per_s=px / r["seconds"] / 1e6, mp_per_cpu_s=px / r["cpu_s"] / 1e6, loadavg=os.getloadavg())
    _record(args, results, r)
    shutil.rmtree(out, ignore_errors=True)
    peak = max([r["main_rss"], *r["worker_rss"]]) / 1024**3
    print(f"{r['gib']:.2f} GiB, {args.precision}, {w or 'no'} Dask workers: {r['seconds']:.0f} s, "
          f"{r['mp_per_s']:.2f} MP/s, peak RSS main {r['main_rss'] / 1024**3:.2f} GiB"
          + (f", workers {', '.join(f'{b / 1024**3:.2f}' for b in r['worker_rss'])} GiB"
             if r["worker_rss"] else "") + f" (max {peak:.2f} GiB)", flush=True)
    print(f"  CPU time {r['cpu_s']:.0f} s, {r['mp_per_cpu_s']:.2f} MP per CPU second; cores/threads "
          f"main {r['main_place']}, workers {r['worker_place']}; load average "
          f"{' '.join(f'{x:.2f}' for x in r['loadavg'])}", flush=True)


def _careamics_run(args: argparse.Namespace, results: dict, scratch: Path, src: Path, shape: tuple) -> None:
    """CAREamics on the volume ``src``, with the same tile and the same context (overlap 2 x our halo)."""
    from napari_deconoising.core.model import DecoNoisingModel
    from napari_deconoising.core.predict import tile_halo

    overlap = 2 * tile_halo(DecoNoisingModel.load(scratch / "model.pt"))
    px = shape[0] * shape[1] * shape[2]
    r = run_careamics(args.peer, scratch, src, args.tile, overlap)
    r.update(gib=4 * px / 1024**3, shape=list(shape), tool="careamics predict_to_disk", overlap=overlap,
             mp_per_s=px / r["seconds"] / 1e6, mp_per_cpu_s=px / r["cpu_s"] / 1e6, loadavg=os.getloadavg())
    _record(args, results, r)
    print(f"{r['gib']:.2f} GiB, CAREamics {r['careamics']} predict_to_disk (tile {args.tile}, overlap {overlap}): "
          f"{r['seconds']:.0f} s, {r['mp_per_s']:.2f} MP/s, {r['mp_per_cpu_s']:.2f} MP per CPU second, "
          f"peak RSS {r['peak_rss_bytes'] / 1024**3:.2f} GiB; "
          f"cores {r['cores']}, {r['threads']} thread(s); outputs {r['outputs']}; "
          f"load average {' '.join(f'{x:.2f}' for x in r['loadavg'])}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
