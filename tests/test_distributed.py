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

ARGS = ["--depth", "2", "--channels", "8", "--batch-size", "6", "--micro-batches", "2",
        "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu", "--precision", "fp32"]


def test_rows_share_a_batch():
    for n in (2, 5, 8):
        parts = [DDP(r, 2).rows(n) for r in range(2)]
        assert sorted(np.concatenate(parts).tolist()) == list(range(n))
        assert abs(len(parts[0]) - len(parts[1])) <= 1


def _volume() -> np.ndarray:
    from napari_deconoising.core.sample3d import make_sample_3d

    return make_sample_3d((12, 48, 48), sigma=(1.5, 1.0, 1.0), seed=0).noisy


# The 3D case: Z is not pooled and the PSF is anisotropic, so the DDP path runs 3D convolutions and a 3D PSF.
CASES = {"2d": (lambda: make_sample((96, 96), sigma=1.5, seed=0).noisy, "YX",
                [*ARGS, "--patch-size", "32", "--psf-sigma", "1.5"]),
         "3d": (_volume, "ZYX", [*ARGS, "--3d", "--patch-size", "8", "24", "24", "--psf-sigma", "1.5", "1", "1"]),
         # N2V2's blind spots take their neighbourhood's median in every process, as in one
         "n2v2": (lambda: make_sample((96, 96), sigma=1.5, seed=0).noisy, "YX",
                  [*ARGS, "--patch-size", "32", "--psf-sigma", "1.5", "--n2v2"])}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torchrun_two_processes_make_the_single_process_update(case, tmp_path, capsys):
    make, axes, args = CASES[case]
    tifffile.imwrite(tmp_path / "n.tif", make(), metadata={"axes": axes})
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(__file__)) + "/src",
                                          os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "napari_deconoising", "train", str(tmp_path / "n.tif"), "--model",
                        str(tmp_path / "ddp.pt"), *args], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DDP: 2 processes (gloo)" in r.stderr
    assert r.stderr.count("saved model") == 1  # rank 0 alone reports and writes
    assert main(["train", str(tmp_path / "n.tif"), "--model", str(tmp_path / "one.pt"), *args]) == 0
    ddp, one = load_model(tmp_path / "ddp.pt"), load_model(tmp_path / "one.pt")
    assert ddp.config == one.config and ddp.ndim == one.ndim == len(axes)
    # Adam's first step moves every weight by about lr (1e-3) whatever the gradient's size, so a
    # near-zero gradient summed in another order can move by a few 1e-6: allow 1% of one step.
    for key, w in one.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[key], w, rtol=1e-5, atol=1e-5)
    assert ddp.history[0]["train_loss"] == pytest.approx(one.history[0]["train_loss"], rel=1e-5)
    assert ddp.history[0]["val_loss"] == pytest.approx(one.history[0]["val_loss"], rel=1e-5)


@pytest.mark.parametrize("env, msg", [
    ({"WORLD_SIZE": "2"}, "environment variable RANK is not set (WORLD_SIZE=2): start data-parallel training with "
                          "torchrun"),
    ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE is 'abc', not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "x"}, "environment variable RANK is 'x', not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 (LOCAL_RANK=0) is not a process of WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "environment variable MASTER_ADDR is not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost"}, "environment variable MASTER_PORT is not set"),
])
def test_an_environment_not_made_by_torchrun_is_a_one_line_error(env, msg, tmp_path, capsys, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tifffile.imwrite(tmp_path / "n.tif", make_sample((64, 64), sigma=1.5, seed=0).noisy)
    assert main(["train", str(tmp_path / "n.tif"), "--model", str(tmp_path / "m.pt"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconoising: error: ") and msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.pt").exists()


def test_on_cuda_the_scalars_go_by_gloo_and_the_gradients_by_nccl(monkeypatch):
    # nccl carries CUDA tensors only; the loss and validation numbers are CPU scalars
    from napari_deconoising.core import distributed

    joined = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", joined.append)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    assert distributed.from_environment("cuda") == DDP(1, 2, 1) and joined == ["cpu:gloo,cuda:nccl"]
    assert distributed.from_environment("cpu") == DDP(1, 2, 1) and joined[-1] == "gloo"


def test_ddp_blind_spots_are_the_single_process_ones():
    # one process's rows of a batch get the spots and values a single process gives those rows
    from napari_deconoising.core.masking import apply_blind_spots
    from napari_deconoising.core.n2v2 import median_blind_spots

    x = torch.rand(5, 1, 16, 16)
    for median, single in ((False, apply_blind_spots), (True, median_blind_spots)):
        whole, whole_mask = single(x, 0.05, 2, torch.Generator().manual_seed(3))
        for rank in range(2):
            rows = DDP(rank, 2).rows(5)
            masked, mask, _ = DDP(rank, 2).masked_rows(x[rows], 5, 0.05, 2, torch.Generator().manual_seed(3),
                                                       median=median)
            torch.testing.assert_close(masked, whole[rows])
            assert torch.equal(mask, whole_mask[rows])
