"""Reading a checkpoint file weights-only, with one allow-list, on every supported torch.

A file is read so that unpickling can only rebuild tensors, plain containers
and a few plain-data globals; a pickle that needs any other global is
refused (:class:`UnsafeCheckpointError`, naming it), never retried with
``weights_only=False``: unpickling an arbitrary global can run code.

The only extra globals allowed are those of numpy scalars of plain
numeric/bool dtypes (:func:`numpy_checkpoint_globals`). MMPose training
writes numpy scalars into a checkpoint's ``meta`` (0.x
``hook_msgs.best_score`` with ``save_best='AP'``, an ``np.float64`` from
xtcocotools). They are plain data and cannot run code. The same list is
what the hosts' version-gated ``torch.load`` fixes allow-list process-wide
(:mod:`resnest_plugin.hosts.mmpose0.compat`, :mod:`resnest_plugin.hosts.mmpose1.compat`;
open-mmlab/mmengine#1655).

How, by what the installed torch has (:mod:`resnest_plugin.torch_compat`):

* torch with a scoped allow-list (``torch.serialization.safe_globals``,
  2.5+): ``torch.load(weights_only=True)`` inside that context, with the
  numpy entries not yet allowed process-wide.
* older torch (1.13 to 2.4): its weights-only unpickler takes no extra
  globals for one load (1.13 to 2.3 have no allow-list at all), so numpy
  scalars would be refused. The file is read with ``torch.load(...,
  pickle_module=...)`` and a restricted pickle module
  (:mod:`.restricted_pickle`) whose ``find_class`` resolves exactly the
  globals torch's own weights-only unpickler allows (asked of the installed
  torch: :func:`resnest_plugin.torch_compat.weights_only_globals`; tensor and
  storage rebuild functions, ``OrderedDict``, ``torch.Size``, dtypes...)
  plus the numpy entries, and refuses every other global. torch's zip and
  legacy loaders both unpickle through ``pickle_module.Unpickler``
  (:func:`resnest_plugin.torch_compat.load_with_pickle_module`: torch 1.13's
  ``torch.load`` would drop the module, so there torch's readers get it).

Either way a refusal is an :class:`UnsafeCheckpointError` naming the
global: torch's wordings ("Unsupported global: GLOBAL x" from 2.4,
"Unsupported class x" before) and the restricted module's are all read.
Host-free: imports only numpy, packaging and torch.
"""
from __future__ import annotations

import codecs
import pickle
import re
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from packaging.version import Version

from .. import torch_compat
from .restricted_pickle import restricted_pickle_module

__all__ = ["SafeGlobal", "UnsafeCheckpointError", "numpy_checkpoint_globals", "read_checkpoint"]

#: An entry of torch's safe-globals list: the object, or the object and its pickled name.
SafeGlobal = Union[Callable[..., Any], Tuple[Callable[..., Any], str]]

_PLAIN_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file is a pickle that needs globals the weights-only reading refuses."""


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
    """``torch.load`` a checkpoint file on CPU, weights-only (module docstring).

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
        RuntimeError: If this torch has neither a scoped allow-list nor a
            weights-only unpickler to take its allowed globals from.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        # Explicit, so this holds even where resnest_plugin.hosts.mmpose0.compat did not
        # allow-list these process-wide (its patch is version-gated).
        scoped = torch_compat.safe_globals_context(numpy_checkpoint_globals())
        if scoped is not None:
            with scoped:
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch_compat.load_with_pickle_module(path, _restricted_pickle())
    except pickle.UnpicklingError as error:
        refused = _refused_globals(str(error))
        if refused:
            raise UnsafeCheckpointError(_unsafe_message(path, refused)) from error
        # No global named: a damaged or foreign file (e.g. "Unsupported operand 110").
        detail = [line for line in str(error).splitlines() if line.strip()][-2:][0]
        raise ValueError(f"{str(path)!r} is not a readable PyTorch checkpoint "
                         f"(weights-only torch.load: {detail.strip()})") from error
    except (RuntimeError, KeyError, EOFError, OSError) as error:
        # torch.load of a non-torch file raises any of these (e.g. KeyError
        # for a bad legacy magic number); name the file instead.
        raise ValueError(f"{str(path)!r} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}: {error})") from error


_restricted: List[types.ModuleType] = []  # built once: the allow-list does not change


def _restricted_pickle() -> types.ModuleType:
    """The restricted pickle module: torch's weights-only globals plus the numpy entries."""
    if not _restricted:
        allowed: Optional[Dict[str, Any]] = torch_compat.weights_only_globals()
        if allowed is None:
            raise RuntimeError(f"torch {torch.__version__} has no weights-only unpickler to read its allowed "
                               "globals from; resnest_plugin needs torch >= 1.13")
        # Pickle protocol 2 (torch.save's) writes a numpy scalar's bytes as
        # _codecs.encode(text, "latin1"): a pure data transform, which the weights-only
        # unpickler of later torch allows by default too (2.14: "_codecs.encode  # for bytes").
        allowed.setdefault("_codecs.encode", codecs.encode)
        for entry in numpy_checkpoint_globals():
            obj, name = entry if isinstance(entry, tuple) else (entry, f"{entry.__module__}.{entry.__qualname__}")
            allowed[name] = obj
        _restricted.append(restricted_pickle_module(allowed))
    return _restricted[0]


def _refused_globals(text: str) -> str:
    """The globals a weights-only refusal names, or "" if none."""
    # torch >= 2.4 and .restricted_pickle: "Unsupported global: GLOBAL x.y ...", also
    # "unsupported GLOBAL posix.system"; torch 1.13-2.3: "Unsupported class x.y"; a
    # refused BUILD: "... but got <class 'x.Y'>".
    names = (re.findall(r"GLOBAL ([\w.]+)", text) + re.findall(r"Unsupported class ([\w.]+)", text)
             + re.findall(r"but got <class '([\w.]+)'>", text))
    return ", ".join(dict.fromkeys(names))


def _unsafe_message(path: Path, refused: str) -> str:
    return (
        f"refusing to load checkpoint {str(path)!r}: it is a pickle that needs {refused}, which "
        "weights-only loading (torch.load(weights_only=True)) does not allow. Unpickling such "
        "globals can run arbitrary code, so an untrusted checkpoint must never be loaded with "
        "weights_only=False. Allowed are tensors, plain containers and numpy scalars of numeric "
        "dtypes (as MMPose training writes into 'meta'). If you trust this file, re-save its state dict (a dict of tensors) once and pass "
        "the new file: python -c \"import torch; c = torch.load('IN', weights_only=False); "
        "torch.save(c.get('state_dict', c), 'OUT')\" (for a pickled nn.Module use c.state_dict()).")
