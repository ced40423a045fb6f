"""Reading a checkpoint file with ``torch.load(weights_only=True)`` and its allow-list.

A file is read with ``weights_only=True``; a pickle that needs any other
global is refused (:class:`UnsafeCheckpointError`), never retried with
``weights_only=False``: unpickling an arbitrary global can run code.

The only extra globals allowed are those of numpy scalars of plain
numeric/bool dtypes (:func:`numpy_checkpoint_globals`). torch >= 2.6 loads
with ``weights_only=True`` by default and refuses any pickled global it does
not know; MMPose training writes numpy scalars into a checkpoint's ``meta``
(0.x ``hook_msgs.best_score`` with ``save_best='AP'``, an ``np.float64``
from xtcocotools). They are plain data and cannot run code. The same list is
what the hosts' version-gated ``torch.load`` fixes allow-list process-wide
(:mod:`resnest_plugin.hosts.mmpose0.compat`, :mod:`resnest_plugin.hosts.mmpose1.compat`;
open-mmlab/mmengine#1655). Host-free: imports only numpy and torch.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from packaging.version import Version

__all__ = ["SafeGlobal", "UnsafeCheckpointError", "numpy_checkpoint_globals", "read_checkpoint"]

#: An entry of torch's safe-globals list: the object, or the object and its pickled name.
SafeGlobal = Union[Callable[..., Any], Tuple[Callable[..., Any], str]]

_PLAIN_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file is a pickle that needs globals weights_only refuses."""


def numpy_checkpoint_globals() -> List[SafeGlobal]:
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
    entries: List[SafeGlobal] = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    # numpy >= 1.25: every dtype instance is of a per-type class (numpy.dtypes.*)
    # that the pickle names; before 1.25 type(np.dtype(...)) is np.dtype itself.
    dtype_classes = {type(np.dtype(name)) for name in _PLAIN_DTYPES} - {np.dtype}
    entries.extend(sorted(dtype_classes, key=lambda cls: cls.__name__))
    return entries


def read_checkpoint(path: Union[str, Path]) -> Any:
    """``torch.load`` a checkpoint file on CPU with ``weights_only=True``.

    Tensors, containers and numpy scalars of plain numeric/bool dtypes
    (:func:`numpy_checkpoint_globals`) load; any other pickled global is refused.

    Args:
        path: Local checkpoint file.

    Returns:
        The unpickled object (usually a dict).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        UnsafeCheckpointError: If the pickle needs a global that could run
            code (a custom class, ``os.system``, a whole pickled model...).
        ValueError: If the file is not a PyTorch checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        # Explicit, so this holds even where resnest_plugin.hosts.mmpose0.compat did not
        # allow-list these process-wide (its patch is version-gated).
        # Only the entries not yet allowed: torch's safe_globals context removes
        # its entries on exit, even ones a host's compat fix had allowed
        # process-wide (torch/_weights_only_unpickler.py, _safe_globals.__exit__).
        allowed = torch.serialization.get_safe_globals()
        extra = [entry for entry in numpy_checkpoint_globals() if entry not in allowed]
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(str(error))
        if refused:
            raise UnsafeCheckpointError(_unsafe_message(path, refused)) from error
        # No global named: a damaged or foreign file (e.g. "Unsupported operand 110").
        detail = [line for line in str(error).splitlines() if line.strip()][-2:][0]
        raise ValueError(f"{str(path)!r} is not a readable PyTorch checkpoint "
                         f"(torch.load(weights_only=True): {detail.strip()})") from error
    except (RuntimeError, KeyError, EOFError, OSError) as error:
        # torch.load of a non-torch file raises any of these (e.g. KeyError
        # for a bad legacy magic number); name the file instead.
        raise ValueError(f"{str(path)!r} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}: {error})") from error


def _refused_globals(text: str) -> str:
    """The globals torch's weights_only error names, or "" if none."""
    # "Unsupported global: GLOBAL x.y ...", "unsupported GLOBAL posix.system",
    # or, for a refused BUILD, "... but got <class 'x.Y'>".
    names = re.findall(r"GLOBAL ([\w.]+)", text) + re.findall(r"but got <class '([\w.]+)'>", text)
    return ", ".join(dict.fromkeys(names))


def _unsafe_message(path: Path, refused: str) -> str:
    return (
        f"refusing to load checkpoint {str(path)!r}: it is a pickle that needs {refused}, which "
        "torch.load(weights_only=True) does not allow. Unpickling such globals can run arbitrary "
        "code, so an untrusted checkpoint must never be loaded with weights_only=False. Allowed are "
        "tensors, plain containers and numpy scalars of numeric dtypes (as MMPose training writes into "
        "'meta'). If you trust this file, re-save its state dict (a dict of tensors) once and pass "
        "the new file: python -c \"import torch; c = torch.load('IN', weights_only=False); "
        "torch.save(c.get('state_dict', c), 'OUT')\" (for a pickled nn.Module use c.state_dict()).")
