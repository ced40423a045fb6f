"""Draw predicted skeletons on an image with MMPose's own inference and visualiser.

Uses the public top-down API of MMPose 0.29 (``init_pose_model``,
``inference_top_down_pose_model``, ``vis_pose_result``) with person boxes
taken from a COCO detections file, exactly like MMPose's
``demo/top_down_img_demo.py`` does with ground-truth boxes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["detector_boxes", "draw_skeletons"]


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
                   device: str = "cpu") -> Tuple[Path, List[Dict]]:
    """Predict keypoints in the given boxes and draw them with ``vis_pose_result``.

    Args:
        config: A top-down pose config (its ``custom_imports`` are honoured).
        checkpoint: Weights to load; ``None`` keeps the initialisation.
        image_file: The picture.
        person_results: Boxes as returned by :func:`detector_boxes` (x, y, w, h, score).
        out_file: Where to write the drawing (format from the suffix).
        kpt_thr: Keypoints scoring below this are not drawn.
        device: Torch device for inference.

    Returns:
        ``out_file`` and MMPose's pose results (one dict per person with
        ``bbox`` and ``keypoints``, a (17, 3) array of x, y, score).
    """
    from mmcv import Config
    from mmpose.apis import inference_top_down_pose_model, init_pose_model, vis_pose_result
    from mmpose.datasets import DatasetInfo

    cfg = Config.fromfile(str(config))
    model = init_pose_model(cfg, str(checkpoint) if checkpoint else None, device=device)
    dataset_info = DatasetInfo(model.cfg.data["test"]["dataset_info"])
    pose_results, _ = inference_top_down_pose_model(
        model, str(image_file), person_results, format="xywh", dataset_info=dataset_info)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    vis_pose_result(model, str(image_file), pose_results, dataset_info=dataset_info,
                    kpt_score_thr=kpt_thr, show=False, out_file=str(out_file))
    return out_file, pose_results
