"""Shared helpers of the benchmarks: machine description, metrics, the CAREamics peer."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = Path(os.environ.get("DECONOISING_BENCH_VENV", ROOT / ".bench-venv"))
RUNNER = Path(__file__).resolve().parent / "careamics_runner.py"

# The external peer, pinned. torch is pinned first and to the same CPU build as ours,
# so the comparison runs on the same kernels and pip never pulls a CUDA build.
TORCH_PIN = "torch==2.13.0"
CAREAMICS_PIN = "careamics==0.3.5"


# -- machine -----------------------------------------------------------------
def machine_info() -> dict:
    """Date, CPU model and cores, RAM, and versions, for every result file."""
    import torch

    model, cores = platform.processor() or "unknown", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else model
        flags = re.search(r"Flags:\s*(.+)", out)
        isa = [
            f
            for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
            if flags and f in flags.group(1).split()
        ]
    except OSError:
        isa = []
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        mem = float("nan")
    try:
        from napari_deconoising import __version__ as ours
    except ImportError:  # pragma: no cover
        ours = "unknown"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    # An editable install's version is the commit it was installed at, not the one that runs.
    try:
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=False) if (ROOT / ".git").exists() else None
    except OSError:  # no git
        git = None
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": cores,
        "isa": isa,
        "ram_gib": round(mem, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "napari_deconoising": ours,
        "commit": git.stdout.strip() if git is not None and git.returncode == 0 else None,
        "load_avg_1min_at_start": round(load, 2),
        "command": " ".join([Path(sys.argv[0]).name if sys.argv else "", *sys.argv[1:]]).strip(),
    }


def machine_line(info: dict) -> str:
    """One Markdown line describing where and when a result was measured."""
    return (
        f"{info['date']}; CPU {info['cpu']} "
        f"({info['cores']} cores, {', '.join(info['isa']) or 'no AVX-512'}), "
        f"{info['ram_gib']} GiB RAM, no GPU; Python {info['python']}, torch {info['torch']}, "
        f"napari-deconoising {info['napari_deconoising']}; 1-min load average at start "
        f"{info['load_avg_1min_at_start']} (the CPU is shared with other work)"
    )


# -- metrics -------------------------------------------------------------------
def write_summary(out: str | Path, name: str, summary: dict) -> Path:
    """Write a benchmark's JSON summary as ``out/name`` (the folder is made if needed)."""
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path


def psnr(truth: np.ndarray, est: np.ndarray) -> float:
    """PSNR in dB with the data range of the ground truth (as in the paper)."""
    from napari_deconoising.core import psnr as _psnr

    return float(_psnr(truth, est))


def checkerboard_db(truth: np.ndarray, est: np.ndarray) -> float:
    """Energy of the error's 2-pixel checkerboard component, in dB of the truth's variance.

    The error ``est - truth`` is filtered with the 2x2 kernel [[1, -1], [-1, 1]] / 4 (it
    passes the pattern that alternates along both axes, the blind-spot networks'
    artefact, and removes smooth errors); lower is better. Residual noise at that
    frequency counts too, so compare methods on the same data only.
    """
    e = np.asarray(est, np.float64) - np.asarray(truth, np.float64)
    c = (e[..., :-1, :-1] - e[..., 1:, :-1] - e[..., :-1, 1:] + e[..., 1:, 1:]) / 4
    return float(10 * np.log10(np.mean(c * c) / np.var(np.asarray(truth, np.float64))))


def ssim(truth: np.ndarray, est: np.ndarray) -> float:
    """SSIM with the data range of the ground truth.

    skimage.metrics.structural_similarity when scikit-image is installed, else the
    same computation (7x7 uniform window, sample covariance, K1=0.01, K2=0.03,
    border of 3 px cropped) with scipy.
    """
    truth = np.asarray(truth, np.float64)
    est = np.asarray(est, np.float64)
    rng = float(truth.max() - truth.min())
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return _ssim_scipy(truth, est, rng)
    return float(structural_similarity(truth, est, data_range=rng))


def _ssim_scipy(x: np.ndarray, y: np.ndarray, rng: float, win: int = 7) -> float:
    from scipy.ndimage import uniform_filter

    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    n = win**2
    cov_norm = n / (n - 1)
    ux, uy = uniform_filter(x, win), uniform_filter(y, win)
    uxx, uyy, uxy = (
        uniform_filter(x * x, win),
        uniform_filter(y * y, win),
        uniform_filter(x * y, win),
    )
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return float(s[p:-p, p:-p].mean())


# -- the CAREamics peer ----------------------------------------------------------
def peer_python(install: bool = True, log=print) -> tuple[Path | None, str]:
    """The interpreter of the benchmark venv with CAREamics, installing it if asked.

    Returns ``(python, note)``; ``python`` is None (and ``note`` says why) when
    CAREamics is not available.
    """
    py = BENCH_VENV / "bin" / "python"
    check = [str(py), "-c", "import importlib.metadata as m; print(m.version('careamics'))"]
    if py.exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == CAREAMICS_PIN.split("==")[1]:
            return py, f"CAREamics {r.stdout.strip()} in {BENCH_VENV}"
    if not install:
        return None, "CAREamics not installed (run without --no-install to install it)"
    log(f"installing {CAREAMICS_PIN} into {BENCH_VENV} (once; about 1.5 GB, a few minutes) ...")
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, TORCH_PIN], check=True)
        # CAREamics 0.3.5 caps torchvision<=0.26, whose wheels pin torch 2.11 (CUDA
        # build from PyPI). A constraints file holds torch at our CPU build and the
        # dependencies are installed without that one torchvision cap; torchvision
        # is left out (Noise2Void does not use it, see careamics_runner.py).
        with tempfile.TemporaryDirectory() as tmp:
            cons = Path(tmp) / "constraints.txt"
            cons.write_text(TORCH_PIN + "\n")
            subprocess.run([*pip, "--no-deps", CAREAMICS_PIN], check=True)
            deps = _careamics_deps(py)
            subprocess.run([*pip, "-c", str(cons), *deps], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        return None, f"CAREamics could not be installed: {e}"
    r = subprocess.run(check, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"CAREamics installed but does not import: {r.stderr.strip()[-300:]}"
    return py, f"CAREamics {r.stdout.strip()} in {BENCH_VENV}"


def _careamics_deps(py: Path) -> list[str]:
    """CAREamics' declared requirements, without torch and torchvision."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([r for r in (m.requires('careamics') or []) if 'extra ==' not in r]))"
    )
    reqs = json.loads(
        subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout
    )
    keep = []
    for r in reqs:
        name = re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower()
        if name in ("torch", "torchvision"):
            continue
        keep.append(r.split(";")[0].strip())
    return keep


def run_peer(py: Path, job: dict, timeout: float = 3600, runner: Path = RUNNER,
             extra_env: dict | None = None) -> dict:
    """Run one CAREamics job (a ``runner`` script) in the benchmark venv; return its result dict.

    ``extra_env`` is added to the environment, from which our own ``PYTHONPATH`` is removed
    (e.g. a ``PYTHONPATH`` of wheels unpacked for CAREamics on a machine without its venv).
    """
    with tempfile.TemporaryDirectory() as tmp:
        jf, rf = Path(tmp) / "job.json", Path(tmp) / "result.json"
        jf.write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(extra_env or {})
        r = subprocess.run(
            [str(py), str(runner), str(jf), str(rf)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=tmp,
        )
        if r.returncode != 0 or not rf.exists():
            raise RuntimeError(f"CAREamics job failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
        return json.loads(rf.read_text())


def start_peer_run(script: str, argv: list[str] | None, emulate_no_bf16: bool) -> tuple[dict, Path]:
    """The start of a run against CAREamics: machine facts and CAREamics' Python.

    With ``emulate_no_bf16`` the script runs again in a child under ``speed_emulate``'s
    environment (which must be set before torch loads) and this process exits with it. A
    fresh precision cache makes ``auto`` decide in this run. Exits when CAREamics' venv is
    missing.
    """
    import speed_emulate  # a sibling module, loaded only by the scripts that compare speeds

    if emulate_no_bf16 and not speed_emulate.active():
        sys.exit(speed_emulate.rerun(script, sys.argv[1:] if argv is None else list(argv)))
    os.environ["NAPARI_DECONOISING_CACHE"] = tempfile.mkdtemp()
    info = machine_info()
    print(machine_line(info), "; " + speed_emulate.describe() if speed_emulate.active() else "", flush=True)
    py, note = peer_python(install=False)
    if py is None:
        sys.exit(note)
    return info, py


def add_val_voxels_arg(ap) -> None:
    """``--val-voxels V``, for :func:`validation_voxels`."""
    ap.add_argument("--val-voxels", type=int, default=None, metavar="V",
                    help="validation patches for V voxels (at least a batch, at most 64); 0: one batch, "
                         "as before stop 12 (default: the engine's 2**20)")


@contextlib.contextmanager
def validation_voxels(voxels: int | None):
    """Trainers built inside validate on enough patches for ``voxels`` voxels (at least a batch,
    at most 64): ``patches.validation_patch_count(..., min_voxels=voxels)``; 0 is one batch (the
    engine before stop 12), None leaves the engine's own rule, which is back on leaving.
    """
    # The module, not the train() function the package exports under the same name.
    train_module = importlib.import_module("napari_deconoising.core.train")
    patches = importlib.import_module("napari_deconoising.core.patches")
    if voxels is not None:
        train_module.validation_patch_count = functools.partial(patches.validation_patch_count, min_voxels=voxels)
    try:
        yield
    finally:
        train_module.validation_patch_count = patches.validation_patch_count
