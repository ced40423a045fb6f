"""Run MMPose's stock tools (train.py / test.py, unmodified) on the bundled mini COCO.

Shared by the end-to-end tests. MMPose's tools ship inside the installed
package (``mmpose/.mim/tools``); the configs are this repository's, and
``--cfg-options`` points them at ``tests/data/coco`` instead of the full
COCO under ``data/coco``.

Example:
    >>> options = mini_coco_cfg_options(coco_root, total_epochs=2)
    >>> proc = run_stock_tool("train.py", [str(config), "--work-dir", str(work_dir),
    ...                                    *cfg_options_args(options)])
    >>> metrics = parse_test_output(run_stock_tool("test.py", [...]).stdout)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from cli_helpers import cfg_options_args, stock_tool  # noqa: F401  (re-exported for the tests)

__all__ = ["cfg_options_args", "mini_coco_cfg_options", "run_stock_tool", "stock_tool"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def mini_coco_cfg_options(
    coco_root: Path,
    *,
    image_size: Optional[Tuple[int, int]] = (64, 96),
    samples_per_gpu: int = 2,
    test_samples_per_gpu: int = 16,
    total_epochs: Optional[int] = None,
    lr: Optional[float] = None,
    warmup_iters: Optional[int] = None,
    interval: int = 1,
    max_keep_ckpts: Optional[int] = 2,
) -> Dict[str, Any]:
    """Config overrides that point a shipped COCO config at the bundled mini COCO.

    Args:
        coco_root: Folder with the mini COCO images, ``test_coco.json`` and
            ``test_coco_det_AP_H_56.json`` (``tests/data/coco``).
        image_size: Network input ``(width, height)`` for train/val/test
            (MMPose's order); heatmaps are a quarter of it. ``None`` keeps the
            config's size (256x192 / 384x288: slow on CPU).
        samples_per_gpu: Training batch size. The train loader drops the last
            partial batch, so no batch of 1 reaches ResNeSt's BatchNorm after
            global pooling (ResNeSt#35).
        test_samples_per_gpu: Batch size of the val/test loaders.
        total_epochs: Number of training epochs, or ``None`` to keep 210.
        lr: Adam learning rate, or ``None`` to keep 5e-4.
        warmup_iters: Linear warm-up length, or ``None`` to keep 500.
        interval: Epochs between evaluations and between checkpoints; log
            every iteration.
        max_keep_ckpts: Keep only the newest ``epoch_*.pth`` files (a
            ResNeSt-50 checkpoint with Adam state is ~430 MB); ``None``
            keeps all.

    Returns:
        ``{dotted.key: value}`` for ``Config.merge_from_dict`` or, through
        :func:`cfg_options_args`, for the tools' ``--cfg-options``.

    Raises:
        ValueError: If ``samples_per_gpu`` < 2 or ``image_size`` is not a
            pair of positive multiples of 32.
    """
    if samples_per_gpu < 2:
        raise ValueError(f"samples_per_gpu={samples_per_gpu}: ResNeSt needs training batches of "
                         "at least 2 (BatchNorm after global pooling)")
    root = Path(coco_root).resolve()
    options: Dict[str, Any] = {
        "model.pretrained": None,  # offline: no mmcls:// download
        "data.samples_per_gpu": samples_per_gpu,
        "data.workers_per_gpu": 0,
        "data.train_dataloader.drop_last": True,
        "data.val_dataloader.samples_per_gpu": test_samples_per_gpu,
        "data.test_dataloader.samples_per_gpu": test_samples_per_gpu,
        "evaluation.interval": interval,
        "checkpoint_config.interval": interval,
        "log_config.interval": 1,
    }
    for split in ("train", "val", "test"):
        options[f"data.{split}.ann_file"] = str(root / "test_coco.json")
        options[f"data.{split}.img_prefix"] = f"{root}/"
        options[f"data.{split}.data_cfg.bbox_file"] = str(root / "test_coco_det_AP_H_56.json")
        if image_size is not None:
            width, height = image_size
            if width <= 0 or height <= 0 or width % 32 or height % 32:
                raise ValueError(f"image_size={image_size}: expected (width, height), positive "
                                 "multiples of 32 (the backbone's output stride)")
            options[f"data.{split}.data_cfg.image_size"] = [width, height]
            options[f"data.{split}.data_cfg.heatmap_size"] = [width // 4, height // 4]
    if max_keep_ckpts is not None:
        options["checkpoint_config.max_keep_ckpts"] = max_keep_ckpts
    if total_epochs is not None:
        options["total_epochs"] = total_epochs
    if lr is not None:
        options["optimizer.lr"] = lr
    if warmup_iters is not None:
        options["lr_config.warmup_iters"] = warmup_iters
    return options


def run_stock_tool(tool: str, args: Sequence[str], *, cwd: Optional[Path] = None,
                   timeout: float = 1800, env: Optional[Mapping[str, str]] = None,
                   ) -> subprocess.CompletedProcess:
    """Run one of MMPose's stock tools with this interpreter; never raises on failure.

    Args:
        tool: Tool file name, e.g. ``"train.py"`` or ``"test.py"``.
        args: Its command-line arguments.
        cwd: Working directory (default: the repository root, so relative
            config paths work).
        timeout: Seconds before the run is killed.
        env: Extra environment variables.

    Returns:
        The finished process, ``stdout``/``stderr`` captured as text.
    """
    full_env = dict(os.environ)
    # One intra-op thread unless the caller says otherwise: on a shared 2-core
    # machine, OpenMP threads that oversubscribe the cores made a training
    # iteration ~10x slower here (measured: 2 threads 30 s, 1 thread 2 s per
    # ResNeSt-50 forward/backward while another job used both cores).
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(stock_tool(tool)), *args], cwd=cwd or REPO_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
