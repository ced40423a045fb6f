"""Reproduction proof on MMPose 1.x: our config gives MMPose's keypoints with a released-format checkpoint.

One checkpoint in the released 0.x format (``keypoint_head.*`` keys, MMPose's
built-in model with random but non-degenerate weights) is evaluated by 1.x's
stock ``tools/test.py`` on the mini COCO (detector boxes, flip test,
``CocoMetric``) once with MMPose 1.3.2's own ResNeSt-50 config and once with
ours: the keypoints must agree to fp32 rounding (measured: max 6e-7 px) and the AP
be equal. So a released
checkpoint gives the model-zoo AP with our 1.x config exactly when it gives
it with MMPose's.
"""
from __future__ import annotations

import json
from pathlib import Path

import mmpose
import pytest
import torch
from mmengine.config import Config
from mmpose.registry import MODELS
from mmpose.utils import register_all_modules

from model_helpers import randomise
from resnest_plugin.coco_metrics import parse_test_output
from tools_helpers import CONFIG_R50, cfg_options_args, mini_coco_cfg_options, run_stock_tool

MMPOSE_CONFIG = (Path(mmpose.__file__).parent / ".mim" / "configs" / "body_2d_keypoint" /
                 "topdown_heatmap" / "coco" / CONFIG_R50.name)


def _released_format_checkpoint(path: Path) -> Path:
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(MMPOSE_CONFIG))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    randomise(model, seed=7)
    # The released files predate MMPose 1.x: their head is `keypoint_head.*`.
    state = {(f"keypoint_head.{k[len('head.'):]}" if k.startswith("head.") else k): v
             for k, v in model.state_dict().items()}
    assert len(state) == 494
    torch.save({"state_dict": state, "meta": {"epoch": 210}}, path)
    return path


@pytest.mark.slow
@pytest.mark.matrix
def test_stock_test_gives_identical_keypoints_with_mmpose_config_and_ours(coco_root: Path,
                                                                         tmp_path: Path) -> None:
    checkpoint = _released_format_checkpoint(tmp_path / "released_format.pth")
    results = {}
    for label, config in (("mmpose", MMPOSE_CONFIG), ("ours", CONFIG_R50)):
        options = mini_coco_cfg_options(coco_root, config=config, input_size=None, max_epochs=None,
                                        bbox_score_thr=0.5)
        options["test_evaluator.outfile_prefix"] = str(tmp_path / label)
        run = run_stock_tool("test.py", [str(config), str(checkpoint), "--work-dir",
                                         str(tmp_path / f"work_{label}"), *cfg_options_args(options)])
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        keypoints = json.loads((tmp_path / f"{label}.keypoints.json").read_text())
        results[label] = (keypoints, parse_test_output(run.stdout + run.stderr))
    (theirs, their_metrics), (ours, our_metrics) = results["mmpose"], results["ours"]
    assert len(theirs) == len(ours) > 0
    key = lambda r: (r["image_id"], r["score"])  # noqa: E731
    for a, b in zip(sorted(theirs, key=key), sorted(ours, key=key)):
        assert a["image_id"] == b["image_id"]
        difference = max(abs(x - y) for x, y in zip(a["keypoints"], b["keypoints"]))
        # fp32 rounding of the default (fused) path only: measured max 6e-7 px.
        assert difference <= 1e-4, f"image {a['image_id']}: keypoints differ by {difference} px"
    assert their_metrics and our_metrics == their_metrics
