"""Scoped child registries under MMPose's: the plugin's names never clash.

MMPose 0.x already registers its own ``ResNeSt`` (since v0.10); registering
the same name raises ``KeyError``, and ``force=True`` would silently replace
MMPose's for every config. mmcv 1.x registries have scopes instead: a child
registry with scope ``resnest_plugin`` under one of MMPose's registries is
reached from any MMPose config by ``type='resnest_plugin.<Name>'``, while
MMPose's own names keep building MMPose's classes.
"""
from __future__ import annotations

from mmcv.utils import Registry

__all__ = ["SCOPE", "child_registry"]

SCOPE = "resnest_plugin"


def child_registry(parent: Registry) -> Registry:
    """Return the ``resnest_plugin``-scoped child of ``parent``, creating it once.

    mmcv asserts that a scope is added to a parent only once, so a second
    creation (e.g. after ``importlib.reload``) reuses the existing child.

    Args:
        parent: One of MMPose's registries (``MODELS``, ``DATASETS``).

    Returns:
        The child registry, named like its parent.
    """
    existing = parent.children.get(SCOPE)
    if existing is not None:
        return existing
    return Registry(parent.name, parent=parent, scope=SCOPE)
