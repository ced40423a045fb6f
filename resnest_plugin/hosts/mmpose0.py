"""The MMPose 0.x host: compat fixes, scoped registration, host services, output convention.

Imported by ``import resnest_plugin`` when mmpose 0.x is installed, and by
the 0.x configs (``custom_imports=dict(imports=['resnest_plugin.hosts.mmpose0'])``),
so a 0.x config on the 1.x stack fails at once with a one-line
:class:`~resnest_plugin.hosts.StackMismatchError`.

Registration: MMPose 0.x already registers its own ``ResNeSt`` (since
v0.10); registering the same name raises ``KeyError``, and ``force=True``
would silently replace MMPose's for every config. mmcv 1.x registries have
scopes instead: a child registry with scope ``resnest_plugin`` under
MMPose's ``MODELS`` / ``DATASETS`` is reached from any config by
``type='resnest_plugin.<Name>'``, while MMPose's own names keep building
MMPose's classes.

Output convention: 0.x heads take a bare tensor, so the core backbone's
behaviour (a tensor for one ``out_indices``, a tuple for several) is the
host's as it is; the core class is registered unchanged.
"""
from __future__ import annotations

from . import SCOPE, require_host

require_host("mmpose0", "resnest_plugin.hosts.mmpose0 (imported by this config)")

# Below: only after the host check, so the wrong stack fails with one line.
from mmcv.runner.checkpoint import (_get_mmcv_home, get_external_models,  # noqa: E402
                                    get_mmcls_models)
from mmcv.utils import Registry  # noqa: E402
from mmpose.datasets.builder import DATASETS as MMPOSE_DATASETS  # noqa: E402
from mmpose.models.builder import MODELS as MMPOSE_MODELS  # noqa: E402
from mmpose.utils import get_root_logger  # noqa: E402

from .. import compat  # noqa: E402
from ..datasets import CheckedTopDownCocoDataset  # noqa: E402
from ..models import ResNeSt  # noqa: E402
from ..models.host_services import HostServices, set_host_services, zoo_tables  # noqa: E402

__all__ = ["DATASETS", "MODELS", "ResNeSt", "child_registry"]


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


MODELS = child_registry(MMPOSE_MODELS)
DATASETS = child_registry(MMPOSE_DATASETS)
if "ResNeSt" not in MODELS.module_dict:  # a reload must not register twice
    MODELS.register_module(name="ResNeSt", module=ResNeSt)
if "CheckedTopDownCocoDataset" not in DATASETS.module_dict:
    DATASETS.register_module(name="CheckedTopDownCocoDataset", module=CheckedTopDownCocoDataset)
set_host_services(HostServices("mmpose0", zoo_tables(get_mmcls_models, get_external_models),
                               _get_mmcv_home, get_root_logger))
compat.apply()
