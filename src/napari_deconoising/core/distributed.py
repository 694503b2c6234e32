"""Data-parallel training under ``torchrun`` (PyTorch DDP: ``gloo`` on the CPU, ``nccl`` on CUDA).

Every process draws the same patch positions and blind spots from the same seed and
keeps its share of the rows, so the processes together see exactly the batch a single
process would, and each one reads and computes only its share. DDP averages the
gradients; the loss of each share is weighted so that the average equals the
single-process loss (the masked MSE is a mean over *all* blind spots of the batch).
Rank 0 validates (the others receive its number, so their learning-rate schedules
stay in step) and writes the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import ConfigError
from .loss import finite_loss
from .masking import blind_spot_mask, mask_spots
from .n2v2 import median_spots

__all__ = ["DDP", "from_environment", "ddp_step", "shutdown"]


@dataclass(frozen=True)
class DDP:
    """This process' place in a data-parallel run: ``rank`` of ``world`` processes."""

    rank: int
    world: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device for this process: its own GPU under CUDA (``cuda:LOCAL_RANK``)."""
        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def rows(self, n: int) -> np.ndarray:
        """This process' rows of a batch of ``n`` (contiguous, sizes differing by at most one)."""
        return np.array_split(np.arange(n), self.world)[self.rank]

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``net`` in DistributedDataParallel (which broadcasts rank 0's weights now)."""
        ids = [device.index if device.index is not None else self.local_rank] if device.type == "cuda" else None
        # The only buffers are the fixed PSF kernels (no batch norm): identical on every rank,
        # so they are not re-broadcast before each forward pass (channels-last views of them
        # cannot be written in place, which the broadcast would try).
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over all processes."""
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return float(t.item()) / self.world

    def from_main(self, value: float) -> float:
        """Rank 0's ``value``, on every process."""
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.broadcast(t, src=0)
        return float(t.item())

    def masked_rows(self, x: torch.Tensor, n: int, fraction: float, radius: int,
                    generator: torch.Generator, median: bool = False) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Blind spots for this process' rows ``x`` of a micro-batch of ``n`` patches.

        The spots of all ``n`` patches are drawn (so the generator advances as in a
        single process) and this process' are kept. Also returns the share of all the
        micro-batch's spots that lie in ``x``, which weights the masked MSE. ``median``:
        spots take their neighbourhood's median (N2V2), as :func:`.n2v2.median_blind_spots`
        does in one process, instead of a random neighbour.
        """
        spots, sources = blind_spot_mask((n, *x.shape[2:]), fraction, radius, generator=generator,
                                         device=x.device)
        rows = torch.as_tensor(self.rows(n), device=x.device)
        local = torch.full((n,), -1, dtype=torch.long, device=x.device)
        local[rows] = torch.arange(rows.numel(), device=x.device)
        keep = local[spots[:, 0]] >= 0
        share = float(keep.sum()) / max(1, spots.shape[0])
        spots, sources = spots[keep].clone(), sources[keep].clone()
        spots[:, 0] = local[spots[:, 0]]
        sources[:, 0] = local[sources[:, 0]]  # a spot's source is in the same patch
        masked, mask = median_spots(x, spots, sources, radius) if median else mask_spots(x, spots, sources)
        return masked, mask, share


def ddp_step(trainer: Any) -> float:
    """One optimiser step of a :class:`.train.Trainer` in a DDP run; returns the whole batch's loss.

    Mirrors the single-process step (same patches, blind spots and micro-batches) with
    each process computing its rows; the result equals it to float precision.
    """
    ddp, cfg = trainer.ddp, trainer.config
    trainer.net.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    chunks = np.array_split(np.arange(cfg.batch_size), cfg.micro_batches)
    mine = [c[ddp.rows(len(c))] for c in chunks]
    patches = trainer.sampler.sample(cfg.batch_size, rows=np.concatenate(mine))
    patches = torch.from_numpy(patches).to(trainer.plan.device)
    total = 0.0
    for x, rows, full in zip(torch.split(patches, [len(m) for m in mine]), mine, chunks):
        masked, mask, share = ddp.masked_rows(x, len(full), cfg.mask_fraction, cfg.mask_radius, trainer.gen,
                                              median=cfg.n2v2)
        _, mse, pos = trainer._forward_loss(x, masked, mask, train=True)
        # DDP averages gradients over processes: scale each share so the average is
        # the single-process loss (MSE over all the micro-batch's spots, positivity
        # over all its pixels), weighted by the micro-batch's part of the batch.
        loss = mse * (share * ddp.world)
        if cfg.positivity > 0:
            loss = loss + cfg.positivity * pos * (len(rows) * ddp.world / len(full))
        loss = loss * (len(full) / cfg.batch_size)
        if trainer.scaler is not None:
            trainer.scaler.scale(loss).backward()
        else:
            loss.backward()
        total += float(loss.detach())
    if trainer.scaler is not None:
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        trainer.optimizer.step()
    return finite_loss(ddp.mean(total))


def from_environment(device: str = "auto") -> DDP | None:
    """Join the process group ``torchrun`` describes, or None outside ``torchrun``.

    ``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous
    address; a world of one process is not distributed.

    Raises
    ------
    ConfigError
        ``WORLD_SIZE`` above 1 without the rest of torchrun's variables, or any of them
        not a whole number (an environment not made by torchrun).
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    ddp = DDP(_env_int("RANK", world=world), world, _env_int("LOCAL_RANK", 0, world=world))
    if not 0 <= ddp.rank < world or ddp.local_rank < 0:
        raise ConfigError(f"RANK={ddp.rank} (LOCAL_RANK={ddp.local_rank}) is not a process of WORLD_SIZE={world}: "
                          f"{_TORCHRUN}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # torch's env:// rendezvous needs both
        if not os.environ.get(name):
            raise ConfigError(f"the environment variable {name} is not set (WORLD_SIZE={world}): {_TORCHRUN}")
    if not torch.distributed.is_initialized():
        use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(ddp.local_rank)
        # nccl carries CUDA tensors only: the loss and validation numbers (CPU scalars) go by gloo
        torch.distributed.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    return ddp


_TORCHRUN = ("start data-parallel training with torchrun, which sets these variables (torchrun --nproc-per-node 2 "
             "-m napari_deconoising train ...), or unset WORLD_SIZE to train in one process")


def _env_int(name: str, default: int | None = None, world: int | None = None) -> int:
    """The whole number in the environment variable ``name`` (``default`` when unset).

    Raises
    ------
    ConfigError
        Unset without a default, or not a whole number: a hand-made torchrun environment.
    """
    text = os.environ.get(name)
    where = f" (WORLD_SIZE={world})" if world is not None else ""
    if text is None or not text.strip():
        if default is None:
            raise ConfigError(f"the environment variable {name} is not set{where}: {_TORCHRUN}")
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"the environment variable {name} is {text!r}, not a whole number{where}: "
                          f"{_TORCHRUN}") from None


def shutdown() -> None:
    """Leave the process group (at the end of a run)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
