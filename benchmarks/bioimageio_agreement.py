"""How closely bioimage.io tools reproduce our prediction from an exported package.

Trains the tests' tiny model (depth 2, 8 channels, 20 steps) on a synthetic image, exports it
with :func:`napari_deconoising.bioimageio.export_bioimageio` (which runs bioimage.io's model
test), predicts a new synthetic image through ``bioimageio.core`` with both weight formats and
prints the largest difference to our own tiled prediction, relative to the largest value and
to the model's standard deviation.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bioimageio_agreement.py`` (needs the
``bioimageio`` extra).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from napari_deconoising.bioimageio import export_bioimageio
from napari_deconoising.bioimageio.files import geometry
from napari_deconoising.core import TrainConfig, make_sample, train

TINY = dict(depth=2, channels=8, patch_size=32, batch_size=8, steps_per_epoch=5, epochs=4, seed=0,
            precision="fp32", device="cpu", psf_sigma=1.5)


def main() -> None:
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    noisy = make_sample((96, 96), sigma=1.5, seed=0).noisy
    model = train(noisy, TrainConfig(**TINY))
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "tiny.zip"
        t0 = time.perf_counter()
        export_bioimageio(model, pkg, name="tiny DecoNoising", description="agreement check",
                          authors=["benchmark"], sample=noisy)
        print(f"export incl. bioimage.io model test: {time.perf_counter() - t0:.1f} s")
        geo = geometry(model)
        image = make_sample((geo.min + 3 * geo.step, geo.min + 7 * geo.step), sigma=1.5, seed=7).noisy
        ours = model.predict(image, "YX", device="cpu", precision="fp32")
        descr = load_model_description(pkg)
        for weights in ("pytorch_state_dict", "torchscript"):
            pipeline = create_prediction_pipeline(descr, devices=["cpu"], weights_format=weights)
            out = predict(model=pipeline, inputs={"raw": image[None, None]})
            # bioimage.io pads the image border by reflection over the whole halo; our prediction
            # reflects one pooling multiple and then zero-pads (core/tiles.py), so the two agree
            # away from the border and differ within a halo of it: both are reported.
            inner = (slice(geo.halo, -geo.halo),) * 2
            for key, expected in (("denoised", ours.denoised), ("deconvolved", ours.deconvolved)):
                diff = np.abs(out.members[key].data.values[0, 0] - expected)
                for where, d in (("inside", diff[inner]), ("border", diff)):
                    print(f"{weights:18s} {key:11s} {where:6s} max|diff|/max|ours| "
                          f"{float(d.max()) / np.abs(expected).max():.2e}  "
                          f"max|diff|/std {float(d.max()) / model.std:.2e}")


if __name__ == "__main__":
    main()
