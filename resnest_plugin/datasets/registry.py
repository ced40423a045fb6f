"""The plugin's dataset registry: MMPose's ``DATASETS`` child scoped ``resnest_plugin``.

Configs reach the plugin's datasets by ``type='resnest_plugin.<Name>'``
(see :mod:`resnest_plugin.registry`).
"""
from mmpose.datasets.builder import DATASETS as MMPOSE_DATASETS

from ..registry import SCOPE, child_registry

__all__ = ["SCOPE", "DATASETS"]

DATASETS = child_registry(MMPOSE_DATASETS)
