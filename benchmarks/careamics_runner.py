"""Run CAREamics' Noise2Void inside its own virtual environment (the external peer).

This file is executed by ``benchmarks/_peer.py`` with the interpreter of the
benchmark venv (``.bench-venv``), never imported by the napari-deconoising package.
It reads a JSON job from ``argv[1]`` and writes a JSON result to ``argv[2]``.

Jobs
----
``{"mode": "quality", "noisy": "x.npy", "out": "y.npy", "steps": N, "depth": d,
   "channels": c, "patch": p, "batch": b, "seed": s, "precision": "fp32"}``
    Train N optimiser steps on ``noisy`` and write the prediction of the whole image.
``{"mode": "speed", "noisy": "x.npy", "steps": N, "warmup": w, "predict": "big.npy", ...}``
    Time N training steps (after w warm-up steps) and, optionally, the prediction of
    ``predict``.
``{"mode": "flops", "noisy": "x.npy", "steps": 1, "depth": d, "channels": c, "patch": p, "batch": b}``
    Count the operations of one forward and backward of CAREamics' network (no training).

3D (``"ndim": 3``): ``noisy`` is ZYX (or SZYX), ``patch`` is ``[z, y, x]`` and
``tile`` (optional) ``[z, y, x]`` with ``tile_overlap``. ``"checkpoints": {"last":
"a.npy", "best": "b.npy"}`` (quality mode) writes one prediction per checkpoint;
"best" is the lowest validation loss, as our engine returns.

Note on torchvision: CAREamics imports torchvision only for its LVAE models (and
torchmetrics for image metrics we do not use). PyPI's torchvision wheel for
torch 2.13 is a CUDA build that cannot load into the CPU build of torch, so, when
the real torchvision is not importable, an import stub is put in place *after*
torchmetrics and Lightning are imported. Noise2Void never calls into it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import time
import types
import warnings


def _stub_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:  # noqa: BLE001 - a broken wheel raises RuntimeError, not ImportError
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
    # torchmetrics and lightning decide at import time whether torchvision exists.
    import lightning.pytorch  # noqa: F401
    import torchmetrics  # noqa: F401

    class _Stub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            m = types.ModuleType(spec.name)
            m.__path__ = []
            m.__version__ = "0+stub"

            def missing(attr, _n=spec.name):
                if attr.startswith("__"):
                    raise AttributeError(attr)

                def f(*a, **k):
                    raise RuntimeError(f"{_n}.{attr} is not available (torchvision stub)")

                return f

            m.__getattr__ = missing
            return m

        def exec_module(self, module):
            pass

    sys.meta_path.append(_Stub())
    return True


def _vmhwm() -> int:
    """Peak resident memory (VmHWM; it starts anew at exec, unlike ru_maxrss), 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _checkpoint(cm, name: str):
    """"last", or the path of the checkpoint with the lowest validation loss for "best".

    CAREamics refuses ``checkpoint="best"`` for Noise2Void (its validation loss is a
    masked loss on noisy data), but accepts the path, which its ModelCheckpoint keeps.
    """
    if name != "best":
        return name
    from lightning.pytorch.callbacks import ModelCheckpoint

    cb = next(c for c in cm.trainer.callbacks if isinstance(c, ModelCheckpoint))
    return cb.best_model_path or "last"  # no validation yet (a run shorter than an epoch)


def _count_flops(cfg, careamist, batch: int, patch_size: list[int]) -> dict:
    """Floating-point operations of a forward and backward of CAREamics' own network.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on one batch of random patches,
    as ``benchmarks/roofline.py`` counts ours; the loss and the optimiser are left out (a
    few element-wise operations against the convolutions' billions).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as work:
        net = careamist(cfg, work_dir=work, enable_progress_bar=False).model.model
    net.train()
    x = torch.randn(batch, 1, *patch_size)
    with FlopCounterMode(display=False) as counter:
        net(x).square().mean().backward()
    return {"gflop": counter.get_total_flops() / 1e9,
            "parameters": sum(p.numel() for p in net.parameters()),
            "batch_norm": bool(cfg.algorithm_config.model.use_batch_norm)}


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    warnings.filterwarnings("ignore")
    stubbed = _stub_torchvision()
    import careamics
    import numpy as np
    import torch
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config
    from lightning.pytorch import Callback

    torch.set_num_threads(int(job.get("threads", os.cpu_count() or 1)))
    noisy = np.load(job["noisy"]).astype(np.float32)
    steps = int(job["steps"])
    ndim = int(job.get("ndim", 2))
    axes = ("YX" if noisy.ndim == 2 else "SYX") if ndim == 2 else ("ZYX" if noisy.ndim == 3 else "SZYX")
    patch = job["patch"]
    patch_size = [int(v) for v in patch] if isinstance(patch, list) else [int(patch)] * ndim
    warmup = int(job.get("warmup", 0))

    class Timer(Callback):
        """Start and end of every training batch, and its size.

        ``end - start`` covers what Lightning does per step (N2V masking of the batch,
        forward, loss, backward, optimiser); patch extraction happens before it and is
        not counted (it is cheap). Partial last batches of an epoch are left out.
        """

        def __init__(self):
            self.t, self.steps = [], []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            x = getattr(x, "data", x)
            self._n = int(x.shape[0]) if hasattr(x, "shape") else -1
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, *a, **k):
            if torch.cuda.is_available() and accelerator == "gpu":
                torch.cuda.synchronize()  # time the GPU's work, not the launch queue
            now = time.perf_counter()
            self.t.append(now)
            self.steps.append((now - self._t0, self._n))

    timer = Timer()
    precision = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[job.get("precision", "fp32")]
    accelerator = job.get("accelerator", "cpu")
    n_val = int(job.get("n_val_patches", 8))
    cfg = create_advanced_n2v_config(
        experiment_name="bench",
        data_type="array",
        axes=axes,
        patch_size=patch_size,
        batch_size=int(job["batch"]),
        num_epochs=10**6,
        n_val_patches=n_val,
        model_params={"depth": int(job["depth"]), "num_channels_init": int(job["channels"])},
        trainer_params={
            "max_steps": steps + warmup,
            "precision": precision,
            "accelerator": accelerator,
            "devices": 1,
            "enable_model_summary": False,
        },
        num_workers=0,
        # A small volume has few grid cells (32x160x160 in 16x64x64: 8); drop_last keeps
        # every step at the full batch, as ours.
        **({"train_dataloader_params": {"shuffle": True, "drop_last": True}} if job.get("drop_last") else {}),
        **({"optimizer_params": {"lr": float(job["lr"])}} if job.get("lr") else {}),
        # CAREamics' N2V preset keeps a checkpoint every 10 epochs and no "best"; ours
        # returns the weights with the lowest validation loss, so keep that one too.
        **({"checkpoint_params": {"monitor": "val_loss", "mode": "min", "save_top_k": 1, "save_last": True}}
           if "best" in (job.get("checkpoints") or {}) else {}),
        # None is CAREamics' default: X/Y flips and 90-degree rotations in YX.
        augmentations=job.get("augmentations"),
        **(
            {"masked_pixel_percentage": float(job["masked_pixel_percentage"])}
            if job.get("masked_pixel_percentage")
            else {}
        ),
        seed=int(job.get("seed", 0)) + 1,  # CAREamics wants seed > 0
    )
    result = {
        "careamics": careamics.__version__,
        "torch": torch.__version__,
        "torchvision_stub": stubbed,
        "config": {
            "depth": int(job["depth"]),
            "channels": int(job["channels"]),
            "patch": patch_size,
            "axes": axes,
            "augmentations": [a.name for a in cfg.data_config.augmentations],
            "batch": int(job["batch"]),
            "steps": steps,
            "precision": precision,
            "batch_norm": cfg.algorithm_config.model.use_batch_norm,
            "masked_pixel_percentage": cfg.algorithm_config.n2v_config.masked_pixel_percentage,
            "roi_size": cfg.algorithm_config.n2v_config.roi_size,
        },
    }
    if job["mode"] == "flops":
        result.update(_count_flops(cfg, CAREamist, int(job["batch"]), patch_size))
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
        return
    with tempfile.TemporaryDirectory() as work:
        cm = CAREamist(cfg, work_dir=work, callbacks=[timer], enable_progress_bar=False)
        t0 = time.perf_counter()
        cm.train(train_data=noisy)
        result["train_seconds"] = time.perf_counter() - t0
        t = timer.t
        result["steps_done"] = len(t)
        full = [d for d, n in timer.steps[warmup:] if n in (int(job["batch"]), -1)]
        if full:
            result["step_seconds"] = float(np.median(full))
            result["step_seconds_mean"] = float(np.mean(full))
            result["step_seconds_min"] = float(np.min(full))
            result["step_durations"] = [float(v) for v in full]
            result["batch_sizes"] = [n for _, n in timer.steps]
        if len(t) > warmup + 1:
            result["step_intervals"] = [float(v) for v in np.diff(t[warmup:])]
        tile = job.get("tile")
        kw = {}
        if tile:
            kw = {"tile_size": tuple(tile) if isinstance(tile, list) else (tile,) * ndim,
                  "tile_overlap": tuple(job.get("tile_overlap", [48] * ndim))}
        if job["mode"] == "quality":
            for name, path in (job.get("checkpoints") or {"last": job["out"]}).items():
                ckpt = _checkpoint(cm, name)
                t0 = time.perf_counter()
                pred, _ = cm.predict(noisy, axes=axes, checkpoint=ckpt, **kw)
                result[f"predict_seconds_{name}"] = time.perf_counter() - t0
                result[f"checkpoint_{name}"] = os.path.basename(str(ckpt))
                np.save(path, np.asarray(pred[0], np.float32).reshape(noisy.shape))
            result["predict_seconds"] = result[f"predict_seconds_{name}"]
        if job.get("predict"):
            result["vmhwm_before_predict_bytes"] = _vmhwm()
            big = np.load(job["predict"]).astype(np.float32)
            warm = kw["tile_size"] if kw else (256, 256) if ndim == 2 else (16, 128, 128)
            crop = tuple(slice(0, t) for t in warm)
            cm.predict(big[crop], axes=axes[-ndim:], batch_size=1, **kw)  # warm-up
            t0 = time.perf_counter()
            cm.predict(big, axes=axes[-ndim:], batch_size=1, **kw)
            result["predict_big_seconds"] = time.perf_counter() - t0
            result["predict_big_shape"] = list(big.shape)
    import resource

    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["vmhwm_bytes"] = _vmhwm()
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
