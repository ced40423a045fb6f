"""The MMPose 0.x host: compat fixes, scoped registration, checkpoint sources, output convention.

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

Output convention: the core returns a tuple of the requested stages; 0.x
heads take a bare tensor, so :meth:`ResNeSt.forward` unwraps a single one
(a tuple for several). The registered :class:`ResNeSt` subclass adds that and
what only this host has: mmcv's model-zoo tables and MMPose's root logger for
its checkpoints (``checkpoint_sources``).
"""
from __future__ import annotations

from typing import Any

import torch

from .. import child_registry, register_once, require_host

require_host("mmpose0", "resnest_plugin.hosts.mmpose0 (imported by this config)")

# Below: only after the host check, so the wrong stack fails with one line.
from mmcv.runner.checkpoint import (_get_mmcv_home, get_external_models,  # noqa: E402
                                    get_mmcls_models)
from mmcv.utils import Registry  # noqa: E402
from mmpose.datasets.builder import DATASETS as MMPOSE_DATASETS  # noqa: E402
from mmpose.models.builder import MODELS as MMPOSE_MODELS  # noqa: E402
from mmpose.utils import get_root_logger  # noqa: E402

from . import compat  # noqa: E402
from .datasets import CheckedTopDownCocoDataset  # noqa: E402
from ...models import FastResNeSt  # noqa: E402
from ...weights import CheckpointSources  # noqa: E402

__all__ = ["DATASETS", "MODELS", "ResNeSt"]


class ResNeSt(FastResNeSt):
    """The plugin's ResNeSt as MMPose 0.x builds it (``type='resnest_plugin.ResNeSt'``).

    The core backbone, with ``init_weights('mmcls://NAME')`` resolved through
    mmcv 1.x's model-zoo tables and load reports on MMPose's root logger.

    A subclass of the fast model, so that MMPose's stock tools get the CPU
    fast paths without a flag (why: :class:`resnest_plugin.models.FastResNeSt`).
    """

    checkpoint_sources = CheckpointSources(
        host="mmpose0",
        zoo_tables={"mmcls": get_mmcls_models, "open-mmlab": get_external_models},
        zoo_home=_get_mmcv_home,
        get_logger=get_root_logger,
    )

    def forward(self, x: torch.Tensor) -> Any:
        """The stage outputs of ``out_indices``: a bare tensor for one (0.x heads), else a tuple."""
        outs = super().forward(x)
        return outs[0] if len(outs) == 1 else outs


MODELS = child_registry(MMPOSE_MODELS, Registry)
DATASETS = child_registry(MMPOSE_DATASETS, Registry)
ResNeSt = register_once(MODELS, "ResNeSt", ResNeSt)  # type: ignore[misc]
register_once(DATASETS, "CheckedTopDownCocoDataset", CheckedTopDownCocoDataset)
compat.apply()
