"""What the installed torch offers, asked of torch itself, in one place.

The host-free core (:mod:`resnest_plugin.models`, :mod:`resnest_plugin.weights`)
and the hosts' compat modules reach every API newer than the plugin's floor
(torch 1.13, :data:`resnest_plugin.version.MIN_TORCH`) through this module.
Each entry asks torch what it has (``hasattr`` / ``getattr``; for the oneDNN
pointwise convolutions one probe run on a tiny input, the first time they
are wanted), never a version string: a backport, a nightly or a build
without oneDNN is judged by what it does. Imports only torch. Tested on
torch 1.13.1, 2.1.2, 2.14.1 and 2.15.0.

============================  ===============================================  ==========
entry                         torch API it asks for                            added in
============================  ===============================================  ==========
:func:`is_compiling`          ``torch.compiler.is_compiling``                  2.3
                              (before it ``torch._utils.is_compiling``)        <= 2.1
:func:`mkldnn_pointwise_ok`   ``torch.ops.mkldnn._convolution_pointwise``,     2.0
                              its ``.binary`` and in-place ``_.binary``
:data:`ONEDNN`                ``torch.backends.mkldnn.is_available()``         < 1.13
:func:`add_safe_globals`      ``torch.serialization.add_safe_globals``         2.4
:func:`safe_globals_context`  ``torch.serialization.safe_globals`` and         2.5
                              ``get_safe_globals``
:func:`weights_only_globals`  ``torch._weights_only_unpickler``                1.13
                              ``._get_allowed_globals``
:func:`load_with_pickle_`     ``torch.load(pickle_module=...)`` honoured       <= 2.1
``module``                    with ``weights_only=False``
:func:`onnx_export_options`   ``torch.onnx.export(dynamo=...)``                2.5
============================  ===============================================  ==========

Sources (checked in the installed torch 1.13.1, 2.1.2, 2.14.1 and 2.15.0
sources, dates from pytorch/pytorch): ``torch.compiler.is_compiling`` is
absent from 2.1.2 (2.3 added it; pytorch/pytorch#127690 later deprecated
``torch._utils.is_compiling``, which 2.1.2 has, and 2.14.1 warns on it);
the pointwise convolutions came with inductor's CPU fusion,
pytorch/pytorch#86581 (unary) and #86582 (binary), after the 1.13 branch
cut, and are absent from 1.13.1; ``add_safe_globals`` / ``get_safe_globals``
are 2.4's and the ``safe_globals`` context manager is
pytorch/pytorch#127939, merged July 2024 for 2.5; the weights-only unpickler
(torch/_weights_only_unpickler.py) and ``torch.load(weights_only=...)`` are
1.13's, the first release with them. torch
1.13.1's ``torch.load`` replaces any ``pickle_module`` by ``pickle`` when
``weights_only`` is ``False`` (its torch/serialization.py: ``else: pickle_module
= pickle``); 2.1.2 only fills in a missing one. A restricted pickle module
silently ignored would load anything, so :func:`load_with_pickle_module` checks
once, on a harmless buffer, that torch uses the module it is given, and
otherwise calls torch's own zip and legacy readers with it.

Where a fast path's ops are missing the core takes the plain path and says
so once in the log (:func:`log_once`, logger ``resnest_plugin.torch_compat``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import pickle
import types
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterable, List, Optional, Set, Union

import torch
import torch.nn.functional as F

__all__ = ["ONEDNN", "add_safe_globals", "is_compiling", "load_with_pickle_module", "log_once",
           "mkldnn_pointwise_ok", "onnx_export_options", "safe_globals_context", "weights_only_globals"]

logger = logging.getLogger(__name__)

#: Whether torch was built with oneDNN (MKL-DNN): its convolutions are what
#: makes channels_last and the fused ops pay on the CPU.
ONEDNN: bool = bool(torch.backends.mkldnn.is_available())

_logged: Set[str] = set()


def log_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process.

    Args:
        key: What the message is about (one message per key).
        message: The text.
    """
    if key not in _logged:
        _logged.add(key)
        logger.warning(message)


def _pick_is_compiling() -> Callable[[], bool]:
    compiler = getattr(torch, "compiler", None)
    if hasattr(compiler, "is_compiling"):
        return compiler.is_compiling  # type: ignore[union-attr]
    # torch 2.1/2.2: dynamo answers True for this one while it traces; torch 1.13
    # has no torch.compile at all.
    return getattr(torch._utils, "is_compiling", None) or (lambda: False)


_IS_COMPILING: Callable[[], bool] = _pick_is_compiling()


def is_compiling() -> bool:
    """Whether ``torch.compile`` / ``torch.export`` is tracing the caller (``False`` on torch 1.13).

    Returns:
        What the installed torch's own flag says.
    """
    return _IS_COMPILING()


def _probe_mkldnn_pointwise() -> Optional[str]:
    """Run the three oneDNN pointwise convolutions once; why they cannot be used, or ``None``."""
    if not ONEDNN:
        return "torch was built without oneDNN (torch.backends.mkldnn.is_available() is False)"
    x = torch.linspace(-1.0, 1.0, 8).view(1, 2, 2, 2)
    weight = torch.tensor([[1.0, -2.0], [0.5, 1.0]]).view(2, 2, 1, 1)
    bias = torch.tensor([0.25, -0.5])
    other = torch.full((1, 2, 2, 2), 0.5)
    args = ([0, 0], [1, 1], [1, 1], 1)
    try:
        ops = torch.ops.mkldnn
        with torch.no_grad():
            relu = ops._convolution_pointwise(x, weight, bias, *args, "relu", [], "")
            added = ops._convolution_pointwise.binary(x, other, weight, bias, *args, "add", None, "relu", [], "")
            into = other.clone()
            ops._convolution_pointwise_.binary(into, x, weight, bias, *args, "add", None, "relu", [], "")
            plain = F.conv2d(x, weight, bias)
    except (AttributeError, RuntimeError, TypeError) as error:  # a missing op raises RuntimeError on 1.13
        return f"torch.ops.mkldnn._convolution_pointwise is not usable here ({type(error).__name__}: {error})"
    expected = (torch.relu(plain), torch.relu(plain + other), torch.relu(plain + other))
    if not all(torch.allclose(got, want, atol=1e-6) for got, want in zip((relu, added, into), expected)):
        return "torch.ops.mkldnn._convolution_pointwise gives wrong values on this build"
    return None


_pointwise_problem: List[Optional[str]] = []  # the probe's answer, once


def mkldnn_pointwise_ok() -> bool:
    """Whether oneDNN's fused conv (+ ReLU, + add) ops run here (probed once, logged once if not).

    Returns:
        ``True`` where :class:`~resnest_plugin.models.fused_inference.FoldedConvNorm`
        may call them.
    """
    if not _pointwise_problem:
        _pointwise_problem.append(_probe_mkldnn_pointwise())
    problem = _pointwise_problem[0]
    if problem is not None:
        log_once("mkldnn-pointwise", f"resnest_plugin: fused CPU inference falls back to plain convolutions: {problem}")
    return problem is None


def add_safe_globals(entries: Iterable[Any]) -> bool:
    """Allow ``entries`` process-wide in torch's weights-only unpickler, where it has an allow-list.

    Args:
        entries: Objects, or ``(object, "pickled.name")`` pairs.

    Returns:
        ``True`` if added; ``False`` on a torch without an allow-list (before
        2.4), whose ``weights_only`` unpickler cannot be widened.
    """
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return False
    add(list(entries))
    return True


def safe_globals_context(entries: List[Any]) -> Optional[ContextManager[None]]:
    """A context that allows ``entries`` in ``weights_only`` loads and removes them on exit.

    Entries already allowed process-wide are left out: torch's context
    removes every entry it was given on exit (``_safe_globals.__exit__`` in
    torch/_weights_only_unpickler.py), even one a host's compat fix added.

    Args:
        entries: Objects, or ``(object, "pickled.name")`` pairs.

    Returns:
        The context manager, or ``None`` on a torch without one (before 2.5).
    """
    serialization = torch.serialization
    if not (hasattr(serialization, "safe_globals") and hasattr(serialization, "get_safe_globals")):
        return None
    allowed = serialization.get_safe_globals()
    return serialization.safe_globals([entry for entry in entries if entry not in allowed])


def weights_only_globals() -> Optional[Dict[str, Any]]:
    """The globals torch's own weights-only unpickler allows by default, by pickled name.

    Returns:
        ``{"torch._utils._rebuild_tensor_v2": ..., "collections.OrderedDict": ...}``,
        or ``None`` if this torch does not say (it has no weights-only unpickler).
    """
    unpickler = getattr(torch, "_weights_only_unpickler", None)
    if unpickler is None:
        with contextlib.suppress(ImportError):
            import torch._weights_only_unpickler as unpickler  # type: ignore[no-redef]
    allowed = getattr(unpickler, "_get_allowed_globals", None)
    return None if allowed is None else dict(allowed())



_load_honours: List[bool] = []  # the probe's answer, once


def _probe_load_honours_pickle_module() -> bool:
    """Whether ``torch.load`` unpickles through the ``pickle_module`` it is given (not 1.13)."""
    used: List[bool] = []

    class Recording(pickle.Unpickler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            used.append(True)
            super().__init__(*args, **kwargs)

    module = types.ModuleType("resnest_plugin_probe_pickle")
    module.Unpickler = Recording  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: Recording(file, **kwargs).load()  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    torch.save({"probe": torch.zeros(1)}, buffer)
    buffer.seek(0)
    torch.load(buffer, map_location="cpu", pickle_module=module, weights_only=False)
    return bool(used)


def load_with_pickle_module(path: Union[str, Path], pickle_module: types.ModuleType) -> Any:
    """Read a checkpoint file onto the CPU, unpickling only through ``pickle_module``.

    ``torch.load(..., pickle_module=pickle_module)`` where torch honours the
    module (checked once, module docstring); on torch 1.13, whose
    ``torch.load`` would drop it, torch's own readers
    (``torch.serialization._load`` for the zip format, ``_legacy_load`` for the
    legacy one) called with it. The unpickling is ``pickle_module``'s either way.

    Args:
        path: The checkpoint file.
        pickle_module: A module with ``Unpickler`` and ``load``.

    Returns:
        The unpickled object.

    Raises:
        pickle.UnpicklingError: For a TorchScript archive (not a checkpoint) on
            the torch 1.13 route, or whatever ``pickle_module`` raises.
    """
    if not _load_honours:
        _load_honours.append(_probe_load_honours_pickle_module())
    if _load_honours[0]:
        return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)
    serialization: Any = torch.serialization
    with open(path, "rb") as opened:
        if serialization._is_zipfile(opened):
            with serialization._open_zipfile_reader(opened) as zip_file:
                if serialization._is_torchscript_zip(zip_file):
                    raise pickle.UnpicklingError("a TorchScript archive, not a checkpoint (load it with torch.jit.load)")
                return serialization._load(zip_file, "cpu", pickle_module, encoding="utf-8")
        return serialization._legacy_load(opened, "cpu", pickle_module, encoding="utf-8")


def onnx_export_options() -> Dict[str, Any]:
    """Keyword arguments of ``torch.onnx.export`` that pick its TorchScript-based exporter.

    torch 2.5 added the ``dynamo`` keyword (the torch.export-based exporter,
    which needs onnxscript) and torch 2.9 made it the default; before 2.5 the
    TorchScript-based exporter is the only one and the keyword does not exist
    (``TypeError``). Asked of the function's signature, not of the version.

    Returns:
        ``{"dynamo": False}`` where the keyword exists, else ``{}``.
    """
    import inspect

    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
