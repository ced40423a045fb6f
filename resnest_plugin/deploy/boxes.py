"""Box -> centre/scale, the crop's affine matrix and its inverse, as each MMPose generation computes them.

Provenance: the arithmetic follows MMPose's own functions, expression for
expression and dtype for dtype (numpy 1.x promotion, which both MMPose stacks
run on), so the crops and the image-pixel keypoints equal MMPose's bit for bit
(``tests/test_deploy_runtime.py`` compares them with the installed MMPose):

* MMPose 0.29 (``Mmpose0Geometry``): ``mmpose/core/bbox/transforms.py``
  ``bbox_xywh2cs`` (called by ``TopDownGetBboxCenterScale``; the scale is in
  units of ``pixel_std = 200`` px), ``core/post_processing/post_transforms.py``
  ``get_affine_transform`` (called by ``TopDownAffine``) and
  ``transform_preds`` (called by ``keypoints_from_heatmaps`` on heatmap
  coordinates);
* MMPose 1.3 (``Mmpose1Geometry``): ``mmpose/structures/bbox/transforms.py``
  ``bbox_xyxy2cs`` and ``get_warp_matrix``,
  ``datasets/transforms/topdown_transforms.py``
  ``TopdownAffine._fix_aspect_ratio`` (scale in pixels), and
  ``models/pose_estimators/topdown.py`` ``add_pred_to_datasample``
  (``keypoints / input_size * scale + centre - 0.5 * scale``).

Where numpy 1.x would promote a float32 scalar to float64 and numpy 2 would
not, the code says which dtype it wants, so numpy 2 gives the same numbers.
The two generations differ only in the last float32 bit.

Standard library, numpy and OpenCV only.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["Geometry", "Mmpose0Geometry", "Mmpose1Geometry", "geometry_for", "mmpose0_gt_box", "mmpose1_gt_box",
           "warp_crops"]

#: MMPose 0.x normalises box sizes by this "pixel std" (``TopDownGetBboxCenterScale.pixel_std``).
PIXEL_STD = 200.0


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # _get_3rd_point of both generations: rotate a - b by 90 degrees about b (float32 in, float32 out).
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def _three_point_matrix(center: np.ndarray, src_dir: np.ndarray, dst_dir: np.ndarray,
                        output_size: Tuple[int, int]) -> np.ndarray:
    # Both generations: the centre, the centre plus a direction (float64 sum, stored as float32), the
    # third point at 90 degrees, mapped to the output's centre and matching points; cv2.getAffineTransform.
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = np.asarray(center, dtype=np.float64) + src_dir
    src[2, :] = _third_point(src[0, :], src[1, :])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    dst[2, :] = _third_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(src, dst)


class Geometry:
    """One generation's box, crop and inverse-transform arithmetic for a ``W x H`` input.

    Args:
        input_size: ``(W, H)`` of the crop.
        heatmap_size: ``(w, h)`` of the network's heatmaps.
        padding: Box padding (1.25).
    """

    name = ""

    def __init__(self, input_size: Tuple[int, int], heatmap_size: Tuple[int, int], padding: float) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.padding = float(padding)

    def center_scale(self, boxes_xyxy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Centres and scales of ``(N, 4)`` x1, y1, x2, y2 boxes (float32 ``(N, 2)`` each)."""
        raise NotImplementedError

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """The ``2 x 3`` image -> crop matrix of one box (rotation 0)."""
        raise NotImplementedError

    def to_image(self, crop_xy: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Map one person's ``(K, 2)`` crop-pixel keypoints to image pixels (float32)."""
        raise NotImplementedError


class Mmpose0Geometry(Geometry):
    """MMPose 0.29's arithmetic; ``scale`` is in units of 200 px (``pixel_std``)."""

    name = "mmpose0"

    def center_scale_xywh(self, box: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
        """``bbox_xywh2cs`` of one x, y, w, h box, the form MMPose 0.x's datasets store.

        Args:
            box: x, y, w, h as Python floats (MMPose 0.x passes the JSON values).

        Returns:
            ``center`` and ``scale``, float32 ``(2,)`` each.
        """
        x, y, w, h = (float(v) for v in box[:4])
        # float64 arithmetic on Python floats, then float32: bbox_xywh2cs.
        aspect_ratio = self.input_size[0] / self.input_size[1]
        center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
        if w > aspect_ratio * h:
            h = w * 1.0 / aspect_ratio
        elif w < aspect_ratio * h:
            w = h * aspect_ratio
        scale = np.array([w, h], dtype=np.float32) / np.float32(PIXEL_STD)
        return center, scale * np.float32(self.padding)

    def center_scale(self, boxes_xyxy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Centres and scales of ``(N, 4)`` x1, y1, x2, y2 boxes (x, y, w = x2 - x1, h = y2 - y1 first)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
        pairs = [self.center_scale_xywh((x1, y1, x2 - x1, y2 - y1)) for x1, y1, x2, y2 in boxes.tolist()]
        return _stack(pairs)

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``get_affine_transform(center, scale, rot=0, image_size)`` of MMPose 0.29."""
        scale_tmp = np.asarray(scale, dtype=np.float32) * np.float32(PIXEL_STD)
        # rotate_point([0, -w/2], 0): the first direction points up the image (0.x's choice).
        return _three_point_matrix(center, np.array([0.0, float(scale_tmp[0]) * -0.5]),
                                   np.array([0.0, self.input_size[0] * -0.5]), self.input_size)

    def to_image(self, crop_xy: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``transform_preds`` of MMPose 0.29, on the heatmap coordinates the crop pixels come from.

        The graph gives heatmap coordinates times ``input_size / heatmap_size``
        (4 in every MMPose config: a power of two, so dividing back is exact).
        """
        ratio = np.float32(self.input_size[0] / self.heatmap_size[0]), np.float32(
            self.input_size[1] / self.heatmap_size[1])
        coords = np.asarray(crop_xy, dtype=np.float32)
        scale200 = np.asarray(scale, dtype=np.float32) * np.float32(PIXEL_STD)
        out = np.empty_like(coords)
        for axis in (0, 1):
            # scale_x = scale[0] / W is float64 in numpy 1.x, then cast to float32 by the array op.
            factor = np.float32(float(scale200[axis]) / self.heatmap_size[axis])
            heat = coords[:, axis] / ratio[axis]
            out[:, axis] = heat * factor + np.float32(center[axis]) - np.float32(float(scale200[axis]) * 0.5)
        return out


class Mmpose1Geometry(Geometry):
    """MMPose 1.3's arithmetic; ``scale`` is the padded, aspect-fixed box size in pixels."""

    name = "mmpose1"

    def center_scale(self, boxes_xyxy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``bbox_xyxy2cs`` then ``TopdownAffine._fix_aspect_ratio``, on float32 boxes (MMPose 1.x's dtype)."""
        bbox = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scale = (bbox[..., 2:] - bbox[..., :2]) * np.float32(self.padding)
        center = (bbox[..., 2:] + bbox[..., :2]) * np.float32(0.5)
        aspect_ratio = np.float32(self.input_size[0] / self.input_size[1])
        w, h = np.hsplit(scale, [1])
        scale = np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))
        return center, scale

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``get_warp_matrix(center, scale, rot=0, output_size=input_size)`` of MMPose 1.3."""
        # _rotate_point([-w/2, 0], 0): the first direction points left (1.x's choice).
        return _three_point_matrix(center, np.array([float(scale[0]) * -0.5, 0.0]),
                                   np.array([self.input_size[0] * -0.5, 0.0]), self.input_size)

    def to_image(self, crop_xy: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``keypoints / input_size * scale + centre - 0.5 * scale`` (float64, stored as float32)."""
        coords = np.asarray(crop_xy, dtype=np.float32).astype(np.float64)
        scale32 = np.asarray(scale, dtype=np.float32)
        image_xy = (coords / np.array(self.input_size, dtype=np.float64) * scale32.astype(np.float64)
                    + np.asarray(center, dtype=np.float32).astype(np.float64)
                    - (np.float32(0.5) * scale32).astype(np.float64))
        return image_xy.astype(np.float32)


def _stack(pairs: List[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    centers = np.array([c for c, _ in pairs], dtype=np.float32).reshape(-1, 2)
    scales = np.array([s for _, s in pairs], dtype=np.float32).reshape(-1, 2)
    return centers, scales


def geometry_for(generation: str, input_size: Tuple[int, int], heatmap_size: Tuple[int, int],
                 padding: float) -> Geometry:
    """The geometry of ``generation`` (``"mmpose0"`` or ``"mmpose1"``).

    Args:
        generation: Which MMPose built the export (:attr:`.metadata.ExportInfo.generation`).
        input_size: ``(W, H)`` of the crop.
        heatmap_size: ``(w, h)`` of the heatmaps.
        padding: Box padding.

    Returns:
        A :class:`Mmpose0Geometry` or :class:`Mmpose1Geometry`.
    """
    classes = {"mmpose0": Mmpose0Geometry, "mmpose1": Mmpose1Geometry}
    if generation not in classes:
        raise ValueError(f"generation is {generation!r}, expected one of {sorted(classes)}")
    return classes[generation](input_size, heatmap_size, padding)


def warp_crops(image: np.ndarray, geometry: Geometry, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Cut the ``(N, H, W, 3)`` uint8 crops as ``TopDownAffine`` / ``TopdownAffine`` do.

    ``cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR)`` with OpenCV's
    default constant border of 0, so a box reaching past the image edge gets
    black padding, as in MMPose (neither generation clips detector boxes).

    Args:
        image: ``(H_img, W_img, 3)`` uint8 image.
        geometry: The export's geometry.
        centers: ``(N, 2)`` float32 centres.
        scales: ``(N, 2)`` float32 scales.

    Returns:
        The crops, uint8 ``(N, H, W, 3)``.
    """
    width, height = geometry.input_size
    crops = np.empty((len(centers), height, width, 3), dtype=np.uint8)
    for index, (center, scale) in enumerate(zip(centers, scales)):
        matrix = geometry.warp_matrix(center, scale)
        crops[index] = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)
    return crops


def mmpose0_gt_box(bbox: Sequence[float], width: int, height: int) -> List[float]:
    """MMPose 0.29's ``clean_bbox`` of a COCO ground-truth box, or ``[]`` when it is dropped.

    ``TopDownCocoDataset._load_coco_keypoint_annotation_kernel``: clamp x1, y1
    at 0, x2 = min(width - 1, x1 + max(0, w)) (x1 already clamped), the same
    for y, and keep the box only when x2 > x1 and y2 > y1.

    Args:
        bbox: The annotation's x, y, w, h.
        width: Image width.
        height: Image height.

    Returns:
        ``[x1, y1, x2 - x1, y2 - y1]`` (x, y, w, h), or ``[]``.
    """
    x, y, w, h = bbox[:4]
    x1 = max(0, x)
    y1 = max(0, y)
    x2 = min(width - 1, x1 + max(0, w))
    y2 = min(height - 1, y1 + max(0, h))
    if x2 > x1 and y2 > y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return []


def mmpose1_gt_box(bbox: Sequence[float], width: int, height: int) -> np.ndarray:
    """MMPose 1.3's x1, y1, x2, y2 float32 box of a COCO ground-truth box.

    ``BaseCocoStyleDataset.parse_data_info``: each corner clipped to
    ``[0, size - 1]`` (x + w, not the clipped x1 + w), then float32.

    Args:
        bbox: The annotation's x, y, w, h.
        width: Image width.
        height: Image height.

    Returns:
        float32 ``(4,)`` x1, y1, x2, y2 (may be empty-sized: the caller drops w or h <= 0).
    """
    x, y, w, h = bbox[:4]
    corners = [np.clip(x, 0, width - 1), np.clip(y, 0, height - 1),
               np.clip(x + w, 0, width - 1), np.clip(y + h, 0, height - 1)]
    return np.array(corners, dtype=np.float32)
