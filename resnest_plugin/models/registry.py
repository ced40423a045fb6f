"""The plugin's model registry: a child of MMPose's, scoped ``resnest_plugin``.

MMPose 0.x already registers its own ``ResNeSt`` (since v0.10); registering
the same name raises ``KeyError``, and ``force=True`` would silently replace
MMPose's for every config. mmcv 1.x registries have scopes instead: a child
registry with scope ``resnest_plugin`` under MMPose's ``MODELS`` is reached
from any MMPose config by ``type='resnest_plugin.ResNeSt'``, while
``type='ResNeSt'`` keeps building MMPose's built-in.
"""
from __future__ import annotations

from mmcv.utils import Registry
from mmpose.models.builder import MODELS as MMPOSE_MODELS

__all__ = ["SCOPE", "MODELS"]

SCOPE = "resnest_plugin"


def _child_registry() -> Registry:
    """Return the scoped child of MMPose's registry, creating it once.

    mmcv asserts that a scope is added to a parent only once, so a second
    creation (e.g. after ``importlib.reload``) reuses the existing child.
    """
    existing = MMPOSE_MODELS.children.get(SCOPE)
    if existing is not None:
        return existing
    return Registry("models", parent=MMPOSE_MODELS, scope=SCOPE)


MODELS = _child_registry()
