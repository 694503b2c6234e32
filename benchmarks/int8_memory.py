"""Peak memory of int8 prediction of a 4096² image with a trained model file, in a fresh process.

    python benchmarks/int8_memory.py MODEL.pt [--size 4096] [--precision int8] [--baseline]

The image is the built-in sample tiled to the size (plus a little noise); int8's check against
fp32 is not relaxed, so the line printed says which precision actually ran. ``--baseline``:
the same process without predicting.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--baseline", action="store_true")
    a = ap.parse_args(argv)
    from napari_deconoising.core import load_model, make_sample
    from napari_deconoising.core.predict import peak_rss_bytes

    model = load_model(a.model)
    tile = make_sample((512, 512), sigma=1.0, seed=0).noisy
    rng = np.random.default_rng(0)
    image = np.tile(tile, (a.size // 512, a.size // 512)) + rng.normal(0, 0.01, (a.size, a.size)).astype(np.float32)
    plans = []
    t0 = time.perf_counter()
    if not a.baseline:
        model.predict(image, precision=a.precision, on_plan=plans.append)
    print(json.dumps({"peak_rss_gib": peak_rss_bytes() / 2**30, "seconds": time.perf_counter() - t0,
                      "ran": plans[-1].precision if plans else None, "reason": plans[-1].reason if plans else None}))


if __name__ == "__main__":
    main()
