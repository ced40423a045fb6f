"""resnest_plugin: the ResNeSt backbone for MMPose 0.x and 1.x as a plugin.

The architecture (:mod:`resnest_plugin.models`) and the weight handling
(:mod:`resnest_plugin.weights`) are one host-free core. Importing this package imports the host module of the
installed MMPose generation (:mod:`resnest_plugin.hosts.mmpose0` or
:mod:`~resnest_plugin.hosts.mmpose1`), which applies that generation's
version-gated compatibility fixes and registers the backbone under the
scoped name ``resnest_plugin.ResNeSt`` (MMPose's built-in ``ResNeSt`` stays
untouched). Without MMPose the core still imports; nothing is registered.

torch must be at least :data:`~resnest_plugin.version.MIN_TORCH`: an older
one makes this import raise ``ImportError`` (one line naming both). Without
torch at all the import succeeds with ``HOST = None`` and nothing
registered, so torch-free subpackages (:mod:`resnest_plugin.deploy`'s ONNX
runner) work; ``resnest_plugin.ResNeSt`` and ``resnest_plugin.models`` then
raise ``ImportError`` naming torch and the floor.
"""
import re
from types import ModuleType
from typing import Any, Optional, Tuple

from .version import MIN_TORCH, __version__


def _release(version: str) -> Tuple[int, ...]:
    """The leading ``major.minor[.patch]`` numbers of a version string (``"2.1.2+cpu"`` -> (2, 1, 2))."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _installed_torch() -> Optional[ModuleType]:
    """The torch module, or ``None`` if torch is not installed (a broken torch still raises)."""
    try:
        import torch
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return None
    return torch


_torch = _installed_torch()
_NO_TORCH = (f"resnest_plugin's models and weights need torch >= {MIN_TORCH}, which is not installed "
             f"in this interpreter: pip install 'torch>={MIN_TORCH}'")



def require_torch() -> None:
    """Raise the one-line ``ImportError`` naming torch and the floor if torch is not installed.

    :mod:`resnest_plugin.models` and :mod:`resnest_plugin.weights` call it
    first, so ``import resnest_plugin.models`` says what is missing too.
    """
    if _torch is None:
        raise ImportError(_NO_TORCH)


if _torch is None:
    HOST = None

    def __getattr__(name: str) -> Any:
        """``ImportError`` naming torch and the floor for what needs torch (PEP 562)."""
        if name in ("ResNeSt", "models", "weights", "torch_compat"):
            raise ImportError(_NO_TORCH)
        if name == "hosts":
            import importlib

            return importlib.import_module(".hosts", __name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
else:
    if _release(str(_torch.__version__)) < _release(MIN_TORCH):
        raise ImportError(f"resnest_plugin needs torch >= {MIN_TORCH}, but torch {_torch.__version__} is "
                          f"installed: pip install 'torch>={MIN_TORCH}'")
    from . import hosts, models

    HOST = hosts.installed_host()
    if HOST == "mmpose0":
        from .hosts.mmpose0 import ResNeSt
    elif HOST == "mmpose1":
        from .hosts.mmpose1 import ResNeSt
    else:  # no MMPose: the core's fast model, with the core's output (a tuple), unregistered
        from .models import FastResNeSt as ResNeSt

__all__ = ["HOST", "MIN_TORCH", "ResNeSt", "__version__", "hosts", "models"]
