"""MMPose 0.x's own checkpoints through the plugin's loader: what mmcv writes, how a TopDown loads.

The host-free formats, strict modes and report are tested on both stacks in
``tests/test_weights.py``; here the oracles are MMPose 0.29 itself: its
built-in ``ResNeSt`` inside a ``TopDown`` (features to compare), mmcv 1.7's
``save_checkpoint`` (the files training writes), ``TopDown.init_weights``
(how a config's ``pretrained`` reaches the backbone) and mmcv's
``mmcls://`` table. Offline: URLs are only served from a pre-filled cache.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmcv.runner.checkpoint import get_mmcls_models
from mmpose.models import build_posenet
from torch import nn

from resnest_plugin.hosts.mmpose0 import ResNeSt
from resnest_plugin.weights import load_pretrained

from checkpoint_helpers import (assert_same_features, mmcls_layout, no_load_warnings,  # noqa: F401
                                offline_hub_cache, one_thread)
from model_helpers import randomise

pytestmark = pytest.mark.usefixtures("one_thread")

R50_CONFIG = (Path(__file__).resolve().parents[2] / "configs" / "top_down" / "resnest" / "coco" /
              "resnest50_coco_256x192.py")


@pytest.fixture(scope="module")
def builtin_topdown() -> nn.Module:
    """MMPose's own TopDown with its built-in ResNeSt-50 (our R50 config's model), randomised."""
    cfg = Config.fromfile(str(R50_CONFIG))
    cfg.model.update(pretrained=None, backbone=dict(type="ResNeSt", depth=50))
    model = randomise(build_posenet(cfg.model), seed=7)
    model.eval()  # not chained: MMPose's ResNet.train() returns None
    return model


def test_training_checkpoint_written_by_mmcv_loads_with_builtin_features(builtin_topdown: nn.Module,
                                                                         tmp_path: Path) -> None:
    """What mmcv's EvalHook(save_best='AP') writes: optimizer state, numpy scalars in meta."""
    path = tmp_path / "best_AP_epoch_210.pth"
    optimizer = torch.optim.Adam(builtin_topdown.parameters(), lr=5e-4)
    meta = dict(epoch=210, iter=1000, seed=42, config="model = dict(...)",
                hook_msgs=dict(best_score=np.float64(0.7213), best_ckpt=str(path), last_ckpt=str(path)),
                extra=dict(ar=np.float32(0.77), count=np.int64(3), flag=np.bool_(True)))
    save_checkpoint(builtin_topdown, str(path), optimizer=optimizer, meta=meta)
    trusted = torch.load(path, weights_only=False)  # written just above
    assert type(trusted["meta"]["hook_msgs"]["best_score"]) is np.float64

    ours = ResNeSt(depth=50).eval()
    no_load_warnings(lambda: ours.init_weights(str(path)))
    report = load_pretrained(ours, str(path))
    head_keys = [k for k in builtin_topdown.state_dict() if k.startswith("keypoint_head.")]
    assert report.is_clean and report.source == "mmpose" and report.num_ignored == len(head_keys)
    assert_same_features(ours, lambda model, x: model(x), copy.deepcopy(builtin_topdown.backbone))


def test_topdown_pretrained_mmcls_name_resolves_through_mmcv_table(
        builtin_topdown: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Our R50 config's ``pretrained='mmcls://resnest50'``: TopDown hands it to our backbone."""
    backbone = builtin_topdown.backbone.state_dict()
    offline_hub_cache(monkeypatch, tmp_path, get_mmcls_models()["resnest50"], mmcls_layout(backbone))

    cfg = Config.fromfile(str(R50_CONFIG))
    assert cfg.model.pretrained == "mmcls://resnest50"
    with caplog.at_level(logging.INFO, logger="mmpose"):  # TopDown.__init__ calls init_weights
        model = build_posenet(cfg.model)
    assert type(model.backbone) is ResNeSt
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in backbone.items())
    assert any(r.name == "mmpose" and "'mmcls://resnest50' (mmcls names)" in r.getMessage()
               for r in caplog.records), "no report on MMPose's root logger"
