"""Version-gated fixes that let MMPose 1.3 / mmengine 0.10 train and test on modern PyTorch.

Applied by :mod:`resnest_plugin.hosts.mmpose1` on import; each fix is gated
on the versions that have the bug and cites its upstream issue. Nothing on
disk is edited.

a. ``torch.load`` weights-only default vs mmengine's own checkpoints
   (open-mmlab/mmengine#1655). torch 2.6 made ``weights_only=True`` the
   default; mmengine 0.10.7 calls ``torch.load`` without the argument
   (``runner/checkpoint.py``), and the checkpoints its Runner writes hold
   ``message_hub`` (``HistoryBuffer`` objects holding numpy arrays) and
   ``meta.dataset_meta`` (numpy arrays and scalars). So ``tools/test.py`` on
   a checkpoint MMPose 1.x saved itself, and ``--resume``, are refused.
   Fixed on mmengine's main branch (#1670), in no release. Instead of a
   blanket ``weights_only=False`` (arbitrary code from a checkpoint file),
   allow-list exactly the globals those pickles name: ``HistoryBuffer``,
   numpy's array reconstructor, ``ndarray`` and ``dtype`` (with the per-dtype
   classes of plain numeric/bool dtypes), numpy scalars of those dtypes.
   Every other class, and every function, stays refused.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from packaging.version import Version

from ..models.checkpoint_globals import numpy_checkpoint_globals
from ..patching import Patch, applied_names, apply_patches, release

__all__ = ["PATCHES", "applied", "apply", "mmengine_checkpoint_globals"]

_applied: List[str] = []
#: The last mmengine release that calls torch.load without weights_only.
_LAST_UNFIXED_MMENGINE = Version("0.10.7")


def mmengine_checkpoint_globals() -> List[Union[Callable[..., Any], Tuple[Callable[..., Any], str]]]:
    """The globals an mmengine 0.10 Runner checkpoint names beyond tensors and containers.

    Returns:
        Entries for ``torch.serialization.add_safe_globals``: mmengine's
        ``HistoryBuffer``, numpy's array reconstructor (under its numpy 1 and
        numpy 2 paths), ``numpy.ndarray``, and the numpy scalar / dtype
        globals of :func:`resnest_plugin.models.checkpoint_globals.numpy_checkpoint_globals`.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if Version(np.__version__) >= Version("2"):
        from numpy._core.multiarray import _reconstruct
    else:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [
        HistoryBuffer,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        *numpy_checkpoint_globals(),
    ]


def _mmengine_checkpoints_refused() -> bool:
    import mmengine

    return (release(torch.__version__) >= Version("2.6")
            and release(mmengine.__version__) <= _LAST_UNFIXED_MMENGINE)


def _allow_mmengine_checkpoints() -> None:
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


PATCHES = (
    Patch(
        name="torch-load-mmengine-checkpoints",
        issue="https://github.com/open-mmlab/mmengine/issues/1655",
        needed=_mmengine_checkpoints_refused,
        install=_allow_mmengine_checkpoints,
    ),
)


#: Apply every patch the installed versions need (idempotent); returns the active names.
apply: Callable[[], Tuple[str, ...]] = partial(apply_patches, PATCHES, _applied)
#: Names of the patches applied so far in this process.
applied: Callable[[], Tuple[str, ...]] = partial(applied_names, PATCHES, _applied)
