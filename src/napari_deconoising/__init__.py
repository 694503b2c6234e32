"""napari-deconoising: self-supervised denoising and deconvolution (DecoNoising)."""

try:
    from ._version import version as __version__
except ImportError:  # not installed from a build
    try:
        from importlib.metadata import version as _v

        __version__ = _v("napari-deconoising")
    except Exception:
        __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
