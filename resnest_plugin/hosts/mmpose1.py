"""The MMPose 1.x host: compat fix, scoped registration, host services, 1.x conventions.

Imported by ``import resnest_plugin`` when mmpose 1.x is installed, by the
1.x configs (``custom_imports=dict(imports=['resnest_plugin.hosts.mmpose1'])``),
and by mmengine itself: a ``type='resnest_plugin.ResNeSt'`` lookup imports
``resnest_plugin.registry`` (see there), so the scope resolves even without
``custom_imports``. On the 0.x stack it fails at once with a one-line
:class:`~resnest_plugin.hosts.StackMismatchError`.

Registration: a child of ``mmpose.registry.MODELS`` scoped
``resnest_plugin`` (mmengine registries, STACK-mmpose1.md); MMPose's
built-in ``ResNeSt`` keeps building with ``type='ResNeSt'``. Never
``force=True``, never the plain name in MMPose's registry (mmpose.models
registers lazily; whichever came second would raise ``KeyError``).

Conventions that differ from 0.x, kept here and nowhere else:

* the backbone always returns a tuple (1.x ``HeatmapHead`` takes
  ``feats[-1]``; a bare tensor would be sliced on the batch dimension);
* ``init_weights()`` takes no argument and applies ``init_cfg``
  (``dict(type='Pretrained', checkpoint=...)`` through the plugin's loader:
  every format, weights-only reading, the load report, ``pretrained_strict``;
  other initialisers through mmengine's ``initialize``), once (``is_init``),
  as mmengine's ``BaseModule`` does.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from . import SCOPE, require_host

require_host("mmpose1", "resnest_plugin.hosts.mmpose1 (imported by this config)")

# Below: only after the host check, so the wrong stack fails with one line.
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.model import initialize  # noqa: E402
from mmengine.registry import Registry  # noqa: E402
from mmengine.runner.checkpoint import (_get_mmengine_home, get_external_models,  # noqa: E402
                                        get_mmcls_models)
from mmpose.registry import DATASETS as MMPOSE_DATASETS  # noqa: E402
from mmpose.registry import MODELS as MMPOSE_MODELS  # noqa: E402

from ..models import ResNeSt as CoreResNeSt  # noqa: E402
from ..models.host_services import HostServices, set_host_services, zoo_tables  # noqa: E402
from . import mmpose1_compat  # noqa: E402
from .mmpose1_datasets import CheckedCocoDataset  # noqa: E402

__all__ = ["CheckedCocoDataset", "DATASETS", "MODELS", "ResNeSt"]

#: An ``init_cfg``: one initialiser config, several, or none.
InitCfg = Optional[Union[Dict[str, Any], List[Dict[str, Any]]]]

_LOCATION = __name__
_PRETRAINED_KEYS = {"type", "checkpoint", "prefix", "map_location"}


def _child_registry(parent: Registry) -> Registry:
    """Return the ``resnest_plugin``-scoped child of ``parent``, creating it once.

    mmengine asserts that a scope is added to a parent only once, so a second
    creation (``importlib.reload``) reuses the existing child.
    """
    existing = parent.children.get(SCOPE)
    if existing is not None:
        return existing
    return Registry(parent.name, parent=parent, scope=SCOPE, locations=[_LOCATION])


class ResNeSt(CoreResNeSt):
    """The plugin's ResNeSt with MMPose 1.x's conventions (see the module docstring).

    Args:
        *args: The core :class:`resnest_plugin.models.ResNeSt` arguments.
        init_cfg: ``None`` (random initialisation), ``dict(type='Pretrained',
            checkpoint=PATH_OR_URL_OR_mmcls://NAME)`` (optionally ``prefix``:
            only ``'backbone.'`` or none, the loader finds the backbone in a
            full checkpoint itself), or any other mmengine initialiser config
            (or a list of them), applied after the default initialisation.
        **kwargs: The core backbone's keyword arguments (``depth``,
            ``stem_channels``, ``pretrained_strict``, ...).

    Raises:
        ValueError: For a ``Pretrained`` init_cfg without ``checkpoint``, with
            keys the loader does not take, or with another ``prefix``.
        TypeError: For an ``init_cfg`` that is neither a dict, a list nor None.
    """

    def __init__(self, *args: Any, init_cfg: InitCfg = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if init_cfg is not None and not isinstance(init_cfg, (dict, list)):
            raise TypeError(f"init_cfg must be a dict, a list of dicts or None, got "
                            f"{type(init_cfg).__name__}: {init_cfg!r}")
        self.init_cfg = copy.deepcopy(init_cfg)
        _pretrained_checkpoint(self.init_cfg)  # validate early: errors at build, not at train()
        self._is_init = False

    @property
    def is_init(self) -> bool:
        """Whether :meth:`init_weights` ran (mmengine's ``BaseModule`` then skips it)."""
        return self._is_init

    def init_weights(self) -> None:  # type: ignore[override]
        """Apply ``init_cfg``: random init, the plugin's loader for ``Pretrained``, or mmengine's.

        Raises:
            The loader's errors (:func:`resnest_plugin.models.weights.load_pretrained`):
            a missing file, an unsafe pickle, a checkpoint of another depth or
            stem width.
        """
        checkpoint = _pretrained_checkpoint(self.init_cfg)
        super().init_weights(checkpoint)
        others = [cfg for cfg in _as_list(self.init_cfg) if cfg.get("type") != "Pretrained"]
        if others:
            initialize(self, others)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:  # type: ignore[override]
        """Return the stage outputs of ``out_indices`` as a tuple, always (MMPose 1.x)."""
        out = super().forward(x)
        return out if isinstance(out, tuple) else (out,)


def _as_list(init_cfg: InitCfg) -> List[Dict[str, Any]]:
    if init_cfg is None:
        return []
    return list(init_cfg) if isinstance(init_cfg, list) else [init_cfg]


def _pretrained_checkpoint(init_cfg: InitCfg) -> Optional[str]:
    """The ``checkpoint`` of the ``Pretrained`` entry of ``init_cfg`` (``None`` without one)."""
    pretrained = [cfg for cfg in _as_list(init_cfg) if cfg.get("type") == "Pretrained"]
    if not pretrained:
        return None
    if len(pretrained) > 1:
        raise ValueError(f"init_cfg has {len(pretrained)} Pretrained entries: expected at most one")
    cfg = pretrained[0]
    extra = sorted(set(cfg) - _PRETRAINED_KEYS)
    if extra:
        raise ValueError(f"init_cfg {cfg!r}: keys {extra} not understood; a Pretrained init_cfg "
                         f"takes {sorted(_PRETRAINED_KEYS)}")
    if not isinstance(cfg.get("checkpoint"), str) or not cfg["checkpoint"]:
        raise ValueError(f"init_cfg {cfg!r}: expected checkpoint=<path, URL or mmcls://NAME>")
    if cfg.get("prefix") not in (None, "backbone."):
        raise ValueError(f"init_cfg prefix {cfg['prefix']!r} not understood: the plugin's loader "
                         "finds the backbone in a full checkpoint itself; expected no prefix or "
                         "'backbone.'")
    return cfg["checkpoint"]


MODELS = _child_registry(MMPOSE_MODELS)
DATASETS = _child_registry(MMPOSE_DATASETS)
if "ResNeSt" not in MODELS.module_dict:
    MODELS.register_module(name="ResNeSt", module=ResNeSt)
# After importlib.reload the registry keeps the first class (no second
# registration, no force=True): this module's name follows it, so
# resnest_plugin.ResNeSt stays the class configs build.
ResNeSt = MODELS.module_dict["ResNeSt"]  # type: ignore[misc]
if "CheckedCocoDataset" not in DATASETS.module_dict:
    DATASETS.register_module(name="CheckedCocoDataset", module=CheckedCocoDataset)
set_host_services(HostServices("mmpose1", zoo_tables(get_mmcls_models, get_external_models),
                               _get_mmengine_home, MMLogger.get_current_instance))
mmpose1_compat.apply()
