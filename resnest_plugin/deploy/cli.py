"""``python -m resnest_plugin.deploy``: ``infer`` and ``evaluate`` an export, or ``export`` one.

``infer`` and ``evaluate`` need numpy, OpenCV and onnxruntime (``evaluate``
also xtcocotools). ``export`` is handed to :func:`resnest_plugin.deploy.export.main`,
imported only then (it needs torch and an MMPose venv).

Boxes file of ``infer`` (JSON, one image): a list of ``[x1, y1, x2, y2]``, or
of objects ``{"bbox": [x1, y1, x2, y2], ...}`` (other keys ignored), in image
pixels. A COCO detection results file (``bbox`` x, y, w, h with ``image_id``)
is refused: it is ``evaluate --boxes``' input.

Exit status: 0 done, 2 a bad input (the one-line message names it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

import cv2
import numpy as np

from .errors import BoxError, DeployError, ImageReadError

__all__ = ["main", "read_boxes"]


def read_boxes(path: Path) -> np.ndarray:
    """Read an ``infer`` boxes file (see the module docstring).

    Args:
        path: The JSON file.

    Returns:
        float64 ``(N, 4)`` x1, y1, x2, y2 (checked later by the estimator).

    Raises:
        BoxError: Unreadable, not JSON, not a list, or a COCO detection results file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BoxError(f"cannot read boxes file {str(path)!r}: {error}") from None
    if not isinstance(data, list):
        raise BoxError(f"boxes file {str(path)!r} holds a {type(data).__name__}, expected a list of "
                       "[x1, y1, x2, y2] or of {\"bbox\": [x1, y1, x2, y2]}")
    rows: List[Any] = []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            if "image_id" in item or "category_id" in item:
                raise BoxError(f"boxes file {str(path)!r} item {index} has image_id/category_id: a COCO detection "
                               "results file (bbox x, y, w, h); give it to `evaluate --boxes`, or write "
                               "[x, y, x + w, y + h] boxes of one image for `infer`")
            if "bbox" not in item:
                raise BoxError(f"boxes file {str(path)!r} item {index} is {item!r}, expected "
                               "{\"bbox\": [x1, y1, x2, y2]}")
            item = item["bbox"]
        rows.append(item)
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 4) if rows else np.zeros((0, 4))
    except (TypeError, ValueError):
        raise BoxError(f"boxes file {str(path)!r}: {rows!r} is not a list of [x1, y1, x2, y2]") from None


def _batch_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resnest_plugin.deploy",
        description="Run or evaluate a pose model exported by resnest_plugin (numpy + OpenCV + onnxruntime).",
        epilog="`python -m resnest_plugin.deploy export --help`: export a trained model (needs torch and MMPose).")
    commands = parser.add_subparsers(dest="command", required=True)
    infer = commands.add_parser("infer", help="keypoints of the persons in the boxes of one image")
    infer.add_argument("model", type=Path, help="the exported .onnx file")
    infer.add_argument("image", type=Path, help="the image file")
    infer.add_argument("--boxes", type=Path, required=True,
                       help='JSON: [[x1, y1, x2, y2], ...] or [{"bbox": [x1, y1, x2, y2]}, ...]')
    infer.add_argument("--json", type=Path, help="write the keypoints here (default: print them)")
    infer.add_argument("--out", type=Path, help="write the image with the skeletons drawn here")
    infer.add_argument("--score-thr", type=float, default=0.3, help="lowest keypoint score drawn (default 0.3)")
    infer.add_argument("--batch-size", type=_batch_size, default=16, help="most crops per network run (default 16)")
    evaluate = commands.add_parser("evaluate", help="COCO keypoint AP, computed as MMPose's tools/test.py")
    evaluate.add_argument("model", type=Path, help="the exported .onnx file")
    evaluate.add_argument("--ann", type=Path, required=True, help="COCO keypoint annotations (JSON)")
    evaluate.add_argument("--images", type=Path, required=True, help="folder of the annotation file's images")
    evaluate.add_argument("--boxes", type=Path,
                          help="COCO person detection results (bbox x, y, w, h, score); default: ground-truth boxes")
    evaluate.add_argument("--json", type=Path, help="write the metrics and the kept results here")
    evaluate.add_argument("--batch-size", type=_batch_size, default=16, help="most crops per network run (default 16)")
    return parser


def _infer(args: argparse.Namespace) -> int:
    from .inputs import read_image
    from .runtime import PoseEstimator

    estimator = PoseEstimator(args.model, max_batch_size=args.batch_size)
    image = read_image(args.image)
    boxes = read_boxes(args.boxes)
    keypoints, scores = estimator(image, boxes)
    report = {"model": str(args.model), "image": str(args.image),
              "keypoint_names": list(estimator.info.keypoint_names),
              "persons": [{"bbox": box.tolist(), "keypoints": kps.tolist(), "keypoint_scores": kscores.tolist()}
                          for box, kps, kscores in zip(boxes, keypoints, scores)]}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    elif not args.out:
        print(text)
    if args.out:
        from .drawing import draw_poses

        drawn = draw_poses(image, keypoints, scores, estimator.info.skeleton, boxes, args.score_thr)
        if not cv2.imwrite(str(args.out), drawn):
            raise ImageReadError(f"cannot write {str(args.out)!r}: expected a writable path ending in an image "
                                 "extension OpenCV knows (.png, .jpg)")
    print(f"{len(boxes)} person(s), {estimator.num_keypoints} keypoints each"
          + (f"; drawn to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_coco
    from .runtime import PoseEstimator

    estimator = PoseEstimator(args.model, max_batch_size=args.batch_size)
    result = evaluate_coco(estimator, args.ann, args.images, args.boxes)
    boxes = f"detections of {args.boxes}" if args.boxes else "ground-truth boxes"
    print(f"{args.model}: {len(result.persons)} person(s), {boxes}, MMPose {estimator.geometry.name[-1]}.x rules")
    for name, value in result.stats.items():
        print(f"{name:8s} {value:.4f}")
    if args.json:
        payload = {"stats": result.stats, "results": result.results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        from .export import main as export_main

        return export_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _infer(args) if args.command == "infer" else _evaluate(args)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
