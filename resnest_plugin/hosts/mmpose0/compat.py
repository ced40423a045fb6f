"""Version-gated fixes that let MMPose 0.29 / mmcv 1.7 train and test on modern PyTorch.

MMPose's stock ``tools/train.py`` and ``tools/test.py`` run unchanged; a
config's ``custom_imports=dict(imports=['resnest_plugin.hosts.mmpose0'])`` imports this
package, and :func:`apply`
patches the few places of the installed mmcv that break on a recent torch
(applied by :mod:`resnest_plugin.hosts.mmpose0`).
Nothing on disk is edited: every fix is an attribute set at import time.

Each :class:`Patch` is applied only when the installed versions have the
bug (``packaging.version`` gates), at most once per process, and cites the
upstream issue where the breakage is reported. The measurements behind them
are in docs/compatibility.md.

Not fixable from here: ``tools/train.py`` / ``tools/test.py`` accept only
``--local_rank`` while ``python -m torch.distributed.launch`` (torch >= 2.0)
passes ``--local-rank`` (open-mmlab/mim#122). argparse runs before the
config, hence before this module is imported; launch with ``torchrun``
(it sets ``LOCAL_RANK`` and passes no flag), e.g. ``tools/dist_train.sh``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple, Union

import torch
from packaging.version import Version

from ... import torch_compat
from ...weights.safe_loading import numpy_checkpoint_globals
from ...patching import Patch, applied_names, apply_patches, release

__all__ = ["PATCHES", "Patch", "applied", "apply", "numpy_checkpoint_globals", "original"]

# Names of the patches applied in this process, and what each replaced (for
# tests and debugging).
_applied: List[str] = []
_originals: Dict[str, Any] = {}


def _torch_version() -> Version:
    return release(torch.__version__)


def _mmcv_version() -> Version:
    import mmcv

    return release(mmcv.__version__)


# --- a. torch.load(weights_only=True) vs numpy scalars in mmcv checkpoint meta ---------------
#
# torch 2.6 made weights_only=True the default of torch.load; mmcv 1.x's
# CheckpointLoader calls torch.load without the argument. Checkpoints whose
# ``meta`` holds numpy scalars - ``hook_msgs.best_score`` written by
# EvalHook(save_best='AP') is an np.float64 from xtcocotools - are refused:
# "Unsupported global: numpy.core.multiarray.scalar" (pattern reported in
# open-mmlab/mmengine#1655). Instead of loading with weights_only=False
# (arbitrary code execution from a checkpoint file), allow-list exactly what a
# pickled numpy scalar of a plain numeric/bool dtype needs: the
# ``multiarray.scalar`` constructor, ``numpy.dtype`` and the dtype classes of
# numpy >= 1.25 (``numpy.dtypes.Float64DType``...). Object dtypes are not
# listed, and every other class stays refused.

def _torch_load_refuses_numpy_scalars() -> bool:
    return _torch_version() >= Version("2.6")


def _allow_numpy_scalars_in_checkpoints() -> None:
    # Through torch_compat: a no-op before torch 2.4 (no allow-list to add to), where the
    # version gate above never calls this anyway.
    torch_compat.add_safe_globals(numpy_checkpoint_globals())


# --- b. MMDataParallel scatter passes an int device id to torch's _get_stream ----------------
#
# mmcv < 1.7.2 calls torch.nn.parallel._functions._get_stream(device) with
# an int GPU id; torch >= 2.1 reads ``device.type`` there:
# AttributeError: 'int' object has no attribute 'type' on every GPU
# training/test step through MMDataParallel (open-mmlab/mmdetection#10720;
# fixed in mmcv 1.7.2 by passing torch.device('cuda', id)). We rebind the
# name ``_get_stream`` inside mmcv.parallel._functions, which
# ``Scatter.forward`` looks up at call time, to a wrapper doing the same.


def _get_stream_for_device_id(device: Union[int, torch.device]) -> Any:
    """torch's ``_get_stream`` for a CUDA device given as ``torch.device`` or int id.

    Args:
        device: A ``torch.device`` or the integer id of a CUDA device, as
            mmcv's ``Scatter.forward`` passes it.

    Returns:
        The background copy stream torch returns (None on CPU-only machines).
    """
    from torch.nn.parallel import _functions as torch_functions

    if isinstance(device, int):
        device = torch.device("cuda", device)
    return torch_functions._get_stream(device)


def _scatter_passes_int_device() -> bool:
    return _torch_version() >= Version("2.1") and _mmcv_version() < Version("1.7.2")


def _patch_scatter_stream_device() -> None:
    from mmcv.parallel import _functions as mmcv_functions

    if getattr(mmcv_functions._get_stream, "__module__", None) == __name__:
        return  # already patched by an earlier copy of this module (importlib.reload)
    _originals["scatter-stream-device"] = mmcv_functions._get_stream
    mmcv_functions._get_stream = _get_stream_for_device_id


# --- c. MMDistributedDataParallel reads DDP's removed _use_replicated_tensor_module ----------
#
# mmcv's MMDistributedDataParallel._run_ddp_forward (used by DDP.forward, i.e.
# multi-GPU testing / any forward through the wrapper) reads
# ``self._use_replicated_tensor_module``, an attribute of torch 1.12-1.13's
# experimental ReplicatedTensor support that torch 2.0 removed:
# AttributeError: 'MMDistributedDataParallel' object has no attribute
# '_use_replicated_tensor_module' (microsoft/Cream#179; still in mmcv-full
# 1.7.2). Same method, with the attribute read made optional.


def _run_ddp_forward(self: Any, *inputs: Any, **kwargs: Any) -> Any:
    """``MMDistributedDataParallel._run_ddp_forward`` for torch without ReplicatedTensor.

    Args:
        self: The ``MMDistributedDataParallel`` instance.
        *inputs: Positional inputs of the wrapped module's forward.
        **kwargs: Keyword inputs of the wrapped module's forward.

    Returns:
        The output of the wrapped module's forward.
    """
    if getattr(self, "_use_replicated_tensor_module", False):
        module_to_run = self._replicated_tensor_module
    else:
        module_to_run = self.module
    if self.device_ids:
        # mmcv's to_kwargs understands DataContainer (torch's does not).
        inputs, kwargs = self.to_kwargs(inputs, kwargs, self.device_ids[0])
        return module_to_run(*inputs[0], **kwargs[0])
    return module_to_run(*inputs, **kwargs)


def _ddp_lacks_replicated_tensor() -> bool:
    return _torch_version() >= Version("2.0") and _mmcv_version() < Version("2.0")


def _patch_ddp_forward() -> None:
    from mmcv.parallel import MMDistributedDataParallel

    if MMDistributedDataParallel._run_ddp_forward.__module__ == __name__:
        return  # already patched by an earlier copy of this module (importlib.reload)
    _originals["ddp-replicated-tensor-module"] = MMDistributedDataParallel._run_ddp_forward
    MMDistributedDataParallel._run_ddp_forward = _run_ddp_forward


PATCHES: Tuple[Patch, ...] = (
    Patch(
        name="numpy-scalars-in-checkpoints",
        issue="https://github.com/open-mmlab/mmengine/issues/1655",
        needed=_torch_load_refuses_numpy_scalars,
        install=_allow_numpy_scalars_in_checkpoints,
    ),
    Patch(
        name="scatter-stream-device",
        issue="https://github.com/open-mmlab/mmdetection/issues/10720",
        needed=_scatter_passes_int_device,
        install=_patch_scatter_stream_device,
    ),
    Patch(
        name="ddp-replicated-tensor-module",
        issue="https://github.com/microsoft/Cream/issues/179",
        needed=_ddp_lacks_replicated_tensor,
        install=_patch_ddp_forward,
    ),
)

def apply() -> Tuple[str, ...]:
    """Apply every patch the installed versions need; idempotent.

    Returns:
        Names of all patches active in this process, in :data:`PATCHES` order.
    """
    return apply_patches(PATCHES, _applied)


def applied() -> Tuple[str, ...]:
    """Names of the patches applied so far in this process."""
    return applied_names(PATCHES, _applied)


def original(name: str) -> Any:
    """The object that patch ``name`` replaced.

    Args:
        name: A patch name from :data:`PATCHES` that replaces a function
            (``scatter-stream-device`` or ``ddp-replicated-tensor-module``).

    Returns:
        The function that was in place before the patch.

    Raises:
        KeyError: If ``name`` replaced nothing or has not been applied.
    """
    if name not in _originals:
        raise KeyError(f"patch {name!r} replaced nothing in this process; "
                       f"applied patches that replace a function: {sorted(_originals)}")
    return _originals[name]
