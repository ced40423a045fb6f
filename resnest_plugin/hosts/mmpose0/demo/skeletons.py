"""Draw predicted skeletons on an image with MMPose's own inference and visualiser.

Uses the public top-down API of MMPose 0.29 (``init_pose_model``,
``inference_top_down_pose_model``, ``vis_pose_result``) with person boxes
taken from a COCO detections file, exactly like MMPose's
``demo/top_down_img_demo.py`` does with ground-truth boxes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config_options import load_config

__all__ = ["detector_boxes", "draw_side_by_side", "draw_skeletons", "ground_truth_people"]


def detector_boxes(bbox_file: Path, ann_file: Path, image_name: str, *,
                   min_score: float = 0.0, max_boxes: Optional[int] = None) -> List[Dict]:
    """Return one image's person boxes from a COCO detections file.

    Args:
        bbox_file: Detections in COCO results format (``image_id``,
            ``category_id``, ``bbox`` = x, y, w, h, ``score``).
        ann_file: COCO annotations that map ``image_name`` to its id.
        image_name: The image's ``file_name`` in ``ann_file``.
        min_score: Keep boxes scoring at least this.
        max_boxes: Keep at most this many, highest score first.

    Returns:
        MMPose ``person_results``: ``[{'bbox': [x, y, w, h, score]}, ...]``.

    Raises:
        ValueError: If ``image_name`` is not in ``ann_file``.
    """
    with open(ann_file, encoding="utf-8") as handle:
        images = json.load(handle)["images"]
    ids = [img["id"] for img in images if img["file_name"] == image_name]
    if not ids:
        names = sorted(img["file_name"] for img in images)
        raise ValueError(f"image {image_name!r} is not in {ann_file}: expected one of {names}")
    with open(bbox_file, encoding="utf-8") as handle:
        detections = json.load(handle)
    boxes = [det for det in detections
             if det["image_id"] == ids[0] and det["category_id"] == 1 and det["score"] >= min_score]
    boxes.sort(key=lambda det: det["score"], reverse=True)
    if max_boxes is not None:
        boxes = boxes[:max_boxes]
    return [{"bbox": [*det["bbox"], det["score"]]} for det in boxes]


def draw_skeletons(config: Path, checkpoint: Optional[Path], image_file: Path,
                   person_results: List[Dict], out_file: Path, *, kpt_thr: float = 0.3,
                   device: str = "cpu", cfg_options: Sequence[str] = ()) -> Tuple[Path, List[Dict]]:
    """Predict keypoints in the given boxes and draw them with ``vis_pose_result``.

    Args:
        config: A top-down pose config (its ``custom_imports`` are honoured).
        checkpoint: Weights to load; ``None`` keeps the initialisation.
        image_file: The picture.
        person_results: Boxes as returned by :func:`detector_boxes` (x, y, w, h, score).
        out_file: Where to write the drawing (format from the suffix).
        kpt_thr: Keypoints scoring below this are not drawn.
        device: Torch device for inference.
        cfg_options: ``--cfg-options`` items the model was trained / tested
            with (e.g. a smaller ``data.test.data_cfg.image_size``).

    Returns:
        ``out_file`` and MMPose's pose results (one dict per person with
        ``bbox`` and ``keypoints``, a (17, 3) array of x, y, score).
    """
    from mmpose.apis import inference_top_down_pose_model, init_pose_model, vis_pose_result
    from mmpose.datasets import DatasetInfo

    cfg = load_config(config, cfg_options)
    model = init_pose_model(cfg, str(checkpoint) if checkpoint else None, device=device)
    dataset_info = DatasetInfo(model.cfg.data["test"]["dataset_info"])
    pose_results, _ = inference_top_down_pose_model(
        model, str(image_file), person_results, format="xywh", dataset_info=dataset_info)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    vis_pose_result(model, str(image_file), pose_results, dataset_info=dataset_info,
                    kpt_score_thr=kpt_thr, show=False, out_file=str(out_file))
    return out_file, pose_results


def ground_truth_people(ann_file: Path, image_name: str) -> List[Dict]:
    """Return one image's annotated people as MMPose pose results (box and keypoints).

    Only people with at least one labelled keypoint, as MMPose's COCO
    dataset trains on. Unlabelled keypoints get score 0 (not drawn).

    Args:
        ann_file: COCO keypoint annotations.
        image_name: The image's ``file_name`` in ``ann_file``.

    Returns:
        ``[{'bbox': [x, y, w, h, 1.0], 'keypoints': (17, 3) array}, ...]``.

    Raises:
        ValueError: If ``image_name`` is not in ``ann_file``.
    """
    import numpy as np

    with open(ann_file, encoding="utf-8") as handle:
        coco = json.load(handle)
    ids = [img["id"] for img in coco["images"] if img["file_name"] == image_name]
    if not ids:
        names = sorted(img["file_name"] for img in coco["images"])
        raise ValueError(f"image {image_name!r} is not in {ann_file}: expected one of {names}")
    people = []
    for ann in coco["annotations"]:
        if ann["image_id"] != ids[0] or ann.get("num_keypoints", 0) == 0:
            continue
        keypoints = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
        keypoints[:, 2] = (keypoints[:, 2] > 0).astype(np.float32)  # visibility 1/2 -> score 1
        people.append({"bbox": [*ann["bbox"], 1.0], "keypoints": keypoints})
    return people


def draw_side_by_side(config: Path, image_file: Path, ground_truth: List[Dict],
                      predictions: List[Dict], out_file: Path, *, kpt_thr: float = 0.3) -> Path:
    """Draw ground truth (left) and predictions (right) of the same people with MMPose's visualiser.

    Args:
        config: The pose config (for the skeleton and colours of its dataset).
        image_file: The picture.
        ground_truth: Output of :func:`ground_truth_people`.
        predictions: MMPose pose results for the same boxes (:func:`draw_skeletons`).
        out_file: Where to write the picture.
        kpt_thr: Predicted keypoints scoring below this are not drawn.

    Returns:
        ``out_file``.
    """
    import cv2
    import numpy as np
    from mmpose.apis import init_pose_model, vis_pose_result
    from mmpose.datasets import DatasetInfo

    model = init_pose_model(load_config(config), None, device="cpu")
    dataset_info = DatasetInfo(model.cfg.data["test"]["dataset_info"])
    # vis_pose_result draws boxes as x1, y1, x2, y2 (inference_top_down_pose_model
    # returns them so); the annotations' boxes are x, y, w, h.
    ground_truth = [{**person, "bbox": [person["bbox"][0], person["bbox"][1],
                                        person["bbox"][0] + person["bbox"][2],
                                        person["bbox"][1] + person["bbox"][3], 1.0]}
                    for person in ground_truth]
    panels = []
    for label, people, threshold in (("ground truth", ground_truth, 0.5),
                                     ("prediction", predictions, kpt_thr)):
        panel = vis_pose_result(model, str(image_file), people, dataset_info=dataset_info,
                                kpt_score_thr=threshold, show=False)
        cv2.putText(panel, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 4)
        cv2.putText(panel, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
        panels.append(panel)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_file), np.concatenate(panels, axis=1))
    return out_file
