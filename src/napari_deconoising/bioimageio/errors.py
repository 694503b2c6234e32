"""Errors of the bioimage.io export and import, and the check for the optional extra."""

from __future__ import annotations

from ..core.modelfile import ModelFileError

__all__ = ["BioimageioUnavailable", "BioimageioExportError", "BioimageioModelError",
           "ForeignModelError", "INSTALL_HINT", "require_bioimageio"]

INSTALL_HINT = "pip install napari-deconoising[bioimageio]"
PYDANTIC_BELOW = "2.14"


class BioimageioUnavailable(ImportError):
    """The optional ``bioimageio.core`` / ``bioimageio.spec`` packages are not installed."""


class BioimageioExportError(ValueError):
    """A model cannot be exported, or its package failed bioimage.io's model test."""


class BioimageioModelError(ModelFileError):
    """A bioimage.io package cannot be opened as a napari-deconoising model."""


class ForeignModelError(BioimageioModelError):
    """A valid-looking bioimage.io model that this project did not export."""


def require_bioimageio() -> None:
    """Raise :class:`BioimageioUnavailable` with the install command if the extra is missing."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as e:
        raise BioimageioUnavailable(
            f"bioimage.io export needs the optional packages bioimageio.core and bioimageio.spec "
            f"({e}); install them with: {INSTALL_HINT}"
        ) from None
    import pydantic
    from packaging.version import Version

    # bioimageio.spec 0.5.12.0 (pinned by bioimageio.core 0.11.0) cannot write a model
    # description with pydantic 2.14: its file serialiser passes pydantic-core an argument
    # that 2.14 rejects. 2.12.5 and 2.13.5 were tested.
    if Version(pydantic.VERSION) >= Version(PYDANTIC_BELOW):
        raise BioimageioUnavailable(
            f"bioimage.io export does not work with pydantic {pydantic.VERSION} (bioimageio.spec "
            f"0.5.12 needs pydantic < {PYDANTIC_BELOW}); install the tested versions with: {INSTALL_HINT}"
        )
