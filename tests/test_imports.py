import subprocess
import sys


def test_core_and_cli_import_no_gui():
    code = (
        "import sys, napari_deconoising.core, napari_deconoising.cli, napari_deconoising.demo;"
        "bad=[m for m in ('napari','qtpy','PyQt6','PyQt5','PySide6','magicgui') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
