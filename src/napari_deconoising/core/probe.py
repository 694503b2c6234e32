"""Timing the actual network in each candidate precision, and its error against fp32."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .heap import retained_heap
from .precision import relative_error

__all__ = ["Probe", "autocast", "uses_channels_last", "memory_format", "measure", "training_probe",
           "prediction_probe", "time_steps"]

# int8 is no autocast: the network itself is quantised (:mod:`.quantize`).
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}


def uses_channels_last(device_type: str, ndim: int = 2, task: str = "predict") -> bool:
    """Channels-last feature maps on the CPU and CUDA, in every precision, but for 3D training on CUDA.

    On the CPU oneDNN's convolutions run channels-last natively: fp32 prediction of a
    2048^2 image took 0.58x the time of contiguous memory, and bf16 needs it to use its
    bf16 kernels at all (issue 8, docs/benchmarks.md); on CUDA tensor cores want it in 2D
    (training 1.34x contiguous's speed on an H100). 3D training on that H100 ran faster
    contiguous (fp32 1.05-1.07x, bf16 1.11-1.18x, two alternating rounds each), while on a
    CPU channels-last won in 3D too (1.15-1.20x); 3D prediction on CUDA was not measured
    that way and keeps channels-last.
    """
    if device_type == "cuda" and ndim == 3 and task == "train":
        return False
    return device_type in ("cpu", "cuda")


def memory_format(channels_last: bool, ndim: int) -> torch.memory_format:
    """The layout for ``ndim``-D feature maps (batch and channel axes not counted)."""
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype, or nothing for fp32."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


@dataclass(frozen=True)
class Probe:
    """What to measure: a network, an input batch and the task.

    Parameters
    ----------
    task : {"train", "predict"}
        ``train`` times forward plus backward; ``predict`` an inference forward pass.
    network : mapping
        The network's shape (depth, channels, PSF size, input shape...): the part of
        the cache key that says which network this is.
    build : callable
        Returns the actual network (fp32, on the CPU).
    inputs : callable
        Returns one probe batch ``(N, 1, *spatial)``, normalised like real data.
    repeats : int
        Timed runs per precision (after one untimed warm-up); the fastest counts.
    int8 : bool
        Whether int8 (:mod:`.quantize`, prediction on x86 CPUs) is a candidate.
    graphed : bool
        Training whose steps will be replayed as a CUDA graph (:mod:`.cuda_graph`) where
        the precision allows it: fp16 is then not a candidate on GPUs with bf16
        (:func:`.precision.candidates`).
    """

    task: str
    network: Mapping
    build: Callable[[], nn.Module]
    inputs: Callable[[], torch.Tensor]
    repeats: int = 3
    int8: bool = False
    graphed: bool = False

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the probe's input (2 or 3)."""
        return len(self.network["input"]) - 1


# The timed rounds' time budget, judged from the warm-up round.
_ROUNDS_SECONDS = 10.0


def _run(net: nn.Module, x: torch.Tensor, task: str, device_type: str, precision: str) -> list[torch.Tensor]:
    """One probe pass (training: forward and backward); returns the outputs.

    Training's error check compares the forward outputs only: bf16 gradients differ
    from fp32's by a few percent at initialisation (measured 3-5 %), as mixed-precision
    training's always do, and that is noise next to the step-to-step sampling noise;
    the check is there to catch a backend whose reduced precision is broken.
    """
    if task == "predict":
        with torch.inference_mode(), autocast(device_type, precision):
            return [t.float() for t in net(x)]
    net.zero_grad(set_to_none=True)
    with autocast(device_type, precision):
        denoised, phantom = net(x)
    loss = ((denoised.float() - x.float()) ** 2).mean()
    loss.backward()
    return [denoised.detach().float(), phantom.detach().float()]


def _layout(net: nn.Module, x: torch.Tensor, fmt: torch.memory_format, precision: str) -> torch.Tensor:
    """Put the (float) network and the input in ``fmt``; an int8 network keeps its own layout."""
    if precision != "int8":
        net.to(memory_format=fmt)
    return x.contiguous(memory_format=fmt)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure(probe: Probe, device: torch.device, precisions: Sequence[str],
            clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per pass and error against fp32 for each precision (``fp32`` must be among them).

    The precisions take turns, and each one's fastest run counts, so that other work on a
    shared machine slows all of them alike instead of deciding the choice (training that
    CUDA will replay as a graph is timed one precision after the other instead,
    :func:`_graphed_seconds`, to hold one graph's memory at a time). Fewer
    than ``probe.repeats`` rounds run when the warm-up round shows that they would take
    more than ``_ROUNDS_SECONDS``; past that, on the CPU, the warm-up round is the measurement.
    """
    net = probe.build().to(device)
    net.train(probe.task == "train")
    x = probe.inputs().to(device)
    layouts = {p: memory_format(uses_channels_last(device.type, x.ndim - 2, probe.task), x.ndim - 2)
               for p in precisions}
    nets = dict.fromkeys(precisions, net)
    if "int8" in precisions:  # calibrated on the probe tile itself, as a prediction calibrates on its image
        from .quantize import quantize

        nets["int8"] = quantize(net, [x])
    outputs = {}
    warm: dict[str, float] = {}
    for p in precisions:  # warm-up: oneDNN/cuDNN pick and build kernels on the first call
        xp = _layout(nets[p], x, layouts[p], p)
        _sync(device)
        t0 = clock()
        outputs[p] = _run(nets[p], xp, probe.task, device.type, p)
        _sync(device)
        warm[p] = clock() - t0
    # A large 3D tile on a 2-core CPU took 30 s a round (depth 3, 32 channels: 20.8 s fp32 + 9.3 s
    # bf16): four rounds cost the user two minutes before the prediction started. A round that slow
    # is timed well enough by its warm-up (building kernels takes a fraction of a second), so then
    # the warm-up is the measurement; otherwise as many rounds as fit the budget, at most ``repeats``.
    # Not on a GPU, whose first call may include cuDNN's algorithm search.
    total = sum(warm.values())
    if total > _ROUNDS_SECONDS and device.type == "cpu":
        return dict(warm), {p: relative_error(outputs[p], outputs["fp32"]) for p in precisions}
    repeats = max(1, min(probe.repeats, int(_ROUNDS_SECONDS // total) if total > 0 else probe.repeats))
    seconds: dict[str, float] = {}
    if probe.graphed and probe.task == "train" and device.type == "cuda":
        xg = x.contiguous(memory_format=layouts["fp32"])
        for p in (p for p in precisions if p in _GRAPHABLE):
            seconds[p] = _graphed_seconds(net, xg, p, repeats, clock)
            torch.cuda.empty_cache()  # the graph, gone with the call, gives its pool back
    times: dict[str, list[float]] = {p: [] for p in precisions if p not in seconds}
    for _ in range(repeats if times else 0):
        for p in times:
            xp = _layout(nets[p], x, layouts[p], p)
            _sync(device)
            t0 = clock()
            _run(nets[p], xp, probe.task, device.type, p)
            _sync(device)
            times[p].append(clock() - t0)
    seconds.update({p: float(np.min(v)) for p, v in times.items()})
    errors = {p: relative_error(outputs[p], outputs["fp32"]) for p in precisions}
    return seconds, errors


# Replays timed together: one graphed step at the paper's size takes about 10 ms on an H100.
_REPLAYS = 5
# Precisions whose training steps are replayed as a CUDA graph (fp16's loss scaling is not).
_GRAPHABLE = ("fp32", "bf16")


def _graphed_seconds(net: nn.Module, x: torch.Tensor, precision: str, rounds: int,
                     clock: Callable[[], float]) -> float:
    """Seconds per whole optimiser step in ``precision``, replayed as a CUDA graph as training replays it.

    Eager passes misjudge a GPU: at the paper's size they wait on Python's kernel launches,
    and bf16's extra casts launch more of them. On an H100 eager probing found bf16 0.84x
    fp32's speed while graphed training ran it 1.2x faster (docs/benchmarks.md, GPU). The
    step trains a copy of the network, so the caller's stays untouched, and one precision's
    graph (its memory pool holds a whole step's activations) is freed before the next is
    recorded, so the probe needs no more memory than training does.
    """
    from .cuda_graph import WARMUP_STEPS, GraphedStep, adam

    own = copy.deepcopy(net)

    def loss_fn(target: torch.Tensor, masked: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        with autocast(x.device.type, precision):
            denoised, _ = own(masked)
        return (((denoised.float() - target) ** 2) * m).mean()

    step = GraphedStep(loss_fn, adam([{"params": list(own.parameters())}], 1e-4, capturable=True, device=x.device))
    mask = torch.ones_like(x)
    for _ in range(WARMUP_STEPS + 1):  # the last call records the graph
        step(x, x, mask)
    times = []
    for _ in range(rounds):
        _sync(x.device)
        t0 = clock()
        for _ in range(_REPLAYS):
            step(x, x, mask)
        _sync(x.device)
        times.append((clock() - t0) / _REPLAYS)
    return float(np.min(times))


def _probe_batch(n: int, spatial: Sequence[int], seed: int = 0) -> torch.Tensor:
    """``n`` synthetic noisy micrographs of the given spatial shape, normalised to mean 0 and std 1.

    Real-looking structure matters: bf16's error depends on the signal's dynamic range.
    """
    from .sample import make_sample

    yx = tuple(int(s) for s in spatial[-2:])
    planes = int(np.prod(spatial[:-2], dtype=int)) if len(spatial) > 2 else 1
    imgs = np.stack([make_sample(yx, seed=seed + i).noisy for i in range(n * planes)])
    imgs = (imgs - imgs.mean()) / (imgs.std() or 1.0)
    return torch.from_numpy(imgs.astype(np.float32).reshape(n, 1, *spatial))


def training_probe(network_kwargs: Mapping, psf: np.ndarray | None, patch: Sequence[int], batch: int,
                   state_dict: Mapping | None = None, graphed: bool = False) -> Probe:
    """Forward and backward of the training network on one batch of ``patch``-sized patches.

    ``network_kwargs`` are :class:`~.network.DecoNoisingNet`'s keyword arguments (depth,
    channels, ndim...). The probe batch is at most 8 patches: the ratio between
    precisions is what counts, and the probe should cost seconds, not minutes.
    ``graphed``: see :class:`Probe`; then each pass is a whole graphed optimiser step on the
    full batch (on CUDA), as training runs it.
    """
    from .network import DecoNoisingNet

    # Graphed (GPU) steps cost milliseconds, and the batch decides how full the GPU is.
    n = max(1, int(batch) if graphed else min(int(batch), 8))

    def build() -> nn.Module:
        torch.manual_seed(0)
        net = DecoNoisingNet(psf, **network_kwargs)
        if state_dict is not None:
            net.load_state_dict(state_dict)
        return net

    shape = {**dict(network_kwargs), "psf": None if psf is None else list(psf.shape),
             "input": [n, *map(int, patch)], **({"graphed": True} if graphed else {})}
    return Probe("train", shape, build, lambda: _probe_batch(n, tuple(patch)), graphed=graphed)


def prediction_probe(build: Callable[[], nn.Module], network_kwargs: Mapping, psf_shape: Sequence[int] | None,
                     tile: Sequence[int], int8: bool = False) -> Probe:
    """Inference on one tile with the trained network (``build`` returns it); ``int8``: measure int8 too."""
    shape = {**dict(network_kwargs), "psf": None if psf_shape is None else list(psf_shape),
             "input": [1, *map(int, tile)]}
    return Probe("predict", shape, build, lambda: _probe_batch(1, tuple(tile)), repeats=3, int8=int8)


def time_steps(trainer: Any, steps: int = 2) -> float:
    """Seconds per training step of a :class:`.train.Trainer`, leaving it as it was.

    The first step warms up kernels and is not counted. Weights, optimiser state and both
    random streams (patches, blind spots) are restored afterwards, so that a timed
    trainer trains exactly as an untimed one.
    """
    state = copy.deepcopy(trainer.optimizer.state_dict())
    weights = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    rng_state = trainer.sampler.rng.bit_generator.state
    gen_state = trainer.gen.get_state()
    try:
        # With the allocator as training runs it, or the estimate counts page faults a run avoids.
        with retained_heap(trainer.plan.device.type == "cpu"):
            trainer._step()
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer._step()
            return (time.perf_counter() - t0) / steps
    finally:
        trainer.net.load_state_dict(weights)
        trainer.optimizer.load_state_dict(state)
        # A CUDA graph recorded while timing points at the optimiser state just replaced.
        trainer._graphed = None
        trainer.sampler.rng.bit_generator.state = rng_state
        trainer.gen.set_state(gen_state)
