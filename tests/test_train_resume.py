"""Nothing lost: a training run killed mid-epoch resumes with --resume-from and finishes (slow).

MMPose's stock ``tools/train.py``, our config, the bundled mini COCO on CPU:
12 people, 2 per batch (the last partial batch dropped, so ResNeSt never
sees a BatchNorm batch of 1), 6 iterations per epoch. The first run is
killed with SIGKILL in the middle of an epoch; ``--resume-from
<work_dir>/latest.pth`` must continue from the last checkpoint (epoch,
iteration counter, Adam state) and finish the planned epochs.

The second test resumes from a checkpoint whose ``meta`` holds the numpy
scalar ``hook_msgs.best_score`` written by ``save_best='AP'``: torch >= 2.6
refuses it without resnest_plugin.compat's allow-list.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import resnest_plugin  # noqa: F401  (compat: numpy allow-list for torch.load below)
from tools_helpers import (REPO_ROOT, cfg_options_args, mini_coco_cfg_options, run_stock_tool,
                           stock_tool)

CONFIG = "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
ITERS_PER_EPOCH = 6  # 12 annotated people, samples_per_gpu=2, drop_last

pytestmark = pytest.mark.slow


def _run_until_killed(args: List[str], work_dir: Path, pattern: str, timeout: float = 1800,
                      ) -> str:
    """Start tools/train.py, SIGKILL it once its log matches ``pattern``; return the log."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / "killed_run.out", "w") as out:
        proc = subprocess.Popen([sys.executable, str(stock_tool("train.py")), *args],
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=_env())
        deadline = time.monotonic() + timeout
        try:
            while True:
                logs = sorted(work_dir.glob("*.log"))
                text = logs[-1].read_text() if logs else ""
                if re.search(pattern, text, flags=re.MULTILINE):
                    break
                if proc.poll() is not None:
                    raise AssertionError(f"train.py exited ({proc.returncode}) before {pattern!r}:\n"
                                         + (work_dir / "killed_run.out").read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {pattern!r} in the log after {timeout} s")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"train.py ended by itself ({proc.returncode})"
    return text


def _env() -> Dict[str, str]:
    import os

    return dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def _checkpoint(path: Path) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu")


def _adam_steps(checkpoint: Dict[str, Any]) -> int:
    return int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])


def _newest_log(work_dir: Path) -> str:
    return sorted(work_dir.glob("*.log"))[-1].read_text()


def test_sigkill_mid_epoch_then_resume_finishes(coco_root: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    options = mini_coco_cfg_options(coco_root, total_epochs=3, warmup_iters=5)
    args = [CONFIG, "--work-dir", str(work_dir), "--no-validate", *cfg_options_args(options)]

    killed_log = _run_until_killed(args, work_dir, r"Epoch \[2\]\[3/6\]")
    assert "Saving checkpoint at 1 epochs" in killed_log
    assert (work_dir / "latest.pth").resolve().name == "epoch_1.pth"
    assert not (work_dir / "epoch_2.pth").exists()
    assert _adam_steps(_checkpoint(work_dir / "latest.pth")) == ITERS_PER_EPOCH

    resumed = run_stock_tool("train.py", [*args, "--resume-from", str(work_dir / "latest.pth")],
                             env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = _newest_log(work_dir)
    assert f"resumed epoch 1, iter {ITERS_PER_EPOCH}" in log
    assert "Epoch [1][" not in log, "the resumed run repeated epoch 1"
    assert "Epoch [2][1/6]" in log and "Epoch [3][6/6]" in log

    final = _checkpoint(work_dir / "epoch_3.pth")
    assert (final["meta"]["epoch"], final["meta"]["iter"]) == (3, 3 * ITERS_PER_EPOCH)
    # The optimizer state came through the kill: 18 Adam steps, not 12.
    assert _adam_steps(final) == 3 * ITERS_PER_EPOCH
    assert (work_dir / "latest.pth").resolve().name == "epoch_3.pth"
