"""The pickled globals a safe checkpoint may need beyond tensors: numpy scalars of plain dtypes.

torch >= 2.6 loads with ``weights_only=True`` by default and refuses any
pickled global it does not know. MMPose training writes numpy scalars into
a checkpoint's ``meta`` (0.x ``hook_msgs.best_score`` with
``save_best='AP'``, an ``np.float64`` from xtcocotools); these are plain
data and cannot run code. This list is what :func:`resnest_plugin.models.
weights.read_checkpoint` allows, and what the hosts' version-gated
``torch.load`` fixes allow-list process-wide (open-mmlab/mmengine#1655).
Host-free: it imports only numpy and torch.
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple, Union

import numpy as np
from packaging.version import Version

__all__ = ["numpy_checkpoint_globals"]

_PLAIN_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")


def numpy_checkpoint_globals() -> List[Union[Callable[..., Any], Tuple[Callable[..., Any], str]]]:
    """The numpy globals a pickled numpy scalar of a plain dtype refers to.

    Returns:
        Entries for ``torch.serialization.add_safe_globals``. The scalar
        constructor is listed under both its numpy 1 and numpy 2 module paths
        (``numpy.core`` became ``numpy._core``), so checkpoints written under
        either numpy load under either.
    """
    if Version(np.__version__) >= Version("2"):
        from numpy._core.multiarray import scalar
    else:  # numpy 1.x; ``numpy.core`` is a deprecated alias in numpy 2
        from numpy.core.multiarray import scalar
    entries: List[Union[Callable[..., Any], Tuple[Callable[..., Any], str]]] = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    # numpy >= 1.25: every dtype instance is of a per-type class (numpy.dtypes.*)
    # that the pickle names; before 1.25 type(np.dtype(...)) is np.dtype itself.
    dtype_classes = {type(np.dtype(name)) for name in _PLAIN_DTYPES} - {np.dtype}
    entries.extend(sorted(dtype_classes, key=lambda cls: cls.__name__))
    return entries
