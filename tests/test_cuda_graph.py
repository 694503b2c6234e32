"""Training steps replayed as a CUDA graph (core/cuda_graph.py)."""

import numpy as np
import pytest
import torch

from napari_deconoising.core.cuda_graph import WARMUP_STEPS, adam, describe_steps, graph_blocker
from napari_deconoising.core.train import Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(("kwargs", "why"), [
    (dict(enabled=False), "off in the configuration"),
    (dict(device=torch.device("cpu")), "no CUDA device (cpu)"),
    (dict(micro_batches=2), "micro-batches"),
    (dict(grad_scaler=True), "fp16 loss scaling"),
    (dict(distributed=True), "distributed training"),
])
def test_each_blocker_is_named(kwargs, why):
    args = dict(device=torch.device("cuda"), enabled=True, micro_batches=1, grad_scaler=False, distributed=False)
    assert graph_blocker(**{**args, **kwargs}).startswith(why)
    assert graph_blocker(**args) is None


def test_the_cpu_trains_eagerly_with_a_fused_optimiser(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(precision="auto"))
    assert trainer.graph_blocker == "no CUDA device (cpu)"
    assert "CUDA graph" not in trainer.plan.reason
    assert not trainer.optimizer.defaults["capturable"]
    assert all(g["fused"] for g in trainer.optimizer.param_groups)
    assert isinstance(trainer.optimizer.param_groups[0]["lr"], float)
    trainer._step()
    assert trainer._graphed is None


@pytest.mark.skipif(tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4),
                    reason="PyTorch has no fused Adam on the CPU before 2.4")
def test_the_cpus_fused_adam_makes_the_steps_of_the_loop_it_replaces():
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(7)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(4)]
    trained = []
    for make in (lambda g: adam(g, 0.1, capturable=False, device=torch.device("cpu")),
                 lambda g: torch.optim.Adam(g, lr=0.1, foreach=False)):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make([{"params": params[:1], "lr": 0.01}, {"params": params[1:]}])
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        trained.append(params)
    assert adam([{"params": [torch.nn.Parameter(torch.ones(1))]}], 0.1, capturable=False,
                device=torch.device("cpu")).defaults["fused"]
    for fused, loop, before in zip(*trained, start):
        torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-7)
        assert (fused - before).abs().min() > 1e-4  # every value moved


def test_a_pytorch_without_the_cpus_fused_adam_gets_the_loop(monkeypatch):
    plain = torch.optim.Adam

    def before_2_4(params, lr, fused=None, **kw):
        if fused:  # PyTorch < 2.4 fills the groups in, then refuses fused=True on the CPU
            plain(params, lr=lr, fused=False, **kw)
            for g in params:
                g["fused"] = True
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return plain(params, lr=lr, **kw)

    monkeypatch.setattr(torch.optim, "Adam", before_2_4)
    p = torch.nn.Parameter(torch.ones(2))
    opt = adam([{"params": [p]}], 0.1, capturable=False, device=torch.device("cpu"))
    assert isinstance(opt, plain) and not any(g["fused"] for g in opt.param_groups)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.all(p < 1)


def test_a_capturable_adam_keeps_each_groups_rate_as_a_tensor():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    opt = adam([{"params": [a], "lr": 0.1}, {"params": [b]}], 0.5, capturable=True, device=torch.device("cpu"))
    rates = [g["lr"] for g in opt.param_groups]
    assert all(isinstance(r, torch.Tensor) for r in rates)
    assert [float(r) for r in rates] == pytest.approx([0.1, 0.5])


def _losses(trainer, steps):
    return np.array([trainer._step() for _ in range(steps)])


@cuda
@pytest.mark.parametrize(("precision", "decoder"), [("fp32", "wide"), ("bf16", "wide"), ("fp32", "lean")])
def test_graphed_steps_train_as_eager_ones_do(sample, tiny_config, precision, decoder):
    cfg = tiny_config.replace(device="cuda", precision=precision, decoder=decoder)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        graphed, eager = Trainer(sample.noisy, cfg), Trainer(sample.noisy, cfg.replace(cuda_graph=False))
        assert graphed.graph_blocker is None and eager.graph_blocker == "off in the configuration"
        steps = WARMUP_STEPS + 6
        a, b = _losses(graphed, steps), _losses(eager, steps)
    finally:
        torch.backends.cudnn.allow_tf32 = True
    assert graphed._graphed.captured and eager._graphed is None
    # The same patches, blind spots and arithmetic: only cuDNN's choice of algorithm differs.
    tol = 1e-3 if precision == "fp32" else 3e-2
    np.testing.assert_allclose(a, b, rtol=tol)
    for p, q in zip(graphed.net.parameters(), eager.net.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


@cuda
def test_a_new_learning_rate_reaches_the_recorded_graph(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="fp32"))
    _losses(trainer, WARMUP_STEPS + 1)
    assert trainer._graphed.captured
    before = [p.detach().clone() for p in trainer.net.parameters()]
    trainer.scheduler.factor = 0.0
    trainer.scheduler.min_lrs = [0.0] * len(trainer.optimizer.param_groups)
    trainer.scheduler._reduce_lr(0)  # what a plateau does, down to a rate of 0
    assert trainer._lr() == 0
    _losses(trainer, 2)
    for p, q in zip(trainer.net.parameters(), before):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@cuda
def test_a_full_run_on_cuda_validates_and_returns_the_best_model(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="auto"))
    events = list(trainer.run())
    assert trainer._graphed is not None and trainer._graphed.captured
    epochs = [e for e in events if e.kind == "epoch"]
    assert len(epochs) == tiny_config.epochs and all(np.isfinite(e.val_loss) for e in epochs)
    assert epochs[-1].train_loss < epochs[0].train_loss * 1.5
    pred = trainer.model.predict(sample.noisy, device="cuda")
    assert np.isfinite(pred.denoised).all()


@cuda
def test_timing_a_step_drops_a_graph_it_recorded(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="fp32"))
    trainer.estimate_step_seconds(steps=WARMUP_STEPS + 1)
    assert trainer._graphed is None  # it pointed at the optimiser state the timing restored
    _losses(trainer, WARMUP_STEPS + 2)
    assert trainer._graphed.captured


@cuda
def test_auto_on_a_bf16_gpu_picks_a_precision_the_graph_can_replay(sample, tiny_config):
    trainer = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="auto", seed=1))
    if torch.cuda.is_bf16_supported():
        assert trainer.plan.precision in ("fp32", "bf16")
        assert trainer.graph_blocker is None
        eager = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="auto", cuda_graph=False, seed=1))
        assert "CUDA graph" not in eager.plan.reason


@cuda
def test_the_command_line_says_whether_steps_are_graphed(sample, tiny_config):
    import io

    from napari_deconoising._console import run_training

    for graph, said in ((True, "replayed as a CUDA graph"), (False, "without a CUDA graph: off in the configuration")):
        out = io.StringIO()
        run_training(sample.noisy, tiny_config.replace(device="cuda", precision="fp32", epochs=1, cuda_graph=graph),
                     out=out)
        assert said in out.getvalue()


def test_steps_are_described_on_cuda_only():
    from napari_deconoising.core.cuda_graph import describe_steps

    assert describe_steps(torch.device("cpu"), "no CUDA device (cpu)") is None
    assert "replayed as a CUDA graph" in describe_steps(torch.device("cuda"), None)
    assert describe_steps(torch.device("cuda"), "fp16 loss scaling").endswith("without a CUDA graph: fp16 loss scaling")


@cuda
def test_a_learned_sigma_moves_under_the_graph(sample, tiny_config):
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer

    trainer = LearnedSigmaTrainer(sample.noisy, tiny_config.replace(device="cuda", precision="fp32"))
    start = trainer.net.psf.sigma_values()
    list(trainer.run())
    assert trainer._graphed is not None and trainer._graphed.captured
    assert trainer.net.psf.sigma_values() != start  # sigma's rate (its own tensor) reached the graph


@cuda
def test_a_failed_capture_trains_on_without_the_graph(sample, tiny_config, monkeypatch):
    class Refused:
        def __init__(self, graph, **kwargs):
            pass

        def __enter__(self):
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "graph", Refused)
    trainer = Trainer(sample.noisy, tiny_config.replace(device="cuda", precision="fp32"))
    losses = _losses(trainer, WARMUP_STEPS + 4)
    assert np.isfinite(losses).all()
    assert trainer.graph_blocker == "the capture failed: operation not permitted when stream is capturing"
    assert "without a CUDA graph: the capture failed" in describe_steps(trainer.plan.device, trainer.graph_blocker)
