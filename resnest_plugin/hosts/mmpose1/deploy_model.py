"""MMPose 1.x side of the ONNX export: config + checkpoint -> :class:`ExportableModel`.

Builds the model with MMPose 1.x's own builder (mmengine ``Config.fromfile``,
whose ``custom_imports`` registers our backbone, and ``mmpose.apis.init_model``
without a checkpoint, which also resolves the dataset meta) and reads from the
config what the graph must reproduce: ``data_preprocessor`` (mean/std,
``bgr_to_rgb``), the codec (``MSRAHeatmap``, sizes), ``test_cfg`` (flip test,
``flip_mode``, ``shift_heatmap``) and the val pipeline's box padding. The
graph itself is host-free (:mod:`resnest_plugin.deploy.graph`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import mmpose
from mmengine.config import Config
from mmpose.apis import init_model

from ...deploy.checkpoint import load_pose_weights
from ...deploy.graph import ExportableModel, FlipTest, HeatmapNetwork, Normalisation

__all__ = ["exportable_model"]


def _step(pipeline: List[Dict[str, Any]], name: str) -> Optional[Dict[str, Any]]:
    """The first step of ``pipeline`` of type ``name``, or ``None``."""
    return next((step for step in pipeline if step.get("type") == name), None)


def exportable_model(config: Union[str, Path], checkpoint: Optional[Union[str, Path]]) -> ExportableModel:
    """Build a 1.x top-down heatmap model from ``config`` with ``checkpoint``'s weights.

    Args:
        config: A 1.x top-down config (e.g.
            ``configs/body_2d_keypoint/topdown_heatmap/coco/*.py``).
        checkpoint: Its trained checkpoint (``head.*`` keys, or 0.x
            ``keypoint_head.*``), read weights-only; ``None`` keeps the initial
            weights (tests).

    Returns:
        The eval-mode network and the numbers the graph and metadata need.

    Raises:
        ValueError: If the config asks for something the graph does not
            reproduce (a neck, a codec other than ``MSRAHeatmap(unbiased=False)``,
            a flip mode other than ``'heatmap'``, no BGR -> RGB conversion).
    """
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None  # the checkpoint holds every weight; no download
    test_cfg = cfg.model.get("test_cfg", None) or {}
    codec = cfg.model.head.get("decoder", None) or {}
    preprocessor = cfg.model.get("data_preprocessor", None) or {}
    problems = []
    if cfg.model.get("neck"):
        problems.append("a neck")
    if codec.get("type") != "MSRAHeatmap" or codec.get("unbiased", False):
        problems.append(f"head.decoder {dict(codec)!r} (only MSRAHeatmap, unbiased=False)")
    if test_cfg.get("flip_test", False) and test_cfg.get("flip_mode", "heatmap") != "heatmap":
        problems.append(f"test_cfg.flip_mode={test_cfg.get('flip_mode')!r}")
    if not preprocessor.get("bgr_to_rgb", False) or preprocessor.get("rgb_to_bgr", False):
        problems.append("a data_preprocessor without bgr_to_rgb=True")
    if problems:
        raise ValueError(f"{config}: the ONNX export reproduces MMPose's default top-down "
                         f"heatmap path only; this config has {', '.join(problems)}")
    model = init_model(cfg, checkpoint=None, device="cpu")
    if checkpoint is not None:
        load_pose_weights(model, checkpoint, head_prefix="head.")
    model.eval()

    meta = model.dataset_meta
    names = [meta["keypoint_id2name"][index] for index in range(meta["num_keypoints"])]
    pipeline = cfg.test_dataloader.dataset.pipeline
    box_step = _step(pipeline, "GetBBoxCenterScale") or {}
    return ExportableModel(
        network=HeatmapNetwork(model.backbone, model.head).eval(),
        # PoseDataPreprocessor: BGR -> RGB, then (x - mean) / std on the 0-255 values.
        normalisation=Normalisation(mean=tuple(float(m) for m in preprocessor["mean"]),
                                    std=tuple(float(s) for s in preprocessor["std"]),
                                    unit_scale=False),
        # HeatmapHead.predict: flip_test defaults to False when test_cfg omits it.
        flip=FlipTest(enabled=bool(test_cfg.get("flip_test", False)),
                      shift_heatmap=bool(test_cfg.get("shift_heatmap", False)),
                      flip_indices=tuple(int(i) for i in meta["flip_indices"])),
        decode="mmpose1-msra",
        input_size=tuple(int(v) for v in codec["input_size"]),
        heatmap_size=tuple(int(v) for v in codec["heatmap_size"]),
        keypoint_names=names,
        skeleton=[list(map(int, link)) for link in meta["skeleton_links"]],
        # parse_pose_metainfo lists each pair in both orders; the contract lists it once.
        flip_pairs=[list(pair) for pair in sorted({tuple(sorted(map(int, p))) for p in meta["flip_pairs"]})],
        sigmas=[float(s) for s in meta["sigmas"]],
        # GetBBoxCenterScale's default padding is 1.25.
        box_padding=float(box_step.get("padding", 1.25)),
        mmpose_version=mmpose.__version__,
    )
