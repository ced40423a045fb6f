"""resnest_plugin: the ResNeSt backbone for MMPose 0.x as a plugin.

Importing this package applies the version-gated compatibility fixes
(:mod:`resnest_plugin.compat`) and registers the backbone in MMPose's
model registry under the scoped name ``resnest_plugin.ResNeSt``, leaving
MMPose's built-in ``ResNeSt`` untouched, and registers
``resnest_plugin.CheckedTopDownCocoDataset`` (MMPose's COCO dataset with
pre-flight checks that name a missing or corrupt file).
"""
from . import compat, datasets, models
from .models import ResNeSt
from .version import __version__

__all__ = ["ResNeSt", "__version__", "compat", "datasets", "models"]

compat.apply()
