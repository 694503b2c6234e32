"""The console progress bar and the foreground training loop."""

from __future__ import annotations

import io

import pytest

from napari_deconoising._console import ProgressBar, run_training


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_redraws_in_place():
    s = _Tty()
    bar = ProgressBar(4, s, width=8)
    bar.update(4, "done")
    bar.println("epoch 1")
    bar.close()
    out = s.getvalue()
    assert "\r\033[K[########] 100% done" in out
    assert out.count("epoch 1\n") == 1 and out.endswith("\r\033[K")


def test_progress_bar_in_a_log_writes_only_lines():
    s = io.StringIO()
    bar = ProgressBar(4, s)
    bar.update(2, "half")
    bar.println("epoch 1")
    bar.close()
    assert s.getvalue() == "epoch 1\n"


def test_run_training_prints_estimate_and_epochs(sample, tiny_config):
    cfg = tiny_config.replace(epochs=2, steps_per_epoch=2)
    s = io.StringIO()
    model, trainer = run_training(sample.noisy, cfg, out=s, label="[x] ")
    lines = s.getvalue().splitlines()
    assert lines[0] == "[x] precision fp32 on cpu: requested"
    assert lines[1].startswith("[x] training 2 epochs x 2 steps") and "estimated 0:" in lines[1]
    assert "of 8 32x32px patches" in lines[1]
    assert [ln.split()[2] for ln in lines[2:]] == ["1/2", "2/2"]
    assert len(model.history) == 2 and trainer.history == model.history


def test_run_training_names_a_3d_patch_by_its_axes(sample3d, tiny_config):
    cfg = tiny_config.replace(ndim=3, patch_size=(8, 32, 32), psf_sigma=(2, 1, 1), batch_size=2,
                              epochs=1, steps_per_epoch=1)
    s = io.StringIO()
    run_training(sample3d.noisy, cfg, axes="ZYX", out=s)
    assert any("of 2 8x32x32px patches" in line for line in s.getvalue().splitlines())


def _interrupt_after(trainer, kind: str) -> None:
    """Make ``trainer.run`` raise KeyboardInterrupt (Ctrl-C) after its first event of ``kind``."""
    run = trainer.run

    def interrupted():
        for ev in run():
            yield ev
            if ev.kind == kind:
                raise KeyboardInterrupt

    trainer.run = interrupted


def test_ctrl_c_before_the_first_epoch_saves_no_model(sample, tiny_config):
    from napari_deconoising.core import Trainer
    from napari_deconoising.core.predict import Cancelled

    cfg = tiny_config.replace(epochs=2, steps_per_epoch=3)
    trainer = Trainer(sample.noisy, cfg)
    _interrupt_after(trainer, "step")
    with pytest.raises(Cancelled, match="interrupted before the first epoch ended: no model was saved"):
        run_training(sample.noisy, cfg, trainer=trainer, out=io.StringIO())
    trainer = Trainer(sample.noisy, cfg)
    _interrupt_after(trainer, "epoch")
    s = io.StringIO()
    model, _ = run_training(sample.noisy, cfg, trainer=trainer, out=s)
    assert len(model.history) == 1 and "interrupted: keeping the best model so far" in s.getvalue()


def test_ctrl_c_while_learning_sigma_stops_everything(sample, tiny_config, monkeypatch, capsys):
    from napari_deconoising._cli_sigma import train_learning_sigma
    from napari_deconoising.core.learned_psf import LearnedSigmaTrainer
    from napari_deconoising.core.predict import Cancelled

    init = LearnedSigmaTrainer.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _interrupt_after(self, "epoch")

    monkeypatch.setattr(LearnedSigmaTrainer, "__init__", patched)
    with pytest.raises(Cancelled, match=r"interrupted while learning the PSF sigma \(at [0-9.]+ px so far\)"):
        train_learning_sigma([sample.noisy], tiny_config, "YX")
    err = capsys.readouterr().err
    assert err.count(" epochs x ") == 1  # the learning run's announcement only: the full run never started


def test_ctrl_c_while_checking_sigma_against_the_edges_stops_everything(sample, tiny_config, monkeypatch, capsys):
    from napari_deconoising._cli_sigma import train_learning_sigma
    from napari_deconoising.core import psf_check
    from napari_deconoising.core.predict import Cancelled

    def interrupted(images):  # Ctrl-C during the edge fit (up to a minute in 3D)
        raise KeyboardInterrupt

    monkeypatch.setattr(psf_check, "edge_sigma", interrupted)
    with pytest.raises(Cancelled, match="interrupted while checking the learned PSF sigma"):
        train_learning_sigma([sample.noisy], tiny_config, "YX")
    assert capsys.readouterr().err.count(" epochs x ") == 1  # the full run never started
