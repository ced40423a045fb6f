"""MMPose 0.x side of the ONNX export: config + checkpoint -> :class:`ExportableModel`.

Builds the model with MMPose 0.x's own builder (mmcv ``Config.fromfile``, whose
``custom_imports`` registers our backbone, and ``mmpose.models.build_posenet``)
and reads from the config what the graph must reproduce: the test pipeline's
normalisation and box padding, ``test_cfg`` (flip test, ``shift_heatmap``,
``post_process``) and the dataset info (names, skeleton, flip pairs, sigmas).
The graph itself is host-free (:mod:`resnest_plugin.deploy.graph`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import mmpose
from mmcv import Config
from mmpose.datasets import DatasetInfo
from mmpose.models import build_posenet

from ...deploy.checkpoint import load_pose_weights
from ...deploy.graph import ExportableModel, FlipTest, HeatmapNetwork, Normalisation, \
    flip_indices_from_pairs

__all__ = ["exportable_model"]


def _step(pipeline: List[Dict[str, Any]], name: str) -> Optional[Dict[str, Any]]:
    """The first step of ``pipeline`` of type ``name``, or ``None``."""
    return next((step for step in pipeline if step.get("type") == name), None)


def exportable_model(config: Union[str, Path], checkpoint: Optional[Union[str, Path]]) -> ExportableModel:
    """Build a 0.x top-down heatmap model from ``config`` with ``checkpoint``'s weights.

    Args:
        config: A 0.x top-down config (e.g. ``configs/top_down/resnest/coco/*.py``).
        checkpoint: Its trained checkpoint (``keypoint_head.*`` keys, or 1.x
            ``head.*``), read weights-only; ``None`` keeps the initial weights
            (tests).

    Returns:
        The eval-mode network and the numbers the graph and metadata need.

    Raises:
        ValueError: If the config asks for something the graph does not
            reproduce (a neck, ``post_process`` other than ``'default'``, UDP,
            a non-heatmap head, BGR network input).
    """
    cfg = Config.fromfile(str(config))
    cfg.model.pretrained = None  # the checkpoint holds every weight; no mmcls:// download
    test_cfg = cfg.model.get("test_cfg", {})
    post_process = test_cfg.get("post_process", "default")
    problems = []
    if cfg.model.get("neck"):
        problems.append("a neck")
    if post_process != "default" or test_cfg.get("use_udp", False):
        problems.append(f"test_cfg.post_process={post_process!r} / use_udp (only 'default')")
    if test_cfg.get("target_type", "GaussianHeatmap").lower() != "gaussianheatmap":
        problems.append(f"target_type={test_cfg.get('target_type')!r}")
    pipeline = cfg.data.test.pipeline
    loader = _step(pipeline, "LoadImageFromFile") or {}
    if loader.get("channel_order", "rgb") != "rgb":
        problems.append("LoadImageFromFile channel_order other than 'rgb'")
    normalize = _step(pipeline, "NormalizeTensor")
    if normalize is None:
        problems.append("no NormalizeTensor in data.test.pipeline")
    if problems:
        raise ValueError(f"{config}: the ONNX export reproduces MMPose's default top-down "
                         f"heatmap path only; this config has {', '.join(problems)}")
    model = build_posenet(cfg.model)
    if checkpoint is not None:
        load_pose_weights(model, checkpoint, head_prefix="keypoint_head.")
    model.eval()

    info = DatasetInfo(cfg.data.test.dataset_info)
    names = [info.keypoint_id2name[index] for index in range(info.keypoint_num)]
    flip_pairs = [list(map(int, pair)) for pair in info.flip_pairs]
    data_cfg = cfg.data.test.data_cfg
    box_step = _step(pipeline, "TopDownGetBboxCenterScale") or {}
    return ExportableModel(
        network=HeatmapNetwork(model.backbone, model.keypoint_head).eval(),
        # ToTensor divides by 255, NormalizeTensor uses the 0-1 mean/std (unit_scale).
        normalisation=Normalisation(mean=tuple(255.0 * m for m in normalize["mean"]),
                                    std=tuple(255.0 * s for s in normalize["std"]),
                                    unit_scale=True),
        # TopDown.forward_test: flip_test defaults to True when test_cfg omits it.
        flip=FlipTest(enabled=bool(test_cfg.get("flip_test", True)),
                      shift_heatmap=bool(test_cfg.get("shift_heatmap", False)),
                      flip_indices=flip_indices_from_pairs(len(names), flip_pairs)),
        decode="mmpose0-default",
        input_size=tuple(int(v) for v in data_cfg.image_size),
        heatmap_size=tuple(int(v) for v in data_cfg.heatmap_size),
        keypoint_names=names,
        skeleton=[list(map(int, link)) for link in info.skeleton],
        flip_pairs=flip_pairs,
        sigmas=[float(s) for s in info.sigmas],
        # TopDownGetBboxCenterScale's default padding is 1.25.
        box_padding=float(box_step.get("padding", 1.25)),
        mmpose_version=mmpose.__version__,
    )
