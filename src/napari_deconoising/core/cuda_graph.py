"""A training step replayed as one CUDA graph.

At the paper's size a training step launches several hundred small kernels (forward,
backward and Adam), and a fast GPU finishes each sooner than Python can launch the next:
the GPU waits on the host (issue 8's H200 measurement: 10-13 % of its TF32 rate). A CUDA
graph records the whole step once and replays it with one launch. The blind-spot masking
stays outside the graph (it draws from the trainer's random stream), so a graphed run
sees exactly the patches and blind spots of an eager one.

What a graph needs, and :func:`graph_blocker` checks: a CUDA device, one micro-batch, no
gradient scaler (fp16's loss scaling decides on the host), no DistributedDataParallel
(its reducer launches its own work), and an optimiser built ``capturable`` with tensor
learning rates (:func:`adam`), so that a scheduler's later change of the rate reaches
the recorded kernels. A capture that fails anyway (an operation some GPU, driver or
PyTorch version cannot record) leaves training to eager steps and says why
(:attr:`GraphedStep.failure`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

__all__ = ["WARMUP_STEPS", "graph_blocker", "describe_steps", "adam", "GraphedStep"]

# Eager steps before the capture: cuDNN's benchmark mode times its algorithms, and Adam
# creates its state, on these; neither may happen while a graph is recorded.
WARMUP_STEPS = 3


def graph_blocker(device: torch.device, *, enabled: bool, micro_batches: int, grad_scaler: bool,
                  distributed: bool) -> str | None:
    """Why training steps cannot be replayed as a CUDA graph here, or None when they can."""
    if not enabled:
        return "off in the configuration"
    if device.type != "cuda":
        return f"no CUDA device ({device.type})"
    if micro_batches != 1:
        return "micro-batches (gradients are accumulated over several passes)"
    if grad_scaler:
        return "fp16 loss scaling"
    if distributed:
        return "distributed training"
    return None


def describe_steps(device: torch.device, blocker: str | None) -> str | None:
    """For users: how training steps run on a CUDA device (None elsewhere, where there is no choice)."""
    if device.type != "cuda":
        return None
    if blocker is None:
        return f"training steps replayed as a CUDA graph after {WARMUP_STEPS} warm-up steps"
    return f"training steps run without a CUDA graph: {blocker}"


def adam(groups: list[dict], lr: float, *, capturable: bool, device: torch.device) -> torch.optim.Adam:
    """Adam over parameter ``groups``; ``capturable`` for a CUDA graph.

    A capturable optimiser keeps its step count and each group's learning rate as tensors
    on the device: a graph records their addresses, not their values, so a learning-rate
    schedule (which fills the tensor in place) still takes effect in every replay.
    """
    groups = [dict(g, params=[g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"]))
              for g in groups]
    if not capturable:
        if device.type == "cpu":
            # The fused kernel updates every parameter in one pass: 0.27 against 0.62 ms a step
            # at the demo size (issue 8, benchmarks/speed_train_ideas.py). PyTorch before 2.4
            # has it on GPUs only and refuses it, after writing fused=True into the groups it
            # was given: hence copies.
            with contextlib.suppress(RuntimeError):
                return torch.optim.Adam([dict(g) for g in groups], lr=lr, fused=True)
        return torch.optim.Adam(groups, lr=lr)
    groups = [dict(g, lr=torch.tensor(float(g.get("lr", lr)), device=device)) for g in groups]
    return torch.optim.Adam(groups, lr=lr, capturable=True, foreach=True)


class GraphedStep:
    """One optimiser step (forward, loss, backward, update), recorded once and replayed.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(target, masked, mask) -> loss`` on the device: the forward pass and the
        loss, without host synchronisation (no ``.item()``, no boolean indexing).
    optimizer : torch.optim.Optimizer
        Built by :func:`adam` with ``capturable=True``; nothing else may replace its state or
        the parameters' ``.grad`` tensors once the graph is recorded.
    warmup : int
        Eager steps (on a side stream) before the capture.

    Calling it runs one step and returns the loss tensor (valid until the next call).
    The first ``warmup`` calls run eagerly; the next records the graph and replays it.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, warmup: int = WARMUP_STEPS) -> None:
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        #: Why the capture failed (then every step runs eagerly), or None.
        self.failure: str | None = None
        self._inputs: tuple[torch.Tensor, ...] = ()
        self._loss: torch.Tensor | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def _eager(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(*inputs)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def __call__(self, target: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Streams and graphs belong to the current device: make it the data's (cuda:1, say).
        with torch.cuda.device(target.device):
            return self._call((target, masked, mask))

    def _call(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.calls += 1
        if self.failure is not None:
            return self._eager(*inputs)
        if self.graph is None and self.calls <= self.warmup:
            # A side stream, as PyTorch's whole-network capture recipe does: the capture
            # below runs on one too, and the warm-up must see the same stream setup.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self._eager(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        if self.graph is None:
            try:
                self._capture(inputs)
            except RuntimeError as e:
                # An operation this GPU, driver or PyTorch cannot record: train on without
                # the graph. Nothing of the step ran (a capture only records), and the
                # eager step sets the gradients afresh.
                self.failure = f"the capture failed: {str(e).strip().splitlines()[0][:200]}"
                self._inputs, self._loss = (), None
                return self._eager(*inputs)
        for static, new in zip(self._inputs, inputs):
            static.copy_(new)
        self.graph.replay()
        return self._loss

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> None:
        self._inputs = tuple(t.clone() for t in inputs)
        # Backward inside the graph must create the gradients, not add to eager ones.
        self.optimizer.zero_grad(set_to_none=True)
        cache = torch.is_autocast_cache_enabled()
        torch.set_autocast_cache_enabled(False)  # autocast's weight cache cannot live in a graph
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                loss = self.loss_fn(*self._inputs)
                loss.backward()
                self.optimizer.step()
        finally:
            torch.set_autocast_cache_enabled(cache)
        self._loss = loss.detach()
        self.graph = graph
