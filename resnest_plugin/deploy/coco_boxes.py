"""Which persons MMPose's COCO top-down test evaluates, with their boxes, centres, scales and scores.

Provenance, per generation (the export's ``decode`` field says which):

* ground-truth boxes, MMPose 0.29: ``TopDownCocoDataset._load_coco_keypoint_annotation_kernel``
  (non-crowd annotations, ``clean_bbox``, at least one labelled keypoint;
  ``bbox_id`` counts from 0 in each image, ``bbox_score`` 1);
* ground-truth boxes, MMPose 1.3: ``BaseCocoStyleDataset.parse_data_info``
  (corners clipped to ``[0, size - 1]``, float32) and ``_is_valid_instance``
  (not crowd, ``num_keypoints`` > 0, width and height > 0, a positive keypoint
  coordinate); the sort key is the annotation id;
* detector boxes: 0.29 ``_load_coco_person_detection_results`` (category 1,
  ``det_bbox_thr = 0.0``, the JSON x, y, w, h as they are) and 1.3
  ``_load_detection_results`` (category 1, x, y, w, h as float32, then
  x2 = x + w in float32); the sort key counts the kept detections.

The centre/scale arithmetic is :mod:`.boxes`'; the box score and the area
(used by OKS-NMS) are float32 as in each generation's ``decode`` /
``CocoMetric.process``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .boxes import Geometry, Mmpose0Geometry, mmpose0_gt_box, mmpose1_gt_box

__all__ = ["Person", "detection_persons", "ground_truth_persons"]


@dataclass
class Person:
    """One box MMPose's test runs the model on.

    Attributes:
        image_id: COCO image id.
        key: The sort/dedup key of MMPose's evaluation (``bbox_id`` in 0.x, ``id`` in 1.x).
        center: float32 ``(2,)``.
        scale: float32 ``(2,)`` in the geometry's unit.
        box_score: float32 box score (1 for ground-truth boxes).
        area: float32 area used by OKS-NMS (0.x: ``prod(scale * 200)``, 1.x: ``prod(scale)``).
        bbox_xywh: 1.x only: the float32 x, y, w, h that MMPose 1.x writes into its results.
    """

    image_id: int
    key: int
    center: np.ndarray
    scale: np.ndarray
    box_score: np.float32
    area: np.float32
    bbox_xywh: Optional[List[float]] = None


def _person0(geometry: Mmpose0Geometry, image_id: int, key: int, xywh: Sequence[float], score: Any) -> Person:
    center, scale = geometry.center_scale_xywh(xywh)
    # decode(): all_boxes[:, 4] = np.prod(s * 200.0, axis=1) and all_boxes[:, 5] = score, both float32.
    area = np.prod(scale[None] * np.float32(200.0), axis=1)[0]
    return Person(image_id, key, center, scale, np.float32(float(score)), np.float32(area))


def _person1(geometry: Geometry, image_id: int, key: int, xyxy: np.ndarray, score: Any) -> Person:
    centers, scales = geometry.center_scale(xyxy.reshape(1, 4))
    xywh = xyxy.astype(np.float32).copy()
    xywh[2:] = xywh[2:] - xywh[:2]  # bbox_xyxy2xywh, float32
    return Person(image_id, key, centers[0], scales[0], np.float32(score), np.prod(scales, axis=1)[0],
                  xywh.tolist())


def _gt0(coco: Any, geometry: Mmpose0Geometry) -> List[Person]:
    persons = []
    for image_id in coco.getImgIds():
        image = coco.loadImgs(image_id)[0]
        boxes = []
        for obj in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            box = mmpose0_gt_box(obj["bbox"], image["width"], image["height"]) if "bbox" in obj else []
            if box and ("area" not in obj or obj["area"] > 0):
                boxes.append((obj, box))
        bbox_id = 0
        for obj, box in boxes:
            if ("keypoints" not in obj or max(obj["keypoints"]) == 0
                    or ("num_keypoints" in obj and obj["num_keypoints"] == 0)):
                continue
            persons.append(_person0(geometry, image_id, bbox_id, box, 1))
            bbox_id += 1
    return persons


def _gt1(coco: Any, geometry: Geometry) -> List[Person]:
    persons = []
    for image_id in coco.getImgIds():
        image = coco.loadImgs(image_id)[0]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            if "bbox" not in ann or "keypoints" not in ann or ann.get("iscrowd", 0):
                continue
            box = mmpose1_gt_box(ann["bbox"], image["width"], image["height"])
            keypoints = np.array(ann["keypoints"], dtype=np.float32).reshape(-1, 3)[:, :2]
            labelled = ann["num_keypoints"] if "num_keypoints" in ann else np.count_nonzero(keypoints.max(axis=1))
            width, height = box[2:4] - box[:2]
            if labelled == 0 or width <= 0 or height <= 0 or np.max(keypoints) <= 0:
                continue
            persons.append(_person1(geometry, image_id, ann["id"], box, 1.0))
    return persons


def ground_truth_persons(coco: Any, geometry: Geometry) -> List[Person]:
    """The persons of MMPose's test with ground-truth boxes, in its order.

    Args:
        coco: The annotations, an ``xtcocotools.coco.COCO``.
        geometry: The export's geometry (its class picks the generation's rules).

    Returns:
        One :class:`Person` per evaluated annotation.
    """
    if isinstance(geometry, Mmpose0Geometry):
        return _gt0(coco, geometry)
    return _gt1(coco, geometry)


def detection_persons(detections: Sequence[Mapping[str, Any]], geometry: Geometry,
                      known_images: Dict[int, Any]) -> List[Person]:
    """The persons of MMPose's test with detector boxes (a COCO detection results list), in its order.

    Args:
        detections: Dicts with ``image_id``, ``category_id``, ``bbox`` (x, y, w, h) and ``score``.
        geometry: The export's geometry.
        known_images: The annotation file's images by id (a detection of another image is an error).

    Returns:
        One :class:`Person` per kept detection (category 1, score >= 0).

    Raises:
        KeyError: A detection names an image the annotation file does not have.
    """
    persons = []
    for det in detections:
        if det["category_id"] != 1:
            continue
        if det["image_id"] not in known_images:
            raise KeyError(f"detection of image_id {det['image_id']!r} (bbox {det['bbox']}): no such image in the "
                           "annotation file")
        if isinstance(geometry, Mmpose0Geometry):
            if det["score"] < 0.0:  # det_bbox_thr = 0.0 in every MMPose 0.x COCO config
                continue
            persons.append(_person0(geometry, det["image_id"], len(persons), det["bbox"][:4], det["score"]))
        else:
            xywh = np.array(det["bbox"][:4], dtype=np.float32)
            xyxy = np.concatenate([xywh[:2], xywh[2:] + xywh[:2]])  # bbox_xywh2xyxy in float32
            persons.append(_person1(geometry, det["image_id"], len(persons), xyxy, det["score"]))
    return persons
