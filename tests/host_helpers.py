"""What the shared tests need to know about the installed MMPose generation.

The shared tests (``tests/*.py``) run on both stacks; the few places where
MMPose 0.x and 1.x differ for them are answered here, once: which class the
host registers and the output convention (0.x: a bare tensor for one
``out_indices``; 1.x: always a tuple).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt  # same path on 0.x and 1.x

import resnest_plugin

__all__ = ["BuiltinResNeSt", "PluginResNeSt", "as_tuple", "build_from_config"]

#: The class the installed host registers as ``resnest_plugin.ResNeSt``.
PluginResNeSt = resnest_plugin.ResNeSt


def as_tuple(output: Any) -> Tuple[torch.Tensor, ...]:
    """A backbone output as a tuple of feature maps, on either host."""
    return output if isinstance(output, tuple) else (output,)


def build_from_config(cfg: Dict[str, Any]) -> torch.nn.Module:
    """Build a backbone config through the installed MMPose's registry, as its tools do."""
    if resnest_plugin.HOST == "mmpose0":
        from mmpose.models import build_backbone

        return build_backbone(cfg)
    from mmpose.registry import MODELS

    return MODELS.build(cfg)
