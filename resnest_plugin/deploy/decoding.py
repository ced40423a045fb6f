"""Heatmaps -> crop-pixel keypoints in numpy, for exports of the ``"heatmaps"`` variant.

Provenance: MMPose's default (non-unbiased) decoding, the rule that the
``"keypoints"`` variant runs inside its graph:

* ``"mmpose0"``: MMPose 0.29 ``core/evaluation/top_down_eval.py``
  ``_get_max_preds`` (arg-max, -1 for a non-positive maximum) and ``keypoints_from_heatmaps(post_process='default')``: a
  quarter-pixel step toward the larger neighbour when ``1 < x < w - 1`` and
  ``1 < y < h - 1``;
* ``"mmpose1"``: MMPose 1.3 ``codecs/utils/post_processing.py``
  ``get_heatmap_maximum`` (-1 for a non-positive maximum) and
  ``codecs/utils/refinement.py`` ``refine_keypoints``: each axis on its own
  condition (x when ``1 < x < w - 1`` and ``0 < y < h``, y when
  ``1 < y < h - 1`` and ``0 < x < w``).

Both then scale heatmap coordinates to crop pixels by
``float32(input_size / heatmap_size)`` (``MSRAHeatmap.scale_factor``).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["decode_heatmaps"]


def _maximum(heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = np.argmax(flat, axis=2)
    values = np.amax(flat, axis=2)
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float32)
    coords[values <= 0.0] = -1
    return coords, values


def _step(heatmap: np.ndarray, x: int, y: int, generation: str) -> Tuple[float, float]:
    h, w = heatmap.shape
    if generation == "mmpose0":
        if 1 < x < w - 1 and 1 < y < h - 1:
            return heatmap[y, x + 1] - heatmap[y, x - 1], heatmap[y + 1, x] - heatmap[y - 1, x]
        return 0.0, 0.0
    dx = heatmap[y, x + 1] - heatmap[y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
    dy = heatmap[y + 1, x] - heatmap[y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
    return dx, dy


def decode_heatmaps(heatmaps: np.ndarray, generation: str,
                    input_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Decode ``(N, K, h, w)`` heatmaps as MMPose's default decoding does.

    Args:
        heatmaps: float32 heatmaps (after the flip test, when the export has one).
        generation: ``"mmpose0"`` or ``"mmpose1"``: whose boundary rule to apply.
        input_size: ``(W, H)`` of the crop.

    Returns:
        Keypoints in crop pixels, float32 ``(N, K, 2)``, and the heatmap maxima
        as scores, float32 ``(N, K)``.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    coords, values = _maximum(heatmaps)
    for n, k in np.ndindex(*coords.shape[:2]):
        x, y = (int(v) for v in coords[n, k])
        dx, dy = _step(heatmaps[n, k], x, y, generation)
        coords[n, k] += np.sign(np.array([dx, dy], dtype=np.float32)) * np.float32(0.25)
    h, w = heatmaps.shape[2:]
    factor = np.array([input_size[0] / w, input_size[1] / h], dtype=np.float32)
    return coords * factor, values.astype(np.float32)
