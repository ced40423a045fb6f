"""What the shared tests need to know about the installed MMPose generation.

The shared tests (``tests/*.py``) run on both stacks; the few places where
MMPose 0.x and 1.x differ for them are answered here, once: which class the
host registers, the output convention (0.x: a bare tensor for one
``out_indices``; 1.x: always a tuple), how a backbone is given a checkpoint
(0.x: ``init_weights(name)``; 1.x: ``init_cfg``) and the host's ``mmcls://``
table.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt  # same path on 0.x and 1.x

import resnest_plugin

__all__ = ["BuiltinResNeSt", "PluginResNeSt", "as_tuple", "build_from_config", "host_mmcls_models",
           "pretrained_plugin_backbone"]

#: The class the installed host registers as ``resnest_plugin.ResNeSt``.
PluginResNeSt = resnest_plugin.ResNeSt


def as_tuple(output: Any) -> Tuple[torch.Tensor, ...]:
    """A backbone output as a tuple of feature maps: either host's, or TorchScript's list."""
    if isinstance(output, (tuple, list)):
        return tuple(output)
    return (output,)


def build_from_config(cfg: Dict[str, Any]) -> torch.nn.Module:
    """Build a backbone config through the installed MMPose's registry, as its tools do."""
    if resnest_plugin.HOST == "mmpose0":
        from mmpose.models import build_backbone

        return build_backbone(cfg)
    from mmpose.registry import MODELS

    return MODELS.build(cfg)


def pretrained_plugin_backbone(checkpoint: str, **kwargs: Any) -> torch.nn.Module:
    """The host's registered backbone with weights from ``checkpoint``, loaded the host's way.

    0.x: ``init_weights(checkpoint)``, as ``TopDown.init_weights(pretrained)``
    calls it; 1.x: ``init_cfg=dict(type='Pretrained', checkpoint=...)`` and
    ``init_weights()``, as the Runner does.
    """
    if resnest_plugin.HOST == "mmpose0":
        model = PluginResNeSt(**kwargs)
        model.init_weights(checkpoint)
        return model
    model = PluginResNeSt(init_cfg=dict(type="Pretrained", checkpoint=checkpoint), **kwargs)
    model.init_weights()
    return model


def host_mmcls_models() -> Mapping[str, str]:
    """The installed host's ``mmcls://`` table: mmcv 1.x's on 0.x, mmengine's on 1.x."""
    if resnest_plugin.HOST == "mmpose0":
        from mmcv.runner.checkpoint import get_mmcls_models
    else:
        from mmengine.runner.checkpoint import get_mmcls_models
    return get_mmcls_models()
