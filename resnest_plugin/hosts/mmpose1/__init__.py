"""The MMPose 1.x host: compat fix, scoped registration, checkpoint sources, 1.x conventions.

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
  ``feats[-1]``; a bare tensor would be sliced on the batch dimension):
  the core's own output, so nothing to adapt here (0.x unwraps it);
* ``init_weights()`` takes no argument and applies ``init_cfg``
  (``dict(type='Pretrained', checkpoint=...)`` through the plugin's loader:
  every format, weights-only reading, the load report, ``pretrained_strict``;
  other initialisers through mmengine's ``initialize``), once (``is_init``),
  as mmengine's ``BaseModule`` does.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Dict, List, Optional, Union

from .. import child_registry, register_once, require_host

require_host("mmpose1", "resnest_plugin.hosts.mmpose1 (imported by this config)")

# Below: only after the host check, so the wrong stack fails with one line.
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.model import initialize  # noqa: E402
from mmengine.registry import Registry  # noqa: E402
from mmengine.runner.checkpoint import (_get_mmengine_home, get_external_models,  # noqa: E402
                                        get_mmcls_models)
from mmpose.registry import DATASETS as MMPOSE_DATASETS  # noqa: E402
from mmpose.registry import MODELS as MMPOSE_MODELS  # noqa: E402

from ...models import FastResNeSt  # noqa: E402
from ...weights import CheckpointSources  # noqa: E402
from . import compat  # noqa: E402
from .datasets import CheckedCocoDataset  # noqa: E402

__all__ = ["CheckedCocoDataset", "DATASETS", "MODELS", "ResNeSt"]

#: An ``init_cfg``: one initialiser config, several, or none.
InitCfg = Optional[Union[Dict[str, Any], List[Dict[str, Any]]]]

_LOCATION = __name__
_PRETRAINED_KEYS = {"type", "checkpoint", "prefix", "map_location"}


class ResNeSt(FastResNeSt):
    """The plugin's ResNeSt with MMPose 1.x's conventions (see the module docstring).

    A subclass of the fast model, so that MMPose's stock tools get the CPU
    fast paths without a flag (why: :class:`resnest_plugin.models.FastResNeSt`).

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

    #: mmengine's model-zoo tables and the current MMLogger, for ``mmcls://`` names.
    checkpoint_sources = CheckpointSources(
        host="mmpose1",
        zoo_tables={"mmcls": get_mmcls_models, "open-mmlab": get_external_models},
        zoo_home=_get_mmengine_home,
        get_logger=MMLogger.get_current_instance,
    )

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
            The loader's errors (:func:`resnest_plugin.weights.load_pretrained`):
            a missing file, an unsafe pickle, a checkpoint of another depth or
            stem width.
        """
        checkpoint = _pretrained_checkpoint(self.init_cfg)
        super().init_weights(checkpoint)
        others = [cfg for cfg in _as_list(self.init_cfg) if cfg.get("type") != "Pretrained"]
        if others:
            initialize(self, others)
        self._is_init = True


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


# locations: where mmengine's scope lookup imports the registrations from.
_make_registry = functools.partial(Registry, locations=[_LOCATION])
MODELS = child_registry(MMPOSE_MODELS, _make_registry)
DATASETS = child_registry(MMPOSE_DATASETS, _make_registry)
ResNeSt = register_once(MODELS, "ResNeSt", ResNeSt)  # type: ignore[misc]
register_once(DATASETS, "CheckedCocoDataset", CheckedCocoDataset)
compat.apply()
