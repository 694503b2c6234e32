"""napari dock widgets for DecoNoising (thin: all computation is in :mod:`..core`)."""

from ._apply import ApplyWidget
from ._beads import BeadsWidget
from ._compare import compare_command, toggle_compare
from ._registry import REGISTRY
from ._train import TrainWidget

__all__ = ["ApplyWidget", "BeadsWidget", "REGISTRY", "TrainWidget", "compare_command", "toggle_compare"]
