"""``evaluate`` on an exported model equals MMPose 0.x's stock ``tools/test.py`` on the same checkpoint.

End to end on the bundled mini COCO: a ResNeSt-50 256x192 model of our
config with non-trivial random weights is saved as a checkpoint, exported
(flip test inside) and evaluated by both: the stock tool (PyTorch, MMPose's
pipeline) and ``resnest_plugin.deploy.evaluate`` (onnxruntime, numpy,
OpenCV), with ground-truth and with detector boxes. The kept persons, their
centres and scales and their image-pixel keypoints must be identical, the
scores equal to float32 noise, and the metrics equal. (Random weights give
AP 0; tests/test_deploy_evaluate.py compares the metrics on poses with a real
AP.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.models import build_posenet

from model_helpers import randomise
from resnest_plugin.coco_metrics import parse_test_output
from resnest_plugin.deploy import PoseEstimator
from resnest_plugin.deploy.evaluate import evaluate_coco
from resnest_plugin.deploy.export import main as export_main
from tools_helpers import cfg_options_args, mini_coco_cfg_options, run_stock_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
R50 = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco" / "resnest50_coco_256x192.py"


@pytest.fixture(scope="module")
def checkpoint_and_export(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A random-weight R50 checkpoint saved by mmcv, and its fp32 export with flip test."""
    folder = tmp_path_factory.mktemp("stock_match")
    cfg = Config.fromfile(str(R50))
    cfg.model.pretrained = None
    model = build_posenet(cfg.model)
    randomise(model, seed=5, spread=0.1)
    model.eval()
    checkpoint, export = folder / "r50.pth", folder / "r50.onnx"
    save_checkpoint(model, str(checkpoint))
    assert export_main([str(R50), str(checkpoint), str(export)]) == 0
    return dict(checkpoint=checkpoint, export=export, folder=folder)


@pytest.mark.slow
@pytest.mark.parametrize("gt_boxes", [True, False], ids=["ground-truth-boxes", "detector-boxes"])
def test_evaluate_equals_the_stock_test_tool(checkpoint_and_export: Dict[str, Path], coco_root: Path,
                                             gt_boxes: bool) -> None:
    work = checkpoint_and_export["folder"] / f"work_{gt_boxes}"
    options = mini_coco_cfg_options(coco_root, image_size=None)
    options["data.test.data_cfg.use_gt_bbox"] = gt_boxes
    stock = run_stock_tool("test.py", [str(R50), str(checkpoint_and_export["checkpoint"]), "--eval", "mAP",
                                       "--work-dir", str(work), *cfg_options_args(options)])
    assert stock.returncode == 0, stock.stderr[-3000:]
    expected = json.loads((work / "result_keypoints.json").read_text())

    estimator = PoseEstimator(checkpoint_and_export["export"], intra_op_num_threads=1)
    mine = evaluate_coco(estimator, coco_root / "test_coco.json", coco_root,
                         None if gt_boxes else coco_root / "test_coco_det_AP_H_56.json")
    assert len(mine.results) == len(expected) > (10 if gt_boxes else 50)
    for got, want in zip(mine.results, expected):
        assert (got["image_id"], got["center"], got["scale"]) == (want["image_id"], want["center"], want["scale"])
    got_kps = np.array([r["keypoints"] for r in mine.results]).reshape(len(expected), -1, 3)
    want_kps = np.array([r["keypoints"] for r in expected]).reshape(len(expected), -1, 3)
    np.testing.assert_array_equal(got_kps[..., :2], want_kps[..., :2])
    np.testing.assert_allclose(got_kps[..., 2], want_kps[..., 2], rtol=0, atol=1e-5)
    metrics = parse_test_output(stock.stdout)
    assert {name: round(value, 4) for name, value in mine.stats.items()} == {
        name: round(metrics[name], 4) for name in mine.stats}
