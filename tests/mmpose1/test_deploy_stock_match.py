"""``evaluate`` on an exported model equals MMPose 1.x's stock ``tools/test.py`` on the same checkpoint.

End to end on the bundled mini COCO, as tests/mmpose0/test_deploy_stock_match.py
for 0.x: a ResNeSt-50 256x192 ``TopdownPoseEstimator`` of our config with
non-trivial random weights is saved as MMEngine's checkpoint hook writes it,
exported (flip test inside) and evaluated by the stock tool (``CocoMetric``
writing its results with ``outfile_prefix``) and by
``resnest_plugin.deploy.evaluate``, with ground-truth and with detector
boxes. The kept persons, their boxes and image-pixel keypoints must be
identical, the scores equal to float32 noise, and the metrics equal.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
import torch
from mmengine.config import Config
from mmpose.apis import init_model

from deploy_helpers import assert_evaluate_matches_stock, export_random_model
from tools_helpers import CONFIG_R50, cfg_options_args, mini_coco_cfg_options, run_stock_tool


@pytest.fixture(scope="module")
def checkpoint_and_export(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A random-weight R50 checkpoint (``state_dict`` + ``meta``) and its fp32 export with flip test."""
    folder = tmp_path_factory.mktemp("stock_match")
    cfg = Config.fromfile(str(CONFIG_R50))
    cfg.model.backbone.init_cfg = None
    return export_random_model(init_model(cfg, checkpoint=None, device="cpu"), CONFIG_R50, folder,
                               lambda model, path: torch.save({"meta": {"note": "random weights"},
                                                               "state_dict": model.state_dict()}, path))


@pytest.mark.slow
@pytest.mark.parametrize("gt_boxes", [True, False], ids=["ground-truth-boxes", "detector-boxes"])
def test_evaluate_equals_the_stock_test_tool(checkpoint_and_export: Dict[str, Path], coco_root: Path,
                                             gt_boxes: bool) -> None:
    work = checkpoint_and_export["folder"] / f"work_{gt_boxes}"
    options = mini_coco_cfg_options(coco_root, input_size=None, max_epochs=None)
    options = {k: v for k, v in options.items() if k.startswith(("test_", "model."))}
    options["test_evaluator.outfile_prefix"] = str(work / "results")
    if gt_boxes:
        options["test_dataloader.dataset.bbox_file"] = None
    stock = run_stock_tool("test.py", [str(CONFIG_R50), str(checkpoint_and_export["checkpoint"]),
                                       "--work-dir", str(work), *cfg_options_args(options)])
    assert stock.returncode == 0, stock.stderr[-3000:]
    expected = json.loads((work / "results.keypoints.json").read_text())

    assert_evaluate_matches_stock(checkpoint_and_export["export"], coco_root, gt_boxes, expected,
                                  stock.stdout + stock.stderr, ("bbox",))
