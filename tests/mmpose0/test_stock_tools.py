"""MMPose's stock tools, unmodified, train and evaluate our configs on CPU (slow).

``tools/train.py`` / ``tools/test.py`` from the installed mmpose wheel and
the ``mim train`` / ``mim test`` front end, on the bundled mini COCO
(4 images, 12 annotated people, 118 detector boxes). The model is trained
from scratch for one epoch, so the APs are ~0: these tests prove the
pipeline (config -> plugin import -> training -> checkpoint -> xtcocotools
evaluation against detector boxes), not accuracy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import resnest_plugin  # noqa: F401  (compat: numpy allow-list for torch.load)
from resnest_plugin.coco_metrics import COCO_KEYPOINT_STATS, parse_test_output
from tools_helpers import REPO_ROOT, cfg_options_args, mini_coco_cfg_options, run_stock_tool

CONFIG = "configs/top_down/resnest/coco/resnest50_coco_256x192.py"

pytestmark = pytest.mark.slow


def _options(coco_root: Path) -> Dict[str, Any]:
    return mini_coco_cfg_options(coco_root, total_epochs=1, warmup_iters=5)


def _train_log(work_dir: Path) -> List[Dict[str, Any]]:
    (log_json,) = work_dir.glob("*.log.json")
    return [json.loads(line) for line in log_json.read_text().splitlines()[1:]]  # line 0: env


def _assert_coco_metrics(stdout: str) -> Dict[str, float]:
    assert "=> Total boxes: 118" in stdout, "test.py did not read the 118 detector boxes"
    metrics = parse_test_output(stdout)  # raises, naming any of the ten that is missing
    assert list(metrics) == list(COCO_KEYPOINT_STATS), f"metrics printed: {metrics}"
    assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
    return metrics


def test_stock_train_then_test_on_mini_coco(coco_root: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    train = run_stock_tool("train.py", [CONFIG, "--work-dir", str(work_dir), "--no-validate",
                                        *cfg_options_args(_options(coco_root))])
    assert train.returncode == 0, train.stderr[-3000:]
    assert (work_dir / "epoch_1.pth").is_file() and (work_dir / "latest.pth").exists()
    records = [r for r in _train_log(work_dir) if r.get("mode") == "train"]
    assert len(records) == 6, f"12 instances / batch 2 = 6 logged iterations, got {len(records)}"
    assert all(torch.isfinite(torch.tensor(r["heatmap_loss"])) for r in records)

    checkpoint = torch.load(work_dir / "latest.pth", map_location="cpu")
    assert checkpoint["meta"]["epoch"] == 1 and checkpoint["meta"]["iter"] == 6
    assert any(k.startswith("backbone.layer4.2.conv2.fc2") for k in checkpoint["state_dict"])

    test = run_stock_tool("test.py", [CONFIG, str(work_dir / "latest.pth"), "--eval", "mAP",
                                      "--work-dir", str(tmp_path / "eval"),
                                      *cfg_options_args(_options(coco_root))])
    assert test.returncode == 0, test.stderr[-3000:]
    _assert_coco_metrics(test.stdout)


def _mim(args: List[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run([sys.executable, "-m", "mim", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_mim_train_then_test_on_mini_coco(coco_root: Path, tmp_path: Path) -> None:
    """``mim train mmpose <cfg> --gpus 1`` (on CPU MMDataParallel falls back to the CPU).

    ``--gpus 0`` would make mim pass ``--device cpu``, which MMPose 0.29's train.py rejects.
    """
    work_dir = tmp_path / "work"
    train = _mim(["train", "mmpose", CONFIG, "--gpus", "1", "--work-dir", str(work_dir),
                  "--no-validate", *cfg_options_args(_options(coco_root))])
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert (work_dir / "epoch_1.pth").is_file()

    test = _mim(["test", "mmpose", CONFIG, "--checkpoint", str(work_dir / "epoch_1.pth"),
                 "--eval", "mAP", *cfg_options_args(_options(coco_root))])
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    _assert_coco_metrics(test.stdout)
