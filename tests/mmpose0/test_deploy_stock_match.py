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

import pytest
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.models import build_posenet

from deploy_helpers import assert_evaluate_matches_stock, export_random_model
from tools_helpers import cfg_options_args, mini_coco_cfg_options, run_stock_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
R50 = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco" / "resnest50_coco_256x192.py"


@pytest.fixture(scope="module")
def checkpoint_and_export(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A random-weight R50 checkpoint saved by mmcv, and its fp32 export with flip test."""
    folder = tmp_path_factory.mktemp("stock_match")
    cfg = Config.fromfile(str(R50))
    cfg.model.pretrained = None
    return export_random_model(build_posenet(cfg.model), R50, folder,
                               lambda model, path: save_checkpoint(model, str(path)))


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

    assert_evaluate_matches_stock(checkpoint_and_export["export"], coco_root, gt_boxes, expected,
                                  stock.stdout + stock.stderr, ("center", "scale"))
