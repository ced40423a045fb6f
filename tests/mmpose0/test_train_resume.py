"""Nothing lost: a training run killed mid-epoch resumes with --resume-from and finishes (slow).

MMPose's stock ``tools/train.py``, our config, the bundled mini COCO on CPU:
12 people, 2 per batch (the last partial batch dropped, so ResNeSt never
sees a BatchNorm batch of 1), 6 iterations per epoch. The first run is
killed with SIGKILL in the middle of an epoch; ``--resume-from
<work_dir>/latest.pth`` must continue from the last checkpoint (epoch,
iteration counter, Adam state) and finish the planned epochs.

The second test resumes from a checkpoint whose ``meta`` holds the numpy
scalar ``hook_msgs.best_score`` written by ``save_best='AP'``: torch >= 2.6
refuses it without resnest_plugin.hosts.mmpose0.compat's allow-list.
"""
from __future__ import annotations

import inspect
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest
import torch

import resnest_plugin  # noqa: F401  (compat: numpy allow-list for torch.load below)
from process_helpers import run_until_killed
from tools_helpers import (REPO_ROOT, cfg_options_args, mini_coco_cfg_options, run_stock_tool,
                           stock_tool)

CONFIG = "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
ITERS_PER_EPOCH = 6  # 12 annotated people, samples_per_gpu=2, drop_last

pytestmark = pytest.mark.slow


def _run_until_killed(args: List[str], work_dir: Path, ready: Callable[[str], bool],
                      timeout: float = 1800) -> str:
    """Start tools/train.py, SIGKILL it once ``ready(log text)``; return the log."""

    def read_log() -> str:
        logs = sorted(work_dir.glob("*.log"))
        return logs[-1].read_text() if logs else ""

    return run_until_killed([sys.executable, str(stock_tool("train.py")), *args], work_dir,
                            read_log, ready, cwd=REPO_ROOT, env=_env(), timeout=timeout)


def _env() -> Dict[str, str]:
    import os

    return dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def _checkpoint(path: Path) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu")


def _loads_weights_only_by_default() -> bool:
    """Whether this torch's ``torch.load`` defaults to ``weights_only=True`` (2.6+: ``None``, read as True)."""
    return inspect.signature(torch.load).parameters["weights_only"].default is not False


def _adam_steps(checkpoint: Dict[str, Any]) -> int:
    return int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])


def _newest_log(work_dir: Path) -> str:
    return sorted(work_dir.glob("*.log"))[-1].read_text()


def test_sigkill_mid_epoch_then_resume_finishes(coco_root: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    options = mini_coco_cfg_options(coco_root, total_epochs=3, warmup_iters=5)
    args = [CONFIG, "--work-dir", str(work_dir), "--no-validate", *cfg_options_args(options)]

    killed_log = _run_until_killed(args, work_dir, lambda log: "Epoch [2][3/6]" in log)
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


# Memorise the 12 training people (no augmentation, higher lr) and evaluate on
# their ground-truth boxes without flip: AP leaves 0 after ~12-20 epochs from
# scratch (measured), and only a positive AP makes EvalHook(save_best='AP')
# record hook_msgs.best_score (mmcv skips a falsy score).
_MEMORISE = {
    "data.train.pipeline.2.prob": 0,  # TopDownRandomShiftBboxCenter
    "data.train.pipeline.3.flip_prob": 0,  # TopDownRandomFlip
    "data.train.pipeline.4.prob_half_body": 0,  # TopDownHalfBodyTransform
    "data.train.pipeline.5.rot_factor": 0,  # TopDownGetRandomScaleRotation
    "data.train.pipeline.5.scale_factor": 0,
    "data.val.data_cfg.use_gt_bbox": True,
    "model.test_cfg.flip_test": False,
    "lr_config.step": [1000],
}
_VAL_AP = re.compile(r"Epoch\(val\) \[(\d+)\]\[\d+\]\tAP: ([0-9.]+)")


def _first_positive_ap_epoch(log: str) -> Optional[int]:
    for epoch, ap in _VAL_AP.findall(log):
        if float(ap) > 0:
            return int(epoch)
    return None


def _after_best_is_in_latest(log: str) -> bool:
    """Mid-epoch k+2, where k is the first epoch with AP > 0.

    The checkpoint of epoch k is written before its evaluation, so the first
    ``latest.pth`` carrying ``best_score`` is epoch k+1's.
    """
    best = _first_positive_ap_epoch(log)
    return best is not None and f"Epoch [{best + 2}][3/6]" in log


@pytest.mark.matrix
def test_resume_from_checkpoint_with_numpy_best_score(coco_root: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    options = mini_coco_cfg_options(coco_root, total_epochs=40, warmup_iters=5, lr=2e-3)
    options.update(_MEMORISE)
    args = [CONFIG, "--work-dir", str(work_dir), "--seed", "0"]

    killed_log = _run_until_killed([*args, *cfg_options_args(options)], work_dir,
                                   _after_best_is_in_latest)
    best_epoch = _first_positive_ap_epoch(killed_log)
    # EvalHook keeps one best checkpoint: epoch k's, or k+1's if that evaluation improved.
    best_files = sorted(p.name for p in work_dir.glob("best_AP_epoch_*.pth"))
    assert best_files in ([f"best_AP_epoch_{best_epoch}.pth"], [f"best_AP_epoch_{best_epoch + 1}.pth"]), \
        best_files
    latest = work_dir / "latest.pth"
    assert latest.resolve().name == f"epoch_{best_epoch + 1}.pth"

    # This stock-written checkpoint is what torch >= 2.6 (weights_only by default)
    # refuses without compat's allow-list; older torch unpickles it fully.
    if _loads_weights_only_by_default():
        saved = torch.serialization.get_safe_globals()
        torch.serialization.clear_safe_globals()
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(latest))
            assert "numpy.core.multiarray.scalar" in unsafe, unsafe
            with pytest.raises(pickle.UnpicklingError, match="numpy"):
                torch.load(latest, map_location="cpu")
        finally:
            torch.serialization.add_safe_globals(saved)
    best_score = _checkpoint(latest)["meta"]["hook_msgs"]["best_score"]
    assert isinstance(best_score, np.float64) and best_score > 0

    # Resume and finish the interrupted epoch (total_epochs = k + 2).
    options["total_epochs"] = best_epoch + 2
    resumed = run_stock_tool("train.py", [*args, "--resume-from", str(latest),
                                          *cfg_options_args(options)], env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = _newest_log(work_dir)
    assert f"resumed epoch {best_epoch + 1}, iter {(best_epoch + 1) * ITERS_PER_EPOCH}" in log
    assert f"Epoch(val) [{best_epoch + 2}]" in log
    # mmcv writes an epoch's checkpoint before evaluating that epoch: the final
    # epoch_(k+2).pth carries exactly the best_score restored from latest.pth.
    final = _checkpoint(work_dir / f"epoch_{best_epoch + 2}.pth")
    assert final["meta"]["hook_msgs"]["best_score"] == best_score
    # The resumed EvalHook compared against the restored score, not against -inf.
    (resumed_ap,) = [float(ap) for _, ap in _VAL_AP.findall(log)]
    new_best = work_dir / f"best_AP_epoch_{best_epoch + 2}.pth"
    if resumed_ap > best_score + 1e-4:
        assert new_best.is_file()
        assert _checkpoint(new_best)["meta"]["hook_msgs"]["best_score"] == pytest.approx(resumed_ap, abs=1e-4)
    elif resumed_ap < best_score - 1e-4:
        assert not new_best.exists(), "a worse AP replaced the restored best checkpoint"
