"""torchrun data-parallel training: 2 CPU processes (gloo) make the same first update as one process."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_deconoising.cli import main
from napari_deconoising.core import load_model, make_sample
from napari_deconoising.core.distributed import DDP

ARGS = ["--depth", "2", "--channels", "8", "--patch-size", "32", "--batch-size", "6", "--micro-batches", "2",
        "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu", "--precision", "fp32", "--psf-sigma", "1.5"]


def test_rows_share_a_batch():
    for n in (2, 5, 8):
        parts = [DDP(r, 2).rows(n) for r in range(2)]
        assert sorted(np.concatenate(parts).tolist()) == list(range(n))
        assert abs(len(parts[0]) - len(parts[1])) <= 1


def test_torchrun_two_processes_make_the_single_process_update(tmp_path, capsys):
    s = make_sample((96, 96), sigma=1.5, seed=0)
    tifffile.imwrite(tmp_path / "n.tif", s.noisy)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(__file__)) + "/src",
                                          os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "napari_deconoising", "train", str(tmp_path / "n.tif"), "--model",
                        str(tmp_path / "ddp.pt"), *ARGS], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DDP: 2 processes (gloo)" in r.stderr
    assert r.stderr.count("saved model") == 1  # rank 0 alone reports and writes
    assert main(["train", str(tmp_path / "n.tif"), "--model", str(tmp_path / "one.pt"), *ARGS]) == 0
    ddp, one = load_model(tmp_path / "ddp.pt"), load_model(tmp_path / "one.pt")
    initial = load_model(tmp_path / "one.pt").config  # same architecture
    assert ddp.config == initial
    for key, w in one.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[key], w, rtol=1e-5, atol=1e-6)
    assert ddp.history[0]["train_loss"] == pytest.approx(one.history[0]["train_loss"], rel=1e-5)
    assert ddp.history[0]["val_loss"] == pytest.approx(one.history[0]["val_loss"], rel=1e-5)
