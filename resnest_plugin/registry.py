"""The plugin's registries, for whichever MMPose generation is installed.

``MODELS`` (and ``DATASETS``) are the ``resnest_plugin``-scoped children of
MMPose's registries, made by the host module. This module's name matters on
MMPose 1.x: for a ``type='resnest_plugin.ResNeSt'`` lookup mmengine imports
``resnest_plugin.registry`` by itself (``Registry.get`` ->
``import_module(f'{scope}.registry')``), so such a config builds even
without ``custom_imports``.
"""
from __future__ import annotations

from .hosts import SCOPE, installed_host

__all__ = ["DATASETS", "MODELS", "SCOPE"]

if installed_host() == "mmpose1":
    from .hosts.mmpose1 import DATASETS, MODELS
else:
    from .hosts.mmpose0 import DATASETS, MODELS
