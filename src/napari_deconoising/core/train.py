"""Self-supervised training as a generator of progress events."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from .config import TrainConfig
from .cuda_graph import GraphedStep, adam, graph_blocker
from .data import as_image_set, check_values, normalisation_stats
from .device import execution_plan, release_memory, resolve_device
from .distributed import DDP, ddp_step
from .events import TrainEvent
from .heap import retained_heap
from .loss import deconoising_loss, finite_loss
from .masking import apply_blind_spots
from .model import DecoNoisingModel, check_resume_ndim
from .n2v2 import median_blind_spots
from .network import DecoNoisingNet
from .patches import PatchSampler, fit_patch_to_data, split_regions, validation_patch_count
from .probe import time_steps, training_probe
from .psf import training_psf
from .weight_average import WeightAverage

__all__ = ["TrainEvent", "Trainer", "train"]


class Trainer:
    """Prepare data and network, then train with :meth:`run`.

    Parameters
    ----------
    images : array or list of arrays
        Noisy images (see :func:`~napari_deconoising.core.data.as_image_set`). Never
        modified.
    config : TrainConfig
        Hyper-parameters; the paper's by default.
    axes : str, optional
        Axis letters of ``images``.
    psf : numpy.ndarray, optional
        A measured PSF (used when ``config.psf == "measured"``).
    resume : DecoNoisingModel, optional
        Continue from this model: its weights, normalisation, PSF and history are kept (and
        with its PSF its ``psf_estimate``, how its sigma was chosen), and its architecture
        overrides ``config``'s depth, channels, PSF and ``pool_z`` fields.
        ``config.ndim`` must match the model's.
    ddp : DDP, optional
        This process' place in a ``torchrun`` run (see :mod:`.distributed`).

    Attributes
    ----------
    warnings : list of str
        Adjustments made to fit the data (e.g. a smaller patch); show them to the user.

    Examples
    --------
    >>> trainer = Trainer(noisy, TrainConfig(epochs=5))        # doctest: +SKIP
    >>> for event in trainer.run():                           # doctest: +SKIP
    ...     print(event.epoch, event.train_loss)
    >>> model = trainer.model                                 # doctest: +SKIP
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], config: TrainConfig | None = None, *,
                 axes: str | None = None, psf: np.ndarray | None = None,
                 resume: DecoNoisingModel | None = None, ddp: DDP | None = None) -> None:
        config = config or TrainConfig()
        self.ddp = ddp
        self.warnings: list[str] = []
        if resume is not None:
            rc = resume.config
            check_resume_ndim(resume, config.ndim)
            config = config.replace(depth=rc.depth, channels=rc.channels, psf=rc.psf,
                                    psf_sigma=rc.psf_sigma, ndim=rc.ndim, pool_z=rc.pool_z, n2v2=rc.n2v2,
                                    wiener_eps=rc.phantom_wiener_eps, decoder=rc.unet_decoder,
                                    optics=rc.optics)
        # Adjustments are collected, not warned: this may run in a GUI worker thread,
        # where the global warnings machinery is not thread-safe. Callers show them.
        image_set = as_image_set(images, axes, ndim=config.ndim)
        check_values(image_set.slices)
        self.slices = image_set.slices
        self.patch_shape, config = fit_patch_to_data(self.slices, config, warn=self.warnings.append)
        # The model file keeps the decisions, not "auto": a later default must not change them.
        config = config.replace(wiener_eps=config.phantom_wiener_eps, decoder=config.unet_decoder)
        self.config = config
        train_regions, val_regions = split_regions(self.slices, config.val_fraction, self.patch_shape,
                                                   warn=self.warnings.append)

        if resume is not None:
            self.mean, self.std = resume.mean, resume.std
            self.psf = resume.psf
            # the PSF is the resumed model's, so how its sigma was chosen still holds
            self._psf_estimate = copy.deepcopy(resume.psf_estimate)
        else:
            self._psf_estimate = None
            self.mean, self.std = normalisation_stats(self.slices)
            self.psf = training_psf(config, psf)

        def blocker(device: torch.device, grad_scaler: bool) -> str | None:
            return graph_blocker(device, enabled=config.cuda_graph, micro_batches=config.micro_batches,
                                 grad_scaler=grad_scaler, distributed=ddp is not None)

        graphable = blocker(resolve_device(config.device), False) is None
        self.plan = execution_plan(config.device, config.precision, probe=training_probe(
            dict(depth=config.depth, channels=config.channels, ndim=config.ndim, pool_z=config.pools_z(),
                 wiener_eps=config.wiener_eps, n2v2=config.n2v2, decoder=config.unet_decoder),
            self.psf, self.patch_shape, config.batch_size // config.micro_batches,
            None if resume is None else resume.state_dict, graphed=graphable))
        torch.manual_seed(config.seed)
        self.net = DecoNoisingNet(self.psf, depth=config.depth, channels=config.channels, ndim=config.ndim,
                                  pool_z=config.pools_z(), n2v2=config.n2v2,
                                  wiener_eps=config.wiener_eps, decoder=config.unet_decoder)
        self._mask = median_blind_spots if config.n2v2 else apply_blind_spots
        if resume is not None:
            self.net.load_state_dict(resume.state_dict)
        self.net.to(self.plan.device)
        if self.plan.channels_last:
            self.net.to(memory_format=self.plan.memory_format(config.ndim))
        self._train_net = self.net if ddp is None else ddp.wrap(self.net, self.plan.device)
        #: Why steps are not replayed as a CUDA graph (None: they are, after a warm-up).
        self.graph_blocker = blocker(self.plan.device, self.plan.use_grad_scaler)
        self._graphed: GraphedStep | None = None
        self.optimizer = self._adam(self.net.param_groups(config.learning_rate, config.head_learning_rate_scale))
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience)
        self.scaler = torch.amp.GradScaler(self.plan.device.type) if self.plan.use_grad_scaler else None

        rng = np.random.default_rng(config.seed)
        self.sampler = PatchSampler(self.slices, train_regions, self.patch_shape, self.mean, self.std, rng)
        self.gen = torch.Generator(device=self.plan.device).manual_seed(config.seed)
        self._make_validation_set(val_regions)

        self.history: list[dict] = list(resume.history) if resume is not None else []
        self._epoch_offset = len(self.history)
        self.best_val = math.inf
        self._best_state: dict[str, torch.Tensor] | None = (
            {k: v.clone() for k, v in resume.state_dict.items()} if resume is not None else None)
        self._stop = threading.Event()
        self._zero_level = self.mean / self.std
        self._average = WeightAverage(config.weight_average)
        if resume is not None:
            # The earlier run's best was scored on its own validation patches, often of other images
            # (noisier data scores worse): against it no new epoch would count as better, and the
            # resumed weights would come back unchanged. Score them on this run's patches instead.
            self.best_val = self.validation_loss()

    # -- setup --------------------------------------------------------------------
    def _adam(self, groups: list[dict]) -> torch.optim.Adam:
        """Adam over ``groups``, capturable when steps will be replayed as a CUDA graph."""
        return adam(groups, self.config.learning_rate, capturable=self.graph_blocker is None,
                    device=self.plan.device)

    @property
    def patch(self) -> int | tuple[int, ...]:
        """The patch size in use: one int for square (cubic) patches, else one per axis."""
        p = self.patch_shape
        return p[0] if len(set(p)) == 1 else p

    def _make_validation_set(self, regions) -> None:
        """A fixed set of masked validation patches, so epochs are comparable."""
        rng = np.random.default_rng(self.config.seed + 1)
        sampler = PatchSampler(self.slices, regions, self.patch_shape, self.mean, self.std, rng, augment=False)
        n = validation_patch_count(self.patch_shape, self.config.batch_size)
        x = torch.from_numpy(sampler.sample(n)).to(self.plan.device)
        gen = torch.Generator(device=self.plan.device).manual_seed(self.config.seed + 1)
        self.val_x, self.val_mask = self._mask(x, self.config.mask_fraction, self.config.mask_radius, gen)
        self.val_target = x

    # -- control --------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to finish after the current step (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def has_model(self) -> bool:
        """Whether :attr:`model` is a trained model: an epoch was validated, or training resumed one."""
        return self._best_state is not None

    @property
    def model(self) -> DecoNoisingModel:
        """The best model so far (by validation loss); before any epoch (see :attr:`has_model`), the current weights."""
        state = self._best_state
        if state is None:
            state = {k: v.detach().cpu().clone() for k, v in self._eval_net.state_dict().items()}
        return DecoNoisingModel(config=self.config, state_dict=state, mean=self.mean, std=self.std,
                                psf=None if self.psf is None else self.psf.copy(),
                                history=copy.deepcopy(self.history), psf_estimate=copy.deepcopy(self._psf_estimate))

    # -- the work -----------------------------------------------------------------
    def _forward_loss(self, x: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor, train: bool = True):
        # train=False: validation, on the network that is kept (the weight average when on)
        if self.plan.channels_last:
            masked = masked.contiguous(memory_format=self.plan.memory_format(self.config.ndim))
        with self.plan.autocast():
            denoised, phantom = (self._train_net if train else self._eval_net)(masked)
        return deconoising_loss(denoised, phantom, x, mask, self.config.positivity, self._zero_level)

    def _step(self) -> float:
        if self.ddp is not None:
            return ddp_step(self)
        cfg = self.config
        self.net.train()
        patches = self.plan.to_device(self.sampler.sample(cfg.batch_size))
        if self.graph_blocker is None:
            if self._graphed is None:
                self._graphed = GraphedStep(lambda x, m, k: self._forward_loss(x, m, k)[0], self.optimizer)
            masked, mask = self._mask(patches, cfg.mask_fraction, cfg.mask_radius, self.gen)
            loss = float(self._graphed(patches, masked, mask))
            if self._graphed.failure is not None:  # later steps take the eager path below
                self.graph_blocker = self._graphed.failure
            return finite_loss(loss)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for chunk in torch.tensor_split(patches, cfg.micro_batches):
            masked, mask = self._mask(chunk, cfg.mask_fraction, cfg.mask_radius, self.gen)
            loss, _, _ = self._forward_loss(chunk, masked, mask)
            loss = loss * (chunk.shape[0] / cfg.batch_size)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            total += float(loss.detach())
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return finite_loss(total)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Loss on the fixed validation patches with the current (or averaged) weights."""
        self._eval_net.eval()
        losses = []
        bs = max(1, self.config.batch_size // self.config.micro_batches)
        for i in range(0, self.val_x.shape[0], bs):
            loss, _, _ = self._forward_loss(self.val_target[i:i + bs], self.val_x[i:i + bs], self.val_mask[i:i + bs],
                                             train=False)
            losses.append(float(loss) * min(bs, self.val_x.shape[0] - i))
        return sum(losses) / self.val_x.shape[0]

    def estimate_step_seconds(self, steps: int = 2) -> float:
        """Time a training step (forward and backward, weights left unchanged); see :func:`.probe.time_steps`."""
        return time_steps(self, steps)

    def run(self) -> Generator[TrainEvent, None, DecoNoisingModel]:
        """Train, yielding a :class:`TrainEvent` after every step and every epoch.

        Stops early (cleanly, after the current step) when :meth:`stop` is called or
        the generator is closed. Returns the best model by validation loss.
        """
        # On the CPU, the memory one step frees serves the next (core/heap.py).
        with retained_heap(self.plan.device.type == "cpu"):
            try:
                return (yield from self._epochs())
            finally:
                release_memory(self.plan.device)

    def _epochs(self) -> Generator[TrainEvent, None, DecoNoisingModel]:
        """The training loop of :meth:`run`, without its setting up and clearing away."""
        cfg = self.config
        total = cfg.total_steps
        t0 = time.perf_counter()
        step = 0
        for e in range(1, cfg.epochs + 1):
            losses = []
            for _ in range(cfg.steps_per_epoch):
                if self._stop.is_set():
                    return self.model
                losses.append(self._step())
                self._average.update(self.net)
                step += 1
                elapsed = time.perf_counter() - t0
                yield TrainEvent("step", e, cfg.epochs, step, total, losses[-1], None, self._lr(),
                                 elapsed, elapsed / step * (total - step))
            # Rank 0 validates; all ranks then step their schedulers alike.
            val = self.validation_loss() if self.ddp is None or self.ddp.is_main else 0.0
            val = val if self.ddp is None else self.ddp.from_main(val)
            self.scheduler.step(val)
            is_best = val < self.best_val
            if is_best:
                self.best_val = val
                self._best_state = {k: v.detach().cpu().clone() for k, v in self._eval_net.state_dict().items()}
            elapsed = time.perf_counter() - t0
            mean_loss = float(np.mean(losses))
            self.history.append({"epoch": self._epoch_offset + e, "train_loss": mean_loss,
                                 "val_loss": val, "lr": self._lr(), "seconds": elapsed})
            yield TrainEvent("epoch", e, cfg.epochs, step, total, mean_loss, val, self._lr(),
                             elapsed, elapsed / step * (total - step), is_best)
        return self.model

    @property
    def _eval_net(self) -> torch.nn.Module:
        """The network that is validated and saved: the weight average when there is one."""
        average = self._average.module
        return self.net if average is None else average

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def train(images: np.ndarray | Sequence[np.ndarray], config: TrainConfig | None = None, *,
          axes: str | None = None, psf: np.ndarray | None = None, resume: DecoNoisingModel | None = None,
          callback: Callable[[TrainEvent], bool | None] | None = None) -> DecoNoisingModel:
    """Train to the end and return the best model.

    ``callback(event)`` is called for every event; returning True stops training.
    """
    trainer = Trainer(images, config, axes=axes, psf=psf, resume=resume)
    for event in trainer.run():
        if callback is not None and callback(event):
            trainer.stop()
    return trainer.model
