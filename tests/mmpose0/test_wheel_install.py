"""The wheel as a pip user installs it, with MMPose 0.29's stock tools (slow).

``pip wheel .`` -> ``pip install --target`` (not editable), then from a folder
outside the clone: the import registers ``resnest_plugin.ResNeSt`` from the
installed copy, ``mim search`` lists the recipes from its model index, and
MMPose's own ``tools/train.py`` trains 2 iterations with a config read from
the installed package and ``tools/test.py`` evaluates the checkpoint it wrote.
Every row of the support matrix runs this file (``make test-matrix``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnest_plugin.coco_metrics import COCO_KEYPOINT_STATS, parse_test_output
from tools_helpers import cfg_options_args, mini_coco_cfg_options, stock_tool
from wheel_helpers import assert_backbone_comes_from_wheel, installed_config, mim_search, run_installed

pytestmark = [pytest.mark.slow, pytest.mark.matrix]

# Built through the host's registry after `import resnest_plugin`.
BUILD = ("__import__('mmpose.models', fromlist=['build_backbone']).build_backbone"
         "(dict(type='resnest_plugin.ResNeSt', depth=50))")
CONFIG = "top_down/resnest/coco/resnest50_coco_256x192.py"


def test_installed_wheel_registers_the_scoped_backbone(installed_wheel) -> None:
    assert_backbone_comes_from_wheel(installed_wheel, BUILD)


def test_mim_search_lists_the_recipes_of_the_installed_wheel(installed_wheel) -> None:
    result = mim_search(installed_wheel["target"], installed_wheel["outside"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("resnest50_coco_256x192", "resnest101_coco_384x288", "resnest269_coco_384x288"):
        assert name in result.stdout, result.stdout[-3000:]


def test_stock_train_then_test_run_from_the_installed_config(installed_wheel, coco_root: Path) -> None:
    config = installed_config(installed_wheel["target"], CONFIG)
    work_dir = installed_wheel["outside"] / "work"
    # 12 people, batch 6, one epoch: 2 iterations.
    options = mini_coco_cfg_options(coco_root, samples_per_gpu=6, total_epochs=1, warmup_iters=2)
    result = run_installed([str(stock_tool("train.py")), str(config), "--work-dir", str(work_dir),
                            "--no-validate", *cfg_options_args(options)],
                           installed_wheel["target"], cwd=installed_wheel["outside"])
    assert result.returncode == 0, result.stderr[-3000:]
    (log_json,) = work_dir.glob("*.log.json")
    records = [json.loads(line) for line in log_json.read_text().splitlines()[1:]]
    assert [r["iter"] for r in records if r.get("mode") == "train"] == [1, 2]
    checkpoint = work_dir / "epoch_1.pth"
    assert checkpoint.is_file()
    # The stock test.py on what train.py wrote: the 12 annotated people's boxes, no flip (fast).
    options.update({"data.test.data_cfg.use_gt_bbox": True, "model.test_cfg.flip_test": False})
    test = run_installed([str(stock_tool("test.py")), str(config), str(checkpoint), "--eval", "mAP",
                          "--work-dir", str(installed_wheel["outside"] / "eval"), *cfg_options_args(options)],
                         installed_wheel["target"], cwd=installed_wheel["outside"])
    checkpoint.unlink()
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = parse_test_output(test.stdout)
    assert list(metrics) == list(COCO_KEYPOINT_STATS)
    assert all(0.0 <= value <= 1.0 for value in metrics.values()), metrics
