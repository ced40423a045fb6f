"""resnest_plugin: the ResNeSt backbone for MMPose 0.x as a plugin.

Importing this package applies the version-gated compatibility fixes
(:mod:`resnest_plugin.compat`) and registers the backbone in MMPose's
model registry under the scoped name ``resnest_plugin.ResNeSt``, leaving
MMPose's built-in ``ResNeSt`` untouched.
"""
from . import compat, models
from .models import ResNeSt
from .version import __version__

__all__ = ["ResNeSt", "__version__", "compat", "models"]

compat.apply()
