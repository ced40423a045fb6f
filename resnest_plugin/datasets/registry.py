"""The plugin's dataset registry: a child of MMPose's, scoped ``resnest_plugin``.

Same pattern as :mod:`resnest_plugin.models.registry`: configs reach the
plugin's datasets by ``type='resnest_plugin.<Name>'`` while MMPose's own
names keep building MMPose's classes.
"""
from __future__ import annotations

from mmcv.utils import Registry
from mmpose.datasets.builder import DATASETS as MMPOSE_DATASETS

__all__ = ["SCOPE", "DATASETS"]

SCOPE = "resnest_plugin"


def _child_registry() -> Registry:
    """Return the scoped child of MMPose's dataset registry, creating it once.

    mmcv asserts that a scope is added to a parent only once, so a second
    creation (e.g. after ``importlib.reload``) reuses the existing child.
    """
    existing = MMPOSE_DATASETS.children.get(SCOPE)
    if existing is not None:
        return existing
    return Registry("dataset", parent=MMPOSE_DATASETS, scope=SCOPE)


DATASETS = _child_registry()
