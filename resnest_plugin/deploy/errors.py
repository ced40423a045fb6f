"""The runner's named errors: each message names the bad value and what was expected.

Every class derives from :class:`DeployError` (a :class:`ValueError`), so a
caller can catch them all at once; the CLI turns them into a one-line message
and exit status 2. Standard library only.
"""
from __future__ import annotations

__all__ = ["BoxError", "DeployError", "ImageError", "ImageReadError", "MissingDependencyError",
           "NotAnExportError", "UnsupportedExportError"]


class DeployError(ValueError):
    """Base class of the runner's errors."""


class NotAnExportError(DeployError):
    """The file is not an ONNX file written by ``resnest_plugin.deploy`` (or its metadata is invalid)."""


class UnsupportedExportError(NotAnExportError):
    """The file is one of our exports, but of a ``format_version`` this runner does not read."""


class ImageError(DeployError):
    """An image array of the wrong dtype or shape."""


class ImageReadError(DeployError):
    """An image file that is missing or that OpenCV cannot decode."""


class BoxError(DeployError):
    """Boxes of the wrong shape, not finite, or of zero or negative size."""


class MissingDependencyError(DeployError):
    """An optional dependency (xtcocotools for ``evaluate``) is not installed."""
