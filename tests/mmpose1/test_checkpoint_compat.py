"""MMPose 1.x's own checkpoints through the plugin's loader: what mmengine writes, how init_cfg loads.

The 1.x counterpart of ``tests/mmpose0/test_checkpoint_compat.py``; the
host-free formats, strict modes and report are in ``tests/test_weights.py``.
Oracles: MMPose 1.3.2's estimator with its built-in ``ResNeSt`` (built from
MMPose's own config), mmengine 0.10's ``save_checkpoint`` with what its
Runner puts beside the weights, and mmengine's ``mmcls://`` table. Offline:
URLs are only served from a pre-filled cache.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import get_mmcls_models, save_checkpoint
from mmpose.registry import MODELS as MMPOSE_MODELS
from mmpose.utils import register_all_modules
from torch import nn

from resnest_plugin.hosts.mmpose1 import ResNeSt

from checkpoint_helpers import (assert_same_features, captured_records, mmcls_layout,  # noqa: F401
                                no_load_warnings, offline_hub_cache, one_thread)
from model_helpers import randomise

pytestmark = pytest.mark.usefixtures("one_thread")
register_all_modules(init_default_scope=True)

R50_CONFIG = (Path(__file__).resolve().parents[2] / "configs" / "body_2d_keypoint" / "topdown_heatmap" /
              "coco" / "td-hm_resnest50_8xb64-210e_coco-256x192.py")


@pytest.fixture(scope="module")
def builtin_estimator() -> nn.Module:
    """MMPose's own estimator with its built-in ResNeSt-50 (our R50 config's model), randomised."""
    cfg = Config.fromfile(str(R50_CONFIG))
    cfg.model.backbone = dict(type="ResNeSt", depth=50)
    return randomise(MMPOSE_MODELS.build(cfg.model), seed=7).eval()


def test_runner_checkpoint_written_by_mmengine_loads_through_init_cfg(builtin_estimator: nn.Module,
                                                                      tmp_path: Path) -> None:
    """What mmengine's Runner.save_checkpoint writes: numpy scalars in meta, a MessageHub state."""
    hub = MessageHub.get_instance("test_checkpoint_compat")
    hub.update_scalar("train/loss", 0.25)
    checkpoint = dict(meta=dict(epoch=210, iter=1000, seed=42, best_score=np.float64(0.7213)),
                      state_dict=builtin_estimator.state_dict(), message_hub=hub.state_dict())
    path = tmp_path / "best_coco_AP_epoch_210.pth"
    save_checkpoint(checkpoint, str(path))

    ours = ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    no_load_warnings(ours.init_weights)
    assert ours.is_init
    assert_same_features(ours, lambda model, x: model(x), copy.deepcopy(builtin_estimator.backbone))


def test_config_init_cfg_mmcls_name_resolves_through_mmengine_table(builtin_estimator: nn.Module,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Our R50 config's ``init_cfg=dict(type='Pretrained', checkpoint='mmcls://resnest50')``."""
    backbone = builtin_estimator.backbone.state_dict()
    offline_hub_cache(monkeypatch, tmp_path, get_mmcls_models()["resnest50"], mmcls_layout(backbone))

    cfg = Config.fromfile(str(R50_CONFIG))
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint="mmcls://resnest50")
    model = MMPOSE_MODELS.build(cfg.model)
    with captured_records(ResNeSt.checkpoint_sources.get_logger()) as records:
        model.init_weights()  # mmengine's BaseModule walks the children, as the Runner does
    assert type(model.backbone) is ResNeSt and model.backbone.is_init
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in backbone.items())
    assert any("'mmcls://resnest50' (mmcls names)" in r.getMessage() for r in records), \
        "no report on the current MMLogger"
