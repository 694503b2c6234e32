"""Predict an image layer in a worker thread and add the result layers.

One flow for the Train widget (after training) and the Apply widget: progress bar
and ETA, the device and precision the prediction runs in (and why), error messages,
cancelling, and ``<name> denoised`` / ``<name> deconvolved`` layers with provenance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from magicgui.widgets import Label
from napari.layers import Image, Layer
from qtpy.QtWidgets import QProgressBar

from ..core import ChannelModels, DecoNoisingModel, Prediction
from ..core.device import ExecutionPlan
from ..core.formatting import format_seconds
from ..core.stream import StreamPlan
from ._large import LazyResults, large_predict_job
from ._layers import PROVENANCE_KEY, add_result_layers, full_resolution
from ._notify import info, notify_error
from ._worker import Job

__all__ = ["PlanChosen", "PredictRequest", "PredictionFlow", "predict_job", "with_plans"]


@dataclass(frozen=True)
class PlanChosen:
    """Sent by the prediction worker once device and precision are chosen (once per channel's model)."""

    device: str
    precision: str
    reason: str  # why this precision: measured, cached, "small image", or "requested"
    text: str  # ExecutionPlan.describe(): "cpu bf16 (reason)"

    @classmethod
    def of(cls, plan: ExecutionPlan) -> PlanChosen:
        return cls(str(plan.device), plan.precision, plan.reason, plan.describe())

    def metadata(self) -> dict[str, str]:
        """For the result layers' provenance."""
        return {"device": self.device, "precision": self.precision, "reason": self.reason}


def with_plans(job: Callable[..., Generator], *args: Any) -> Generator:
    """Run ``job(*args, on_plan=...)`` in the worker, yielding each plan it reports as a :class:`PlanChosen`.

    ``on_plan`` is called inside the core generator (in the worker thread), so it only
    collects; the message then travels like the tiles, to be shown in the GUI thread.
    """
    plans: list[ExecutionPlan] = []
    gen = job(*args, on_plan=plans.append)
    sent = 0
    try:
        while True:
            try:
                value = next(gen)
            except StopIteration as stop:
                return stop.value
            for plan in plans[sent:]:  # chosen before this batch of tiles ran
                yield PlanChosen.of(plan)
            sent = len(plans)
            yield value
    finally:
        gen.close()


def predict_job(
    model: DecoNoisingModel | ChannelModels, data: np.ndarray, axes: str, tile_size: int | None, device: str,
    on_plan: Callable[[ExecutionPlan], None] | None = None,
) -> Generator[tuple[int, int], None, Prediction]:
    """Worker-thread generator: tiled prediction, yields (done, total), returns the Prediction."""
    return (yield from model.predict_iter(data, axes, tile_size=tile_size, device=device, on_plan=on_plan))


@dataclass
class PredictRequest:
    """One prediction: what to restore, with which model, and what to tell the user."""

    layer: Image
    data: np.ndarray | None  # a private copy of the layer's data; dropped when done
    model: DecoNoisingModel | ChannelModels
    model_name: str | None
    axes: str
    run_id: str
    step: str  # provenance: how the model relates to this layer
    tile_size: int | None = None
    device: str = "auto"
    status_prefix: str = ""  # kept in front of the progress and result messages
    tooltip_prefix: str = ""  # kept above the prediction's device and precision in the status tooltip
    cancelled_text: str = "Cancelled; no layers added."
    t0: float = field(default_factory=time.perf_counter)
    # A large or lazy layer: tiles go from the layer into these zarr outputs (data is None).
    large: LazyResults | None = None
    plan: StreamPlan | None = None
    # Several single-channel layers stacked along the C axis of data: a result pair next to each.
    channel_layers: list[Image] | None = None
    # Device and precision, as the worker chose them (one per channel's model).
    plans: list[PlanChosen] = field(default_factory=list)

    def plan_metadata(self, channel: int | None = None) -> dict | list[dict] | None:
        """What ran the prediction, for the provenance: of ``channel``, or of all (a list if they differ)."""
        if not self.plans:
            return None
        if channel is not None:
            return self.plans[min(channel, len(self.plans) - 1)].metadata()
        metas = [p.metadata() for p in self.plans]
        return metas[0] if all(m == metas[0] for m in metas) else metas

    @property
    def plan_text(self) -> str:
        """Like ``" on cpu in bf16"``, for the progress and result messages ('' until the plan is known)."""
        if not self.plans:
            return ""
        p = self.plans[-1]
        return f" on {p.device} in {p.precision}"


class PredictionHost(Protocol):
    """What the flow needs from the dock widget that runs it."""

    viewer: Any
    progress: QProgressBar
    status: Label

    def track(self, job: Job) -> None: ...

    def results_added(self, raw: Layer, denoised: Layer, deconvolved: Layer) -> None: ...


class PredictionFlow:
    """Runs :class:`PredictRequest` s one at a time for a dock widget."""

    def __init__(self, host: PredictionHost, finished: Callable[[], None]) -> None:
        self.host = host
        self.job: Job | None = None
        self.request: PredictRequest | None = None
        self.succeeded = False
        self._finished = finished

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, request: PredictRequest) -> Job:
        """Start predicting in a worker thread (the caller checks :attr:`running` first)."""
        self.request, self.succeeded = request, False
        self.host.progress.setRange(0, 0)  # busy until the first tile is done
        self.host.status.value = (
            f"{request.status_prefix}Restoring '{request.layer.name}' with "
            f"'{request.model_name}'…"
        )
        if request.large is not None:
            request.large.add_layers(self.host.viewer, request.layer, request.model, request.model_name,
                                     request.axes, run_id=request.run_id, step=request.step)
            func, args = large_predict_job, (request.model, full_resolution(request.layer), request.large,
                                             request.plan, request.device)
        else:
            func, args = predict_job, (request.model, request.data, request.axes, request.tile_size,
                                       request.device)
        self.job = Job(
            with_plans,
            func,
            *args,
            yielded=self._on_progress,
            returned=self._on_predicted,
            errored=self._on_error,
            cancelled=self._on_cancelled,
            finished=self._on_finished,
        )
        self.host.track(self.job)
        self.job.start()
        return self.job

    def cancel(self) -> bool:
        """Ask the running prediction to stop at its next tile; False if none runs."""
        if not self.running:
            return False
        self.job.quit()
        return True

    # -- worker callbacks (main thread) ------------------------------------------------
    def _on_progress(self, value: PlanChosen | tuple[int, int]) -> None:
        request = self.request
        if isinstance(value, PlanChosen):
            self._on_plan(value)
            return
        done, total = value
        self.host.progress.setRange(0, total)
        self.host.progress.setValue(done)
        elapsed = time.perf_counter() - request.t0
        left = elapsed / done * (total - done) if done else 0
        self.host.status.value = (
            f"{request.status_prefix}Tile {done}/{total}{request.plan_text} · {format_seconds(left)} left"
        )
        if request.large is not None:
            request.large.refresh()

    def _on_plan(self, plan: PlanChosen) -> None:
        request = self.request
        if plan not in request.plans:  # a model per channel: said again only if it differs
            self.host.status.value = (f"{request.status_prefix}Restoring '{request.layer.name}' on {plan.device} "
                                      f"in {plan.precision} ({plan.reason})…")
        request.plans.append(plan)
        # The status line moves on to the tiles; the full choice stays in the tooltip.
        said = "; ".join(dict.fromkeys(p.text for p in request.plans))
        self.host.status.tooltip = f"{request.tooltip_prefix}Prediction: {said}"
        if request.large is not None:  # its layers were added before the plan was known
            for layer in request.large.layers:
                layer.metadata[PROVENANCE_KEY]["prediction"] = request.plan_metadata()

    def _on_predicted(self, prediction: Prediction | None) -> None:
        request = self.request
        if request.large is not None:
            request.large.refresh(force=True)
            den, dec = request.large.layers
            self.succeeded = True
            secs = format_seconds(time.perf_counter() - request.t0)
            self.host.status.value = (f"{request.status_prefix}Done in {secs}{request.plan_text}: '{den.name}' "
                                      f"and '{dec.name}' are saved in {request.large.folder}.")
            self.host.results_added(request.layer, den, dec)
            return
        if request.channel_layers:
            c, axes = request.axes.index("C"), request.axes.replace("C", "")
            pairs = [add_result_layers(self.host.viewer, layer, prediction.denoised.take(k, axis=c),
                                       prediction.deconvolved.take(k, axis=c), request.model, request.model_name,
                                       axes, run_id=request.run_id, step=request.step, channel=k,
                                       prediction=request.plan_metadata(k))
                     for k, layer in enumerate(request.channel_layers)]
        else:
            pairs = [add_result_layers(self.host.viewer, request.layer, prediction.denoised,
                                       prediction.deconvolved, request.model, request.model_name, request.axes,
                                       run_id=request.run_id, step=request.step,
                                       prediction=request.plan_metadata())]
        den, dec = pairs[0]
        self.succeeded = True
        secs = format_seconds(time.perf_counter() - request.t0)
        added = ", ".join(f"'{a.name}' and '{b.name}'" for a, b in pairs)
        self.host.status.value = f"{request.status_prefix}Done in {secs}{request.plan_text}: added {added}."
        self.host.results_added(request.layer, den, dec)

    def _on_error(self, exc: BaseException) -> None:
        self.host.status.value = notify_error(exc, what="prediction")

    def _on_cancelled(self) -> None:
        large = self.request.large
        if large is not None:
            large.refresh(force=True)
            self.host.status.value = (f"Cancelled: the finished tiles are kept in {large.folder}; the rest of "
                                      "the result layers is empty (0).")
        else:
            self.host.status.value = self.request.cancelled_text
        info("Prediction cancelled.")

    def _on_finished(self) -> None:
        if self.request is not None:
            self.request.data = None  # free the copy of the image
        self.host.progress.setRange(0, 1)
        self.host.progress.setValue(1 if self.succeeded else 0)
        self._finished()
