"""The pinned stack is installed as set-up promises (issue: foundation)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.version import Version


def test_pinned_versions() -> None:
    import mmcv
    import mmdet
    import mmpose

    assert mmpose.__version__ == "0.29.0"
    assert mmcv.__version__ == "1.7.0"
    assert mmdet.__version__ == "2.28.2"
    assert Version(np.__version__) < Version("2")
    assert Version(torch.__version__).release[:2] == (2, 14)


def test_mmcv_ops_are_compiled_and_nms_is_correct() -> None:
    from mmcv.ops import nms
    from mmcv.utils import ext_loader

    ext = ext_loader.load_ext("_ext", ["nms"])  # raises if the ops were not compiled
    assert hasattr(ext, "nms")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # kept: best score
                          [1.0, 1.0, 11.0, 11.0],    # IoU 0.68 with box 0 -> suppressed
                          [20.0, 20.0, 30.0, 30.0],  # disjoint -> kept
                          [0.0, 0.0, 10.0, 5.0]])    # IoU 0.5 with box 0: not > 0.6 -> kept
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    dets, keep = nms(boxes, scores, iou_threshold=0.6)
    assert keep.tolist() == [0, 2, 3]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7, 0.6]))


def test_xtcocotools_gives_ap_one_for_ground_truth_results(coco_root: Path, tmp_path: Path) -> None:
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    ann_file = coco_root / "test_coco.json"
    annotations = json.loads(ann_file.read_text())["annotations"]
    results = [dict(image_id=a["image_id"], category_id=1, keypoints=a["keypoints"], score=1.0)
               for a in annotations if a["num_keypoints"] > 0]
    assert len(results) == 12
    result_file = tmp_path / "results.json"
    result_file.write_text(json.dumps(results))
    gt = COCO(str(ann_file))
    dt = gt.loadRes(str(result_file))
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                       .89, .89]) / 10.0
    evaluator = COCOeval(gt, dt, "keypoints", sigmas, use_area=True)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP
    # A perturbed result must score lower: the oracle can fail.
    for r in results:
        r["keypoints"] = [v + 25.0 if i % 3 != 2 else v for i, v in enumerate(r["keypoints"])]
    result_file.write_text(json.dumps(results))
    worse = COCOeval(gt, gt.loadRes(str(result_file)), "keypoints", sigmas, use_area=True)
    worse.evaluate()
    worse.accumulate()
    worse.summarize()
    assert worse.stats[0] < 0.9


def test_smoke_check_script_passes(repo_root: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(repo_root / "scripts" / "smoke_check.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mmcv.ops.nms on CPU: kept [0, 2] as expected" in result.stdout
