"""Run MMPose 1.x's stock tools (train.py / test.py, unmodified) on the bundled mini COCO.

Shared by the 1.x end-to-end tests. MMPose ships its tools inside the
installed wheel (``mmpose/.mim/tools``); the configs are this repository's
(``configs/body_2d_keypoint/``), and ``--cfg-options`` points them at
``tests/data/coco`` (flat: images next to ``test_coco.json``) instead of the
full COCO under ``data/coco``, offline (``model.backbone.init_cfg=None``: no
``mmcls://resnest50`` download) and small enough for a 2-core CPU.

Example:
    >>> options = mini_coco_cfg_options(coco_root, max_epochs=1)
    >>> proc = run_stock_tool("train.py", [str(CONFIG_R50), "--work-dir", str(work_dir),
    ...                                    *cfg_options_args(options)])
    >>> scalars = train_scalars(work_dir)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from cli_helpers import cfg_options_args, stock_tool  # noqa: F401  (re-exported for the tests)

__all__ = ["CONFIG_R50", "REPO_ROOT", "cfg_options_args", "mini_coco_cfg_options",
           "newest_log", "run_stock_tool", "stock_tool", "tool_env",
           "train_scalars"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_R50 = (REPO_ROOT / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
              / "td-hm_resnest50_8xb64-210e_coco-256x192.py")


def _pipeline_index(pipeline: Sequence[Mapping[str, Any]], transform: str) -> int:
    (index,) = [i for i, step in enumerate(pipeline) if step["type"] == transform]
    return index


def mini_coco_cfg_options(
    coco_root: Path,
    *,
    config: Path = CONFIG_R50,
    input_size: Optional[Tuple[int, int]] = (64, 96),
    batch_size: int = 2,
    test_batch_size: int = 16,
    max_epochs: Optional[int] = 1,
    checkpoint_interval: int = 1,
    max_keep_ckpts: Optional[int] = 2,
    bbox_score_thr: Optional[float] = None,
    validate: bool = True,
) -> Dict[str, Any]:
    """Config overrides that point a shipped 1.x COCO config at the bundled mini COCO.

    Args:
        coco_root: Folder with the mini COCO images, ``test_coco.json`` and
            ``test_coco_det_AP_H_56.json`` (``tests/data/coco``).
        config: The 1.x config the overrides are for; its pipelines are read
            to find the indices of ``TopdownAffine`` / ``GenerateTarget``.
        input_size: Network input ``(width, height)`` (MMPose's order) for
            train/val/test and the codec; heatmaps are a quarter of it.
            ``None`` keeps the config's size (256x192: slow on CPU).
        batch_size: Training batch size. The train loader drops the last
            partial batch, so no batch of 1 reaches ResNeSt's BatchNorm after
            global pooling (ResNeSt#35).
        test_batch_size: Batch size of the val/test loaders.
        max_epochs: ``train_cfg.max_epochs`` (``None`` keeps 210); also the
            validation interval, so a run without ``--no-validate`` evaluates
            once, at the end.
        checkpoint_interval: Epochs between checkpoints; the logger logs every
            iteration.
        max_keep_ckpts: Keep only the newest ``epoch_*.pth`` files (a
            ResNeSt-50 checkpoint with Adam state is ~300 MB); ``None`` keeps all.
        bbox_score_thr: Keep only the detector boxes of ``bbox_file`` with at
            least this score at test time (``filter_cfg.bbox_score_thr``;
            0.5 keeps 18 of the 118 boxes), or ``None`` for all of them.
        validate: ``False`` for train.py's ``--no-validate``: it sets
            ``val_dataloader``/``val_evaluator`` to ``None`` before merging
            ``--cfg-options``, and mmengine refuses to merge a dict into
            ``None``, so no ``val_*`` key may be passed then.

    Returns:
        ``{dotted.key: value}`` for ``Config.merge_from_dict`` or, through
        :func:`cfg_options_args`, for the tools' ``--cfg-options``.

    Raises:
        ValueError: If ``batch_size`` < 2 or ``input_size`` is not a pair of
            positive multiples of 32.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size}: ResNeSt needs training batches of at least 2 "
                         "(BatchNorm after global pooling)")
    root = Path(coco_root).resolve()
    ann_file = str(root / "test_coco.json")
    options: Dict[str, Any] = {
        "model.backbone.init_cfg": None,  # offline: no mmcls://resnest50 download
        "train_dataloader.batch_size": batch_size,
        "train_dataloader.drop_last": True,
        "default_hooks.logger.interval": 1,
        "default_hooks.checkpoint.interval": checkpoint_interval,
        "test_evaluator.ann_file": ann_file,
    }
    if validate:
        options["val_evaluator.ann_file"] = ann_file
    for split in ("train", "val", "test") if validate else ("train", "test"):
        loader = f"{split}_dataloader"
        options[f"{loader}.num_workers"] = 0
        options[f"{loader}.persistent_workers"] = False
        options[f"{loader}.dataset.data_root"] = str(root)
        options[f"{loader}.dataset.ann_file"] = ann_file
        # An absolute prefix: mmengine does not join it to data_root again.
        options[f"{loader}.dataset.data_prefix.img"] = f"{root}/"
        if split != "train":
            options[f"{loader}.batch_size"] = test_batch_size
            options[f"{loader}.dataset.bbox_file"] = str(root / "test_coco_det_AP_H_56.json")
    if bbox_score_thr is not None:
        options["test_dataloader.dataset.filter_cfg.bbox_score_thr"] = bbox_score_thr
    if max_epochs is not None:
        options["train_cfg.max_epochs"] = max_epochs
        if validate:
            options["train_cfg.val_interval"] = max_epochs
    if max_keep_ckpts is not None:
        options["default_hooks.checkpoint.max_keep_ckpts"] = max_keep_ckpts
    if input_size is not None:
        options.update(_input_size_options(config, input_size, validate))
    return options


def _input_size_options(config: Path, input_size: Tuple[int, int], validate: bool) -> Dict[str, Any]:
    from mmengine.config import Config

    width, height = input_size
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise ValueError(f"input_size={input_size}: expected (width, height), positive multiples "
                         "of 32 (the backbone's output stride)")
    size, heatmap = (width, height), (width // 4, height // 4)
    cfg = Config.fromfile(str(config))
    options: Dict[str, Any] = {"model.head.decoder.input_size": size,
                               "model.head.decoder.heatmap_size": heatmap}
    train = cfg.train_dataloader.dataset.pipeline
    affine, target = _pipeline_index(train, "TopdownAffine"), _pipeline_index(train, "GenerateTarget")
    options[f"train_dataloader.dataset.pipeline.{affine}.input_size"] = size
    options[f"train_dataloader.dataset.pipeline.{target}.encoder.input_size"] = size
    options[f"train_dataloader.dataset.pipeline.{target}.encoder.heatmap_size"] = heatmap
    for split in ("val", "test") if validate else ("test",):
        pipeline = cfg[f"{split}_dataloader"].dataset.pipeline
        options[f"{split}_dataloader.dataset.pipeline.{_pipeline_index(pipeline, 'TopdownAffine')}"
                ".input_size"] = size
    return options


def tool_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of a stock-tool subprocess: one intra-op thread unless told otherwise.

    On the shared 2-core machine, OpenMP threads that oversubscribe the cores
    make a ResNeSt-50 iteration many times slower (measured on the 0.x stack).
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def run_stock_tool(tool: str, args: Sequence[str], *, cwd: Optional[Path] = None,
                   timeout: float = 900, env: Optional[Mapping[str, str]] = None,
                   ) -> subprocess.CompletedProcess:
    """Run one of MMPose 1.x's stock tools with this interpreter; never raises on failure.

    Args:
        tool: Tool file name, e.g. ``"train.py"`` or ``"test.py"``.
        args: Its command-line arguments.
        cwd: Working directory (default: the repository root).
        timeout: Seconds before the run is killed.
        env: Extra environment variables.

    Returns:
        The finished process, ``stdout``/``stderr`` captured as text.
    """
    return subprocess.run([sys.executable, str(stock_tool(tool)), *args], cwd=cwd or REPO_ROOT,
                          env=tool_env(env), capture_output=True, text=True, timeout=timeout)


def newest_log(work_dir: Path) -> str:
    """Text of the newest run's ``<work_dir>/<timestamp>/<timestamp>.log`` (mmengine's layout)."""
    logs = sorted(Path(work_dir).glob("*/*.log"))
    return logs[-1].read_text() if logs else ""


def train_scalars(work_dir: Path) -> List[Dict[str, Any]]:
    """The training records (``loss``, ``lr``, ``iter``, ...) of every run in ``work_dir``.

    Read from LocalVisBackend's ``<timestamp>/vis_data/scalars.json`` (one JSON
    object per logged iteration), oldest run first.
    """
    records: List[Dict[str, Any]] = []
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if "loss" in r]
