"""resnest_plugin: the ResNeSt backbone for MMPose 0.x and 1.x as a plugin.

The architecture (:mod:`resnest_plugin.models`) and the weight handling
(:mod:`resnest_plugin.weights`) are one host-free core. Importing this package imports the host module of the
installed MMPose generation (:mod:`resnest_plugin.hosts.mmpose0` or
:mod:`~resnest_plugin.hosts.mmpose1`), which applies that generation's
version-gated compatibility fixes and registers the backbone under the
scoped name ``resnest_plugin.ResNeSt`` (MMPose's built-in ``ResNeSt`` stays
untouched). Without MMPose the core still imports; nothing is registered.
"""
from . import hosts, models
from .version import __version__

HOST = hosts.installed_host()
if HOST == "mmpose0":
    from .hosts.mmpose0 import ResNeSt
elif HOST == "mmpose1":
    from .hosts.mmpose1 import ResNeSt
else:  # no MMPose: the core's fast model, with the core's output (a tuple), unregistered
    from .models import FastResNeSt as ResNeSt

__all__ = ["HOST", "ResNeSt", "__version__", "hosts", "models"]
