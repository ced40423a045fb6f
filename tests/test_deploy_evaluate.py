"""``evaluate``'s boxes, rescoring, OKS-NMS and COCO metrics equal the installed MMPose's, on the bundled mini COCO.

The network is left out: every person gets the same synthetic keypoints
(its nearest annotation's keypoints plus noise, random scores) on both
sides, so the comparison covers exactly what ``evaluate`` adds around the
model: which persons and boxes MMPose's test dataset holds (ground-truth and
detector boxes), their centres and scales, the rescoring, the NMS, the
results MMPose writes, and xtcocotools' ten metrics (all compared exactly).
The installed generation's MMPose is the oracle (0.x ``TopDownCocoDataset``
+ ``evaluate``, 1.x ``CocoDataset`` + ``CocoMetric``); each stack checks its
own generation's rules.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from resnest_plugin.deploy.boxes import geometry_for
from resnest_plugin.deploy.coco_boxes import Person
from resnest_plugin.deploy.evaluate import coco_persons, coco_stats, kept_results, load_coco
from resnest_plugin.hosts import installed_host

REPO = Path(__file__).resolve().parents[1]
COCO_DIR = REPO / "tests" / "data" / "coco"
ANN = COCO_DIR / "test_coco.json"
DETS = COCO_DIR / "test_coco_det_AP_H_56.json"
SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
          0.087, 0.089, 0.089]


def _synthetic_predictions(coco: Any, centers: List[np.ndarray], image_ids: List[int]) -> List[np.ndarray]:
    """Per person: the keypoints of the annotation whose box centre is nearest, plus noise; random scores."""
    rng = np.random.default_rng(7)
    predictions = []
    for center, image_id in zip(centers, image_ids):
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if a.get("num_keypoints", 0) > 0]
        if anns:
            nearest = min(anns, key=lambda a: np.hypot(a["bbox"][0] + a["bbox"][2] / 2 - center[0],
                                                       a["bbox"][1] + a["bbox"][3] / 2 - center[1]))
            xy = np.array(nearest["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        else:
            xy = np.repeat(np.asarray(center, np.float64)[None], 17, axis=0)
        xy = xy + rng.normal(0, 4, size=xy.shape)
        scores = rng.uniform(0, 1, size=(17, 1))
        predictions.append(np.concatenate([xy, scores], axis=1).astype(np.float32))
    return predictions


def _mmpose0(det_file: Optional[Path], predictions_for: Any, tmp_path: Path) -> Dict[str, Any]:
    from mmcv import Config
    from mmpose.datasets import TopDownCocoDataset
    from mmpose.datasets.pipelines.top_down_transform import TopDownGetBboxCenterScale

    cfg = Config.fromfile(str(REPO / "configs/top_down/resnest/coco/resnest50_coco_256x192.py"))
    data_cfg = dict(cfg.data_cfg, use_gt_bbox=det_file is None, bbox_file=str(det_file or ""))
    dataset = TopDownCocoDataset(str(ANN), str(COCO_DIR) + "/", data_cfg, pipeline=[],
                                 dataset_info=cfg.data.test.dataset_info, test_mode=True)
    to_cs = TopDownGetBboxCenterScale(padding=1.25)
    boxes = [to_cs({"bbox": entry["bbox"], "ann_info": dataset.ann_info}) for entry in dataset.db]
    centers = [b["center"] for b in boxes]
    image_ids = [dataset.name2id[e["image_file"][len(dataset.img_prefix):]] for e in dataset.db]
    predictions = predictions_for(centers, image_ids)
    c = np.array(centers, dtype=np.float32)
    s = np.array([b["scale"] for b in boxes], dtype=np.float32)
    all_boxes = np.zeros((len(c), 6), dtype=np.float32)  # as TopdownHeatmapBaseHead.decode builds it
    all_boxes[:, 0:2], all_boxes[:, 2:4] = c, s
    all_boxes[:, 4] = np.prod(s * 200.0, axis=1)
    all_boxes[:, 5] = [e["bbox_score"] for e in dataset.db]
    outputs = [{"preds": np.array(predictions), "boxes": all_boxes,
                "image_paths": [e["image_file"] for e in dataset.db], "bbox_ids": [e["bbox_id"] for e in dataset.db]}]
    stats = dataset.evaluate(outputs, res_folder=str(tmp_path), metric="mAP")
    results = json.loads((tmp_path / "result_keypoints.json").read_text())
    keys = [e["bbox_id"] for e in dataset.db]
    return dict(centers=c, scales=s, keys=keys, image_ids=image_ids, predictions=predictions, stats=stats,
                results=results)


def _mmpose1(det_file: Optional[Path], predictions_for: Any, tmp_path: Path) -> Dict[str, Any]:
    from mmpose.datasets import CocoDataset
    from mmpose.datasets.transforms import GetBBoxCenterScale, TopdownAffine
    from mmpose.evaluation import CocoMetric

    dataset = CocoDataset(ann_file=str(ANN), data_root="", data_prefix=dict(img=str(COCO_DIR) + "/"),
                          bbox_file=str(det_file) if det_file else None, test_mode=True, pipeline=[])
    to_cs, affine = GetBBoxCenterScale(padding=1.25), TopdownAffine(input_size=(192, 256))
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    placed = [affine.transform(to_cs.transform({"bbox": info["bbox"], "img": np.zeros((4, 4, 3), np.uint8)}))
              for info in infos]
    centers = [p["input_center"] for p in placed]
    image_ids = [info["img_id"] for info in infos]
    predictions = predictions_for(centers, image_ids)
    metric = CocoMetric(ann_file=str(ANN), outfile_prefix=str(tmp_path / "results"))
    metric.dataset_meta = dataset.metainfo
    samples = [{"id": info["id"], "img_id": info["img_id"],
                "pred_instances": {"keypoints": pred[None, :, :2], "keypoint_scores": pred[None, :, 2],
                                   "bboxes": info["bbox"], "bbox_scores": info["bbox_score"]},
                "gt_instances": {"bbox_scales": p["bbox_scale"]}}
               for info, p, pred in zip(infos, placed, predictions)]
    metric.process([], samples)
    stats = metric.compute_metrics(metric.results)
    results = json.loads((tmp_path / "results.keypoints.json").read_text())
    return dict(centers=np.array(centers, np.float32), scales=np.array([p["input_scale"] for p in placed]),
                keys=[info["id"] for info in infos], image_ids=image_ids, predictions=predictions, stats=stats,
                results=results)


@pytest.mark.parametrize("det_file", [None, DETS], ids=["ground-truth-boxes", "detector-boxes"])
def test_boxes_rescoring_nms_and_metrics_equal_the_installed_mmpose(det_file: Optional[Path],
                                                                     tmp_path: Path) -> None:
    host = installed_host()
    coco = load_coco(ANN)
    oracle = (_mmpose0 if host == "mmpose0" else _mmpose1)(
        det_file, lambda centers, image_ids: _synthetic_predictions(coco, centers, image_ids), tmp_path)
    geometry = geometry_for(host, (192, 256), (48, 64), 1.25)
    persons: List[Person] = coco_persons(coco, geometry, det_file)
    assert [p.image_id for p in persons] == oracle["image_ids"]
    assert [p.key for p in persons] == oracle["keys"]
    np.testing.assert_array_equal(np.array([p.center for p in persons]), oracle["centers"])
    np.testing.assert_array_equal(np.array([p.scale for p in persons]), np.reshape(oracle["scales"], (-1, 2)))
    sigmas = np.array(SIGMAS, dtype=np.float64 if host == "mmpose0" else np.float32)
    results = kept_results(persons, oracle["predictions"], host, sigmas)
    assert json.loads(json.dumps(results)) == oracle["results"]
    stats, _ = coco_stats(coco, results, sigmas)
    assert stats == dict(oracle["stats"])
    assert 0.05 < stats["AP"] < 1.0  # the synthetic poses are close to the truth: a real AP, not 0 == 0
    if det_file is not None:
        assert len(results) < len(persons)  # OKS-NMS dropped duplicates
