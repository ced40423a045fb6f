"""resnest_plugin: the ResNeSt backbone for MMPose 0.x as a plugin.

Importing this package applies the version-gated compatibility fixes
(:mod:`resnest_plugin.compat`) and registers the backbone in MMPose's
model registry under the scoped name ``resnest_plugin.ResNeSt``.
"""
from .version import __version__

__all__ = ["__version__"]
