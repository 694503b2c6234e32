"""Prediction on a Dask cluster: the batches of tiles of :mod:`.stream`, run by ``dask.distributed``.

Dask does the scheduling, retries and data movement; we only describe the work. The
model is scattered once to every worker, each worker builds its network once per run,
and every task reads its tiles (with their halo) from the input and writes their cores
to the outputs itself, so no pixels travel through the scheduler. Inputs and outputs
are :class:`.lazy_io.ArrayRef` s, which every worker can open on a shared filesystem.
Tiles write whole output chunks, so parallel writes never touch the same chunk.

Use an existing cluster (``Client("tcp://host:8786")``, e.g. one started by
dask-jobqueue on SLURM/PBS) or :func:`dask_client` for a local one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from .lazy_io import ArrayRef

if TYPE_CHECKING:
    from .model import DecoNoisingModel
    from .stream import StreamPlan

__all__ = ["dask_client", "run_on_cluster"]


# Run in each local worker process as it starts (Dask's preload takes a script's text).
_IGNORE_CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: on ``scheduler`` (an address) or on a new local cluster.

    A local cluster has ``workers`` processes of one thread each (Dask limits each
    worker's BLAS/OpenMP threads to one), and is shut down at the end of the block.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # an optional dependency
        raise ImportError("Dask prediction needs the 'distributed' package: "
                          "pip install 'napari-deconoising[cluster]'") from None
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # silence_logs: Dask's own logs would break the one-line output: a slow worker shutdown's warning,
    # and a failed task's "Compute Failed" traceback (ERROR), whose exception the caller reports itself.
    # The scheduler's HTTP server runs even without the dashboard, on port 8787 unless told otherwise
    # (with a warning where another Dask holds that port): a free port on the loopback instead.
    # _IGNORE_CTRL_C: a Ctrl-C reaches the workers too (one process group); they would each print a
    # KeyboardInterrupt traceback, while this process stops the run and then closes them.
    with LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, preload=[_IGNORE_CTRL_C],
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


# Per worker process: the network of the current run, built from the scattered model.
_NETS: dict[str, tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def _network(token: str, model: DecoNoisingModel, device: str, precision: str,
             crops: Sequence[Any]) -> tuple[Any, Any]:
    from .device import execution_plan
    from .quantize import prediction_network

    with _LOCK:
        if token not in _NETS:
            _NETS.clear()  # a worker serves one run at a time; drop older networks
            # int8 was checked against fp32 by the client; the same crops give the same network here.
            _NETS[token] = prediction_network(model, execution_plan(device, precision), lambda: crops, check=False)
        return _NETS[token]


def _remote_job(job: tuple, *, run_job: Callable[..., int], model: DecoNoisingModel, plan: StreamPlan,
                source: ArrayRef, outputs: Sequence[ArrayRef | None], device: str, precision: str, token: str,
                crops: Sequence[Any]) -> int:
    net, exec_plan = _network(token, model, device, precision, crops)
    sinks = [None if o is None else o.open(write=True) for o in outputs]
    return run_job(plan, net, exec_plan, source.open(), sinks, job)


def run_on_cluster(client: Any, run_job: Callable[..., int], model: DecoNoisingModel, plan: StreamPlan,
                   source: ArrayRef, outputs: Sequence[ArrayRef | None], work: Sequence[tuple], device: str,
                   precision: str, crops: Sequence[Any] = ()) -> Iterator[int]:
    """Submit every batch of tiles; yield each finished batch's tile count as it completes.

    ``run_job(plan, net, exec_plan, source, sinks, job)`` (:func:`.stream.run_job`) runs
    one batch on a worker.

    Closing the generator (a cancel, an error) cancels the batches not yet run.
    """
    from distributed import as_completed

    if not isinstance(source, ArrayRef) or not all(o is None or isinstance(o, ArrayRef) for o in outputs):
        raise ValueError("prediction on a Dask cluster needs an input and outputs on disk (ArrayRef)")
    # One copy of the weights per worker, rather than one per task. hash=False: a key of this run's
    # own, since a content hash gives the next file of a batch the same key as this one's, which the
    # cancel below (not yet done on the scheduler) then takes from it ("lost dependencies").
    model_future = client.scatter(model, broadcast=True, hash=False)
    # int8 calibration crops (empty otherwise); wrapped, because scatter sends a list's items apart.
    [crops_future] = client.scatter([list(crops)], broadcast=True, hash=False)
    token = uuid.uuid4().hex
    futures = client.map(_remote_job, list(work), run_job=run_job, model=model_future, plan=plan, source=source,
                         outputs=list(outputs), device=device, precision=precision, token=token,
                         crops=crops_future, pure=False)
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.cancel(futures)
        client.cancel(model_future)
        client.cancel(crops_future)
        # A long-lived cluster (--scheduler) would otherwise keep the network, and its GPU memory,
        # on every worker until the next run. Not waited for: a scheduler that is gone (the error
        # ending the run) would hold the caller for its 30 s reconnection timeout.
        if client.status == "running":
            with suppress(Exception):
                client.run(_forget, token, wait=False)


async def _forget(token: str) -> None:  # async: Dask runs it without waiting only so
    """Drop the network of run ``token`` on this worker.

    Runs on the worker's event loop, so it never waits for :data:`_LOCK` (a network being built
    holds it): ``dict.pop`` is atomic. A batch that starts after this rebuilds the network,
    which the next run's :func:`_network` drops.
    """
    from .device import release_memory

    entry = _NETS.pop(token, None)
    if entry is not None:
        device = entry[1].device  # the network's execution plan says where it lived
        del entry  # the last reference: its memory can go back now
        release_memory(device)
