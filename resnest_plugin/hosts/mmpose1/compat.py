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
   ``HistoryBuffer.__getstate__`` also pickles its statistics methods
   (``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')``: instead
   of allowing the real ``builtins.getattr``, a stand-in registered under its
   name resolves exactly those four methods and refuses anything else.
   Every other class, and every function, stays refused.

b. CPU distributed training cannot start: mmengine 0.10.7's
   ``mmengine.dist.utils._init_dist_pytorch`` calls
   ``torch.cuda.set_device(local_rank)`` unconditionally, even with the gloo
   backend, so ``torchrun ... tools/train.py --launcher pytorch`` on a machine
   without a GPU dies with "Found no NVIDIA driver" (no upstream issue found;
   the call is unconditional in every release up to 0.10.7). Without CUDA
   (and no other accelerator) the wrapper only
   initialises the process group; with CUDA it calls mmengine's own function.
   ``init_dist`` looks the function up at call time, and a config's
   ``custom_imports`` imports the plugin before the Runner initialises
   distribution. The DDP wrapper still needs
   ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)``
   for a CPU model (torch refuses ``device_ids`` there); that is config.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, List, Tuple

import numpy as np
import torch
from packaging.version import Version

from ... import torch_compat
from ...patching import Patch, applied_names, apply_patches, release
from ...weights.safe_loading import SafeGlobal, numpy_checkpoint_globals

__all__ = ["PATCHES", "applied", "apply", "mmengine_checkpoint_globals"]

#: The methods HistoryBuffer.__getstate__ pickles by name (mmengine 0.10.7).
_HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for pickle's ``getattr``: only ``HistoryBuffer``'s statistics methods.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) refused: a checkpoint may only "
                                 f"name HistoryBuffer.{'/'.join(_HISTORY_BUFFER_STATISTICS)}")

_applied: List[str] = []
#: The last mmengine release that calls torch.load without weights_only.
_LAST_UNFIXED_MMENGINE = Version("0.10.7")


def mmengine_checkpoint_globals() -> List[SafeGlobal]:
    """The globals an mmengine 0.10 Runner checkpoint names beyond tensors and containers.

    Returns:
        Entries for ``torch.serialization.add_safe_globals``: mmengine's
        ``HistoryBuffer``, numpy's array reconstructor (under its numpy 1 and
        numpy 2 paths), ``numpy.ndarray``, and the numpy scalar / dtype
        globals of :func:`resnest_plugin.weights.numpy_checkpoint_globals`.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if Version(np.__version__) >= Version("2"):
        from numpy._core.multiarray import _reconstruct
    else:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [
        HistoryBuffer,
        (_history_buffer_statistic, "__builtin__.getattr"),  # protocol 2 spells builtins so
        (_history_buffer_statistic, "builtins.getattr"),
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
    # Through torch_compat: a no-op before torch 2.4 (no allow-list to add to), where the
    # version gate above never calls this anyway.
    torch_compat.add_safe_globals(mmengine_checkpoint_globals())


def _cuda_free_torch_launcher_calls_set_device() -> bool:
    import mmengine

    return release(mmengine.__version__) <= _LAST_UNFIXED_MMENGINE


def _allow_cpu_init_dist() -> None:
    import mmengine.dist.utils as dist_utils
    from mmengine.device import is_mlu_available, is_musa_available, is_npu_available

    original = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend: str, init_backend: str = "torch", **kwargs: Any) -> None:
        if (torch.cuda.is_available() or init_backend != "torch" or is_mlu_available()
                or is_npu_available() or is_musa_available()):
            return original(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend=backend, **kwargs)
        return None

    _init_dist_pytorch.__wrapped__ = original  # type: ignore[attr-defined]
    dist_utils._init_dist_pytorch = _init_dist_pytorch


PATCHES = (
    Patch(
        name="torch-load-mmengine-checkpoints",
        issue="https://github.com/open-mmlab/mmengine/issues/1655",
        needed=_mmengine_checkpoints_refused,
        install=_allow_mmengine_checkpoints,
    ),
    Patch(
        name="cpu-init-dist-pytorch",
        issue="https://github.com/open-mmlab/mmengine/blob/v0.10.7/mmengine/dist/utils.py "
              "(_init_dist_pytorch: torch.cuda.set_device without a CUDA check)",
        needed=_cuda_free_torch_launcher_calls_set_device,
        install=_allow_cpu_init_dist,
    ),
)


#: Apply every patch the installed versions need (idempotent); returns the active names.
apply: Callable[[], Tuple[str, ...]] = partial(apply_patches, PATCHES, _applied)
#: Names of the patches applied so far in this process.
applied: Callable[[], Tuple[str, ...]] = partial(applied_names, PATCHES, _applied)
