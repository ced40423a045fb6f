"""Check the runner's inputs (image array, boxes) and read image files as MMPose does.

Images: MMPose loads every image with mmcv's ``imread(path, 'color')``
(0.x ``LoadImageFromFile``, 1.x ``LoadImage``), i.e. ``cv2.imdecode(bytes,
cv2.IMREAD_COLOR)``: always 3-channel BGR, a grayscale file replicated into
three channels, an alpha channel dropped (not composited). The runner does
the same: :func:`read_image` decodes files that way, and :func:`as_bgr`
converts a grayscale (``H x W`` or ``H x W x 1``) or BGRA array with
``cv2.cvtColor`` (``GRAY2BGR`` replicates, ``BGRA2BGR`` drops alpha), which
gives the same pixels as ``IMREAD_COLOR`` on the file. Anything else (another
dtype, another channel count, an empty image) is an :class:`ImageError`.

Boxes: ``(N, 4)`` x1, y1, x2, y2 in image pixels, finite, with x2 > x1 and
y2 > y1. Boxes partly or wholly outside the image are allowed and not
clipped: MMPose clips neither detector boxes nor the crop (the warp pads
with 0).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from .errors import BoxError, ImageError, ImageReadError

__all__ = ["as_bgr", "check_boxes", "read_image"]


def as_bgr(image: Any) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3)`` uint8 BGR array.

    Args:
        image: What ``cv2.imread`` gives: uint8 ``(H, W, 3)`` BGR, or uint8
            grayscale ``(H, W)`` / ``(H, W, 1)``, or uint8 BGRA ``(H, W, 4)``.

    Returns:
        The BGR image (the input itself when it already is one).

    Raises:
        ImageError: Not a numpy array, not uint8, not 2-D or 3-D with 1, 3 or 4
            channels, or empty.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image is a {type(image).__name__}, expected a numpy uint8 array (H, W, 3) "
                         "as cv2.imread gives")
    if image.dtype != np.uint8:
        raise ImageError(f"image dtype is {image.dtype}, expected uint8 (H, W, 3) BGR as cv2.imread gives; "
                         "convert 16-bit or float images to 8 bits first")
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else None)
    if channels not in (1, 3, 4):
        raise ImageError(f"image shape is {image.shape}, expected (H, W, 3) BGR, (H, W) or (H, W, 1) "
                         "grayscale, or (H, W, 4) BGRA")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image shape is {image.shape}, expected a non-empty image")
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def check_boxes(boxes: Any) -> np.ndarray:
    """Return ``boxes`` as float64 ``(N, 4)`` x1, y1, x2, y2 after checking them.

    Args:
        boxes: An array-like of shape ``(N, 4)``; an empty one (``[]``,
            shape ``(0,)`` or ``(0, 4)``) means no person.

    Returns:
        The boxes, float64 ``(N, 4)``.

    Raises:
        BoxError: Not numeric, not ``(N, 4)``, not finite, or a box with
            x2 <= x1 or y2 <= y1 (the message names its index and values).
    """
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BoxError(f"boxes could not be read as numbers ({error}); expected an (N, 4) array of "
                       "x1, y1, x2, y2") from None
    if array.size == 0 and array.ndim <= 2 and (array.ndim < 2 or array.shape[1] in (0, 4)):
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise BoxError(f"boxes have shape {array.shape}, expected (N, 4): x1, y1, x2, y2 in image pixels "
                       "(drop a score column with boxes[:, :4])")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise BoxError(f"box {index} is {array[index].tolist()}, expected finite x1, y1, x2, y2")
    empty = (array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1])
    if empty.any():
        index = int(np.flatnonzero(empty)[0])
        x1, y1, x2, y2 = array[index].tolist()
        raise BoxError(f"box {index} is [{x1}, {y1}, {x2}, {y2}]: width {x2 - x1} and height {y2 - y1}, "
                       "expected x2 > x1 and y2 > y1 (x1, y1, x2, y2, not x, y, w, h)")
    return array


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as MMPose does (``mmcv.imread(path, 'color')``): BGR uint8 ``(H, W, 3)``.

    Args:
        path: The image file.

    Returns:
        The decoded image.

    Raises:
        ImageReadError: The file does not exist, cannot be read, or OpenCV
            cannot decode it.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(f"cannot read image file {str(path)!r}: {error.strerror or error}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(f"cannot decode image file {str(path)!r} ({data.size} bytes): expected an image "
                             "format OpenCV reads (JPEG, PNG, BMP, TIFF, WebP, ...)")
    return image
