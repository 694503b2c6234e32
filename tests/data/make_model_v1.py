"""Write ``model_v1.pt`` and ``model_v1_expected.npz``: a format-1 model file and its output.

Run once, with the code of commit 1941f57 (before the model/modelfile split of issue 7)::

    OMP_NUM_THREADS=1 python tests/data/make_model_v1.py

The files are committed; ``tests/test_modelfile.py`` checks that the current code still
loads the file and predicts exactly what the code that wrote it predicted. Do not re-run
this script to "fix" that test: a failure means the model file format changed.
"""

from pathlib import Path

import numpy as np

from napari_deconoising.core import TrainConfig, make_sample, train

HERE = Path(__file__).resolve().parent


if __name__ == "__main__":
    noisy = make_sample((64, 64), sigma=1.2, seed=3).noisy
    cfg = TrainConfig(psf="gaussian", psf_sigma=1.2, depth=2, channels=8, patch_size=32,
                      batch_size=4, epochs=2, steps_per_epoch=2, seed=0, device="cpu")
    model = train(noisy, cfg)
    model.save(HERE / "model_v1.pt")
    image = make_sample((48, 48), sigma=1.2, seed=7).noisy
    pred = model.predict(image, device="cpu")
    np.savez(HERE / "model_v1_expected.npz", image=image, denoised=pred.denoised,
             deconvolved=pred.deconvolved, mean=model.mean, std=model.std)
    print(model.summary())
