"""bioimage.io Model Zoo packages: export a model, and open packages exported by us.

Importing this package does not import ``bioimageio``: export needs the optional
extra (``pip install napari-deconoising[bioimageio]``), opening our own packages does not.
"""

from .errors import BioimageioExportError, BioimageioModelError, BioimageioUnavailable, ForeignModelError
from .export import export_bioimageio
from .load import is_bioimageio_source, load_any_model, load_bioimageio_model

__all__ = [
    "BioimageioExportError",
    "BioimageioModelError",
    "BioimageioUnavailable",
    "ForeignModelError",
    "export_bioimageio",
    "is_bioimageio_source",
    "load_any_model",
    "load_bioimageio_model",
]
