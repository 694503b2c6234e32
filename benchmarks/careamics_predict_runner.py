"""CAREamics' out-of-core prediction (``CAREamist.predict_to_disk``), zarr to zarr, for large_data.py.

Executed with the interpreter of the benchmark venv (``.bench-venv``, see
``common.peer_python``), never imported by the napari-deconoising package. Like
``careamics_runner.py`` it reads a JSON job from ``argv[1]`` and writes a JSON result
to ``argv[2]``. Each job runs in a fresh process, so the peak memory of the
prediction is not mixed with that of the training that made its checkpoint.

Jobs
----
``{"mode": "train", "work": DIR, "depth": d, "channels": c, "seed": s}``
    Train a Noise2Void U-Net (no batch norm, as ours) for two steps on a small random
    image, only to get a checkpoint of the right architecture (throughput does not
    depend on the weights). Result: ``{"checkpoint": PATH}``.
``{"mode": "predict_to_disk", "checkpoint": PATH, "source": IN.zarr, "out_dir": DIR,
   "axes": "SYX", "tile": t, "overlap": o, "batch": b, "threads": n}``
    Time ``predict_to_disk`` of the OME-Zarr ``source`` tile by tile into a zarr store
    in ``out_dir``. Result: wall and CPU seconds, peak RSS (``VmHWM``), the output's path and shape.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

from careamics_runner import _stub_torchvision, _vmhwm


def _train(job: dict) -> dict:
    import numpy as np
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    cfg = create_advanced_n2v_config(
        experiment_name="large_data",
        data_type="array",
        axes="SYX",
        patch_size=[64, 64],
        batch_size=2,
        num_epochs=1,
        n_val_patches=2,
        model_params={"depth": int(job["depth"]), "num_channels_init": int(job["channels"])},
        trainer_params={"max_steps": 2, "accelerator": "cpu", "devices": 1, "enable_model_summary": False},
        num_workers=0,
        seed=int(job.get("seed", 0)) + 1,  # CAREamics wants seed > 0
    )
    noisy = np.random.default_rng(0).normal(100.0, 10.0, (2, 128, 128)).astype(np.float32)
    cm = CAREamist(cfg, work_dir=job["work"], enable_progress_bar=False)
    cm.train(train_data=noisy)
    ckpts = sorted(Path(job["work"]).rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise RuntimeError(f"CAREamics wrote no checkpoint under {job['work']}")
    return {"checkpoint": str(ckpts[-1]), "batch_norm": cfg.algorithm_config.model.use_batch_norm}


def _predict_to_disk(job: dict) -> dict:
    import zarr
    from careamics import CAREamist

    out_dir = Path(job["out_dir"])
    cm = CAREamist(checkpoint_path=job["checkpoint"], work_dir=str(out_dir / "work"), enable_progress_bar=False)
    tile, overlap = int(job["tile"]), int(job["overlap"])
    c0, t0 = time.process_time(), time.perf_counter()  # process_time: CPU seconds of all threads
    cm.predict_to_disk(
        pred_data=job["source"],
        prediction_dir=out_dir,
        data_type="zarr",
        axes=job["axes"],
        tile_size=(tile, tile),
        tile_overlap=(overlap, overlap),
        batch_size=int(job.get("batch", 1)),
        num_workers=0,
        write_type="zarr",
        checkpoint=job["checkpoint"],
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    written = sorted(p for p in out_dir.glob("*.zarr"))
    shapes = {}
    for store in written:
        group = zarr.open_group(str(store), mode="r")
        shapes[store.name] = {name: list(arr.shape) for name, arr in group.arrays()}
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss_bytes": _vmhwm(), "outputs": shapes}


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    warnings.filterwarnings("ignore")
    stubbed = _stub_torchvision()
    import careamics
    import torch

    torch.set_num_threads(int(job.get("threads", os.cpu_count() or 1)))
    run = {"train": _train, "predict_to_disk": _predict_to_disk}[job["mode"]]
    result = {"careamics": careamics.__version__, "torch": torch.__version__, "torchvision_stub": stubbed,
              "threads": torch.get_num_threads(), "cores": sorted(os.sched_getaffinity(0)), **run(job)}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
