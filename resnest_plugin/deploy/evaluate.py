"""COCO keypoint AP of an export, computed as MMPose's stock ``tools/test.py`` computes it.

Provenance: MMPose 0.29 ``TopDownCocoDataset.evaluate`` and MMPose 1.3
``CocoMetric.compute_metrics`` (defaults of both COCO configs): the persons
and boxes of :mod:`.coco_boxes`; rescoring, box score times the mean of the
keypoint scores above ``vis_thr = 0.2``; per image, MMPose's ``oks_nms``
(threshold 0.9, the metadata's COCO sigmas: float64 in 0.x's
``DatasetInfo``, float32 in 1.x's ``parse_pose_metainfo``); the results list
MMPose writes (0.x: ``center``/``scale``; 1.x: ``bbox``, which makes
xtcocotools' ``loadRes`` take the box area as the detection's area); then
xtcocotools' ``COCOeval(gt, dt, 'keypoints', sigmas, use_area=True)``.

Imports xtcocotools lazily: it is needed only here (an MMPose venv has it;
``pip install xtcocotools`` elsewhere).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .boxes import Geometry
from .coco_boxes import Person, detection_persons, ground_truth_persons
from .errors import DeployError, MissingDependencyError
from .inputs import read_image
from .runtime import PoseEstimator

__all__ = ["STATS_NAMES", "EvaluationResult", "coco_persons", "coco_stats", "evaluate_coco", "generation_sigmas",
           "kept_results", "load_coco", "oks_nms", "predict_persons", "rescore"]

#: xtcocotools' ``COCOeval.stats`` in order, named as MMPose names them.
STATS_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
#: MMPose's COCO defaults: ``vis_thr`` / ``keypoint_score_thr`` and ``oks_thr`` / ``nms_thr``.
VIS_THR = 0.2
OKS_THR = 0.9


@dataclass
class EvaluationResult:
    """What :func:`evaluate_coco` computed.

    Attributes:
        persons: Every evaluated person before rescoring and NMS, in MMPose's
            order: ``image_id``, ``key`` (0.x ``bbox_id``, 1.x ``id``),
            ``center``, ``scale``, ``box_score``, ``keypoints`` (``K x 3``
            list: x, y in image pixels, score).
        results: The COCO results list after rescoring and OKS-NMS, the dicts
            MMPose writes to its keypoint results JSON.
        stats: The ten COCO keypoint metrics (:data:`STATS_NAMES` -> value).
        summary: xtcocotools' printed summary.
    """

    persons: List[Dict[str, Any]]
    results: List[Dict[str, Any]]
    stats: Dict[str, float]
    summary: str


def _xtcocotools() -> Tuple[Any, Any]:
    try:
        from xtcocotools.coco import COCO
        from xtcocotools.cocoeval import COCOeval
    except ImportError as error:
        raise MissingDependencyError(
            f"`evaluate` needs xtcocotools, which is not importable here ({error}): run it in an MMPose venv, "
            "or `pip install xtcocotools` (its wheels need numpy < 2 on Python 3.11)") from None
    return COCO, COCOeval


def rescore(keypoint_scores: np.ndarray, box_score: np.float32, vis_thr: float = VIS_THR) -> np.floating:
    """Box score times the mean of the keypoint scores above ``vis_thr`` (0 when none is).

    Written as MMPose writes it (a sum started from the int 0, numpy scalars),
    so numpy's promotion rules apply as they do to MMPose in the same
    environment: numpy 1 accumulates in float64, numpy 2 in float32.

    Args:
        keypoint_scores: float32 ``(K,)``.
        box_score: float32 box score.
        vis_thr: Keypoint score threshold.

    Returns:
        The person's score (a numpy scalar).
    """
    mean_kpt_score = 0
    valid_num = 0
    for kpt_score in keypoint_scores:
        if kpt_score > vis_thr:
            mean_kpt_score += kpt_score
            valid_num += 1
    if valid_num != 0:
        mean_kpt_score /= valid_num
    return box_score * mean_kpt_score


def _oks(g: np.ndarray, d: np.ndarray, a_g: np.float32, a_d: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    # MMPose's oks_iou (vis_thr None), expression for expression, so that numpy 1 and 2 each promote
    # as they do for MMPose (numpy 1 casts the float64 denominator to the array's float32, numpy 2 not).
    variances = (sigmas * 2) ** 2
    xg, yg = g[0::3], g[1::3]
    ious = np.zeros(len(d), dtype=np.float32)
    for n_d in range(0, len(d)):
        dx = d[n_d, 0::3] - xg
        dy = d[n_d, 1::3] - yg
        e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
        ious[n_d] = np.sum(np.exp(-e)) / len(e) if len(e) != 0 else 0.0
    return ious


def oks_nms(persons: Sequence[Dict[str, Any]], thr: float, sigmas: np.ndarray) -> List[int]:
    """MMPose's ``oks_nms``: indices of the persons kept, highest score first.

    Args:
        persons: Dicts with ``keypoints`` (float32 ``K x 3``), ``score`` and ``area``.
        thr: Drop a person whose OKS with a kept one is above ``thr``.
        sigmas: The OKS sigmas (their dtype is the generation's).

    Returns:
        The kept indices.
    """
    if len(persons) == 0:
        return []
    scores = np.array([p["score"] for p in persons])
    keypoints = np.array([p["keypoints"].flatten() for p in persons])
    areas = np.array([p["area"] for p in persons])
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(int(i))
        overlap = _oks(keypoints[i], keypoints[order[1:]], areas[i], areas[order[1:]], sigmas)
        order = order[np.where(overlap <= thr)[0] + 1]
    return keep


def predict_persons(estimator: PoseEstimator, persons: Sequence[Person],
                    files: Dict[int, Path]) -> List[np.ndarray]:
    """Run the export on every person; each image is read once (as MMPose reads it).

    Args:
        estimator: The export.
        persons: From :func:`coco_persons`.
        files: Image id -> image file.

    Returns:
        Each person's float32 ``K x 3`` (x, y in image pixels, score), in ``persons`` order.
    """
    by_image: Dict[int, List[int]] = defaultdict(list)
    for index, person in enumerate(persons):
        by_image[person.image_id].append(index)
    predictions: List[np.ndarray] = [np.empty(0)] * len(persons)
    for image_id, indices in by_image.items():
        image = read_image(files[image_id])
        centers = np.array([persons[i].center for i in indices], dtype=np.float32)
        scales = np.array([persons[i].scale for i in indices], dtype=np.float32)
        keypoints, scores = estimator.estimate(image, centers, scales)
        for row, index in enumerate(indices):
            predictions[index] = np.concatenate([keypoints[row], scores[row][:, None]], axis=1)
    return predictions


def kept_results(persons: Sequence[Person], predictions: Sequence[np.ndarray], generation: str,
                 sigmas: np.ndarray) -> List[Dict[str, Any]]:
    """Rescore, OKS-NMS per image, and the results list MMPose writes (its order and fields).

    Args:
        persons: From :func:`coco_persons`.
        predictions: Each person's float32 ``K x 3`` keypoints.
        generation: ``"mmpose0"`` (``center``/``scale`` fields) or ``"mmpose1"`` (``bbox``).
        sigmas: OKS sigmas in the generation's dtype (:func:`generation_sigmas`).

    Returns:
        The COCO keypoint results.
    """
    grouped: Dict[int, List[Dict[str, Any]]] = defaultdict(list)
    for person, keypoints in zip(persons, predictions):
        grouped[person.image_id].append({"person": person, "keypoints": keypoints, "area": person.area})
    results = []
    for image_id, entries in grouped.items():
        # _sort_and_unique_bboxes: by key, later duplicates of a key dropped.
        entries = sorted(entries, key=lambda e: e["person"].key)
        entries = [e for i, e in enumerate(entries) if i == 0 or e["person"].key != entries[i - 1]["person"].key]
        for entry in entries:
            entry["score"] = rescore(entry["keypoints"][:, 2], entry["person"].box_score)
        for index in oks_nms(entries, OKS_THR, sigmas):
            entry, person = entries[index], entries[index]["person"]
            result = {"image_id": image_id, "category_id": 1,
                      "keypoints": entry["keypoints"].reshape(-1).tolist(), "score": float(entry["score"])}
            if generation == "mmpose0":
                result.update(center=person.center.tolist(), scale=person.scale.tolist())
            else:
                result["bbox"] = person.bbox_xywh
            results.append(result)
    return results


def coco_stats(coco: Any, results: List[Dict[str, Any]], sigmas: np.ndarray) -> Tuple[Dict[str, float], str]:
    """xtcocotools' keypoint metrics of ``results`` against ``coco``, as MMPose calls it.

    Args:
        coco: The ground truth, an ``xtcocotools.coco.COCO``.
        results: From :func:`kept_results` (not modified).
        sigmas: OKS sigmas in the generation's dtype.

    Returns:
        :data:`STATS_NAMES` -> value, and the printed summary.
    """
    _, cocoeval_class = _xtcocotools()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        detections = coco.loadRes(copy.deepcopy(results)) if results else None
        if detections is None:
            return {name: 0.0 for name in STATS_NAMES}, "no person was kept: every metric is 0\n"
        evaluator = cocoeval_class(coco, detections, "keypoints", sigmas, use_area=True)
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return OrderedDict(zip(STATS_NAMES, (float(v) for v in evaluator.stats))), printed.getvalue()


def generation_sigmas(estimator: PoseEstimator) -> np.ndarray:
    """The metadata's sigmas as the generation holds them: float64 (0.x ``DatasetInfo``), float32 (1.x)."""
    dtype = np.float64 if estimator.geometry.name == "mmpose0" else np.float32
    return np.array(estimator.info.sigmas, dtype=dtype)


def load_coco(ann_file: Union[str, Path]) -> Any:
    """The annotation file as an ``xtcocotools.coco.COCO`` (quietly).

    Raises:
        MissingDependencyError: xtcocotools is not installed.
    """
    coco_class, _ = _xtcocotools()
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_class(str(ann_file))


def coco_persons(coco: Any, geometry: Geometry, det_file: Optional[Union[str, Path]] = None) -> List[Person]:
    """The persons MMPose's test evaluates: ground-truth boxes, or the detections of ``det_file``.

    Args:
        coco: The annotations.
        geometry: The export's geometry (picks the generation's rules).
        det_file: COCO detection results (``image_id``, ``category_id``,
            ``bbox`` x, y, w, h, ``score``); ``None``: ground-truth boxes.

    Returns:
        The persons, in MMPose's order.

    Raises:
        DeployError: The detection file is not a list, or names an unknown image.
    """
    if det_file is None:
        return ground_truth_persons(coco, geometry)
    detections = json.loads(Path(det_file).read_text(encoding="utf-8"))
    if not isinstance(detections, list):
        raise DeployError(f"{det_file}: a {type(detections).__name__}, expected a COCO detection results list "
                          "of {image_id, category_id, bbox, score}")
    try:
        return detection_persons(detections, geometry, coco.imgs)
    except KeyError as error:
        raise DeployError(f"{det_file}: {error.args[0]}") from None


def evaluate_coco(estimator: PoseEstimator, ann_file: Union[str, Path], image_dir: Union[str, Path],
                  det_file: Optional[Union[str, Path]] = None) -> EvaluationResult:
    """COCO keypoint AP of ``estimator`` on ``ann_file``, with MMPose's boxes, rescoring and NMS.

    The export's generation (metadata ``decode``: ``mmpose0-default`` or
    ``mmpose1-msra``) picks the ground-truth box rule, the arithmetic and the
    results format, so the AP equals that generation's ``tools/test.py`` on
    the same boxes.

    Args:
        estimator: The export.
        ann_file: COCO keypoint annotations (``person_keypoints_val2017.json``).
        image_dir: The folder of the images (``val2017/``).
        det_file: COCO detection results; ``None``: ground-truth boxes.

    Returns:
        The per-person predictions, the kept results and the metrics.

    Raises:
        MissingDependencyError: xtcocotools is not installed.
        DeployError: The detection file is not a list, or names an unknown image.
        ImageReadError: An image is missing or unreadable.
    """
    coco = load_coco(ann_file)
    persons = coco_persons(coco, estimator.geometry, det_file)
    files = {image_id: Path(image_dir) / coco.imgs[image_id]["file_name"]
             for image_id in {p.image_id for p in persons}}
    predictions = predict_persons(estimator, persons, files)
    sigmas = generation_sigmas(estimator)
    results = kept_results(persons, predictions, estimator.geometry.name, sigmas)
    stats, summary = coco_stats(coco, results, sigmas)
    everyone = [{"image_id": p.image_id, "key": p.key, "center": p.center.tolist(), "scale": p.scale.tolist(),
                 "box_score": float(p.box_score), "keypoints": k.tolist()} for p, k in zip(persons, predictions)]
    return EvaluationResult(everyone, results, stats, summary)
