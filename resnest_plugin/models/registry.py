"""The plugin's model registry: MMPose's ``MODELS`` child scoped ``resnest_plugin``.

Configs build the backbone with ``type='resnest_plugin.ResNeSt'``;
``type='ResNeSt'`` keeps building MMPose's built-in (see
:mod:`resnest_plugin.registry`).
"""
from mmpose.models.builder import MODELS as MMPOSE_MODELS

from ..registry import SCOPE, child_registry

__all__ = ["SCOPE", "MODELS"]

MODELS = child_registry(MMPOSE_MODELS)
