"""Draw the estimated skeletons on a copy of the image (OpenCV only)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["draw_poses"]

_BOX_COLOR = (0, 255, 0)
_LIMB_COLOR = (255, 128, 0)
_POINT_COLOR = (0, 0, 255)


def draw_poses(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
               skeleton: Sequence[Tuple[int, int]], boxes: Optional[np.ndarray] = None,
               score_thr: float = 0.3) -> np.ndarray:
    """Draw boxes, limbs and keypoints; points (and limbs touching them) at or below ``score_thr`` are left out.

    Args:
        image: uint8 ``(H, W, 3)`` BGR image (not modified).
        keypoints: ``(N, K, 2)`` x, y in image pixels.
        scores: ``(N, K)`` keypoint scores.
        skeleton: ``[i, j]`` keypoint index pairs (the metadata's ``skeleton``).
        boxes: Optional ``(N, 4)`` x1, y1, x2, y2 boxes to draw too.
        score_thr: Lowest score drawn (exclusive).

    Returns:
        The drawn copy.
    """
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box in [] if boxes is None else boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX_COLOR, thickness)
    for person, person_scores in zip(keypoints, scores):
        points = [(int(round(x)), int(round(y))) for x, y in person]
        for i, j in skeleton:
            if person_scores[i] > score_thr and person_scores[j] > score_thr:
                cv2.line(canvas, points[i], points[j], _LIMB_COLOR, thickness, cv2.LINE_AA)
        for point, score in zip(points, person_scores):
            if score > score_thr:
                cv2.circle(canvas, point, thickness + 2, _POINT_COLOR, -1, cv2.LINE_AA)
    return canvas
