"""A ``pickle_module`` for ``torch.load`` that resolves only allow-listed globals.

Used by :func:`~.safe_loading.read_checkpoint` on a torch whose weights-only
unpickler cannot be given extra globals for one load (before 2.5:
:func:`resnest_plugin.torch_compat.safe_globals_context` is ``None``).
Everything a pickle can call or construct is fetched through the
unpickler's ``find_class`` (the ``GLOBAL``, ``STACK_GLOBAL``, ``INST``,
``OBJ`` and extension-registry opcodes all go through it), so an unpickler
whose ``find_class`` returns only allow-listed objects can only call those;
``REDUCE``, ``NEWOBJ`` and ``BUILD`` then only apply to what they made.

torch reads every checkpoint format through its ``pickle_module``: the zip
loader (``torch.serialization._load``) and the legacy loader
(``_legacy_load``) both subclass ``pickle_module.Unpickler`` (their
``find_class`` maps storage names and then calls ours), and the legacy one
reads its header records with ``pickle_module.load`` (torch 1.13.1 and 2.1.2
``torch/serialization.py``). ``torch.load`` refuses a ``pickle_module``
together with ``weights_only=True``, so it is called without it; the
restriction is this module's, chosen up front, never a retry after a refusal.
"""
from __future__ import annotations

import _compat_pickle
import pickle
import types
from typing import IO, Any, Dict, Mapping

__all__ = ["restricted_pickle_module"]


def _python3_name(module: str, name: str) -> str:
    """``module.name`` with Python 2 names mapped as the stdlib unpickler maps them.

    torch saves with pickle protocol 2, which writes ``__builtin__`` for
    ``builtins`` (``fix_imports``); the stdlib ``find_class`` undoes that
    before importing, and ours replaces it, so it does the same lookup.
    """
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def restricted_pickle_module(allowed: Mapping[str, Any]) -> types.ModuleType:
    """A module with ``Unpickler`` and ``load`` that resolve only ``allowed``.

    Args:
        allowed: Pickled name (``"collections.OrderedDict"``) -> the object
            to return for it.

    Returns:
        A module object to pass as ``torch.load(..., pickle_module=...)``.
        Its ``find_class`` raises ``pickle.UnpicklingError`` naming any other
        global as ``GLOBAL module.name``.
    """
    table: Dict[str, Any] = dict(allowed)

    class Unpickler(pickle.Unpickler):
        """``pickle.Unpickler`` whose globals come from the allow-list only."""

        def find_class(self, module: str, name: str) -> Any:  # noqa: D102
            full_name = _python3_name(module, name)
            if full_name in table:
                return table[full_name]
            raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {full_name} is not allow-listed")

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        """``pickle.load`` through the restricted :class:`Unpickler`."""
        return Unpickler(file, **kwargs).load()

    module = types.ModuleType("resnest_plugin_restricted_pickle", "torch.load pickle_module: allow-listed globals only")
    module.Unpickler = Unpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module
