"""The console progress bar and the foreground training loop."""

from __future__ import annotations

import io

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
