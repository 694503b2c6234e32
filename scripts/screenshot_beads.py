"""Screenshot of the "Measure PSF from beads" widget after measuring the bead sample.

Usage (needs a display; on a headless machine run it under ``xvfb-run``)::

    python scripts/screenshot_beads.py           # docs/images/beads_widget.png, a few seconds

Uses the PNG helpers of ``scripts/screenshots.py``, so the docs' images look alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import _settle, _wait, save_png  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "images" / "beads_widget.png")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(show=True, title="napari-deconoising")
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-deconoising", "beads")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deconoising", "Measure PSF from beads")
    if not widget.measure():
        raise RuntimeError("measuring did not start: " + widget.status.value)
    _wait(lambda: not widget.busy, timeout_s=120)
    if widget.last_layers is None:
        raise RuntimeError("measuring failed: " + widget.status.value)
    viewer.reset_view()
    _settle(1.0)
    save_png(viewer.screenshot(canvas_only=False, flash=False), args.out)
    print(f"{args.out} {args.out.stat().st_size // 1024} KB")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
