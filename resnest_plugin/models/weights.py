"""Checkpoint formats of ResNeSt -> our (MMPose 0.x) names, safe loading, load report.

Provenance:
    Key schemes read from the code that writes them: MMPose 0.29
    ``mmpose/models/backbones/resnest.py`` (= mmcls; ours), the official
    release ``resnest.torch`` (PyPI ``resnest`` 0.0.5, zhanghang1989/ResNeSt)
    and timm 1.0 ``timm/models/resnest.py`` + ``timm/layers/split_attn.py``.
    ``mmcls://`` and ``http(s)://`` resolution follows mmcv 1.7
    ``mmcv/runner/checkpoint.py`` (``load_from_mmcls``, ``load_from_http``)
    and ``torch.hub`` (same cache folder). Written for this plugin.

Formats (detected from the keys; ``source`` overrides detection):

* ``"mmpose"`` - our names (``stem.{0,1,2}.{conv,bn}``, ``layerX.Y.conv2.{conv,
  bn0,fc1,bn1,fc2}``, ``downsample.{0,1}`` in layer1 and ``{1,2}`` after), bare
  or with the ``backbone.`` prefix of a TopDown checkpoint, whose
  ``keypoint_head.*`` keys are ignored.
* ``"mmcls"`` - the same names with ``backbone.`` plus a classifier ``head.*``
  (ignored): mmcls checkpoints and ``mmcls://resnest{50,101,200,269}``.
* ``"official/timm"`` - the official release (``resnest.torch.resnest50``) and
  timm's ``resnest50d`` / ``resnest101e`` / ``resnest200e`` / ``resnest269e``,
  which use identical names and so cannot be told apart: stem ``conv1.{0,3,6}``
  (convs), ``conv1.{1,4}`` + ``bn1`` (norms), classifier ``fc`` (ignored), and
  a parameter-free pool at ``downsample.0`` in every stage (official:
  ``AvgPool2d(1)``, timm: ``Identity`` in layer1), so layer1's conv/norm sit
  at ``downsample.{1,2}`` where ours sit at ``downsample.{0,1}``.

Arithmetic compared with ours (all reach 1e-5 on random weights, see
``tests/mmpose0/test_checkpoint_compat.py``):

* Split attention: official and timm sum the radix splits and then pool;
  ours pools and then sums (equal up to float rounding). The radix softmax
  is the same in all three: ``fc2``'s group-major ``(g, r, c)`` logits are
  transposed to the conv's radix-major ``(r, g, c)`` before the softmax.
* Attention width: official/MMPose/ours ``max(C * R // 4, 32)``; timm
  ``make_divisible(C * R / 4, 8, min_value=32)``. Equal for every width of
  ResNeSt-50/101/200/269 (multiples of 8); they differ only for custom
  widths where ``C * R / 4`` is not a multiple of 8 (the weights then have
  different shapes and the load report lists them).
* avd (stride by a 3x3 average pool after the split conv): all use it on the
  strided first block of stages 2-4 only. The official code also adds a
  stride-1 ``AvgPool2d(3, 1, 1)`` to the first block of dilated stages
  (``is_first``); it has no weights, so conversion is unaffected, but a
  dilated official model computes a slightly blurred output that ours,
  timm's and MMPose's do not. Shortcut pools also differ only in dilated
  stages (official ``AvgPool2d(1)``, timm ``AvgPool2dSame(2, 1)``, ours
  none); with the standard strides all use ``AvgPool2d(2, 2, ceil_mode=True,
  count_include_pad=False)``.
* Shortcut indices follow the model: :func:`load_pretrained` shifts
  ``layerX.0.downsample.N`` by one when the checkpoint's stage had a pool
  where the model's has none (or the reverse), e.g. ``strides=(1, 2, 2, 1)``.

Loading: files are read with ``torch.load(weights_only=True)``; a pickle
that needs any other global is refused (:class:`UnsafeCheckpointError`),
never retried with ``weights_only=False``. The only extra globals allowed
are those of numpy scalars of plain numeric/bool dtypes
(:func:`resnest_plugin.models.checkpoint_globals.numpy_checkpoint_globals`), which MMPose
training writes into ``meta`` (``hook_msgs.best_score`` with
``save_best='AP'``); they are plain data and cannot run code.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
from torch import nn

from .arch import ARCH_SETTINGS
from .checkpoint_globals import numpy_checkpoint_globals
from .host_services import host_services

__all__ = [
    "CheckpointLoadWarning", "CheckpointMismatchError", "FORMATS", "LoadReport", "depth_of",
    "stage_blocks",
    "ShapeMismatch", "UnsafeCheckpointError", "convert_state_dict",
    "detect_format", "extract_state_dict", "load_pretrained", "main", "read_checkpoint",
    "resolve_checkpoint",
]

FORMAT_MMPOSE = "mmpose"
FORMAT_MMCLS = "mmcls"
FORMAT_OFFICIAL_TIMM = "official/timm"
#: Formats :func:`convert_state_dict` accepts as ``source``.
FORMATS = (FORMAT_MMPOSE, FORMAT_MMCLS, FORMAT_OFFICIAL_TIMM, "official", "timm")

# Stem of the official/timm deep stem -> ours: Sequential(conv, bn, relu,
# conv, bn, relu, conv) + a separate bn1 after the last conv.
_OFFICIAL_STEM = {
    "conv1.0.": "stem.0.conv.", "conv1.1.": "stem.0.bn.",
    "conv1.3.": "stem.1.conv.", "conv1.4.": "stem.1.bn.",
    "conv1.6.": "stem.2.conv.", "bn1.": "stem.2.bn.",
}
# Prefixes of the parts of a whole-model checkpoint that are not the backbone.
_HEAD_PREFIXES = ("keypoint_head.", "head.", "neck.", "fc.")
_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")
_DOWNSAMPLE_KEY = re.compile(r"^(layer\d+\.0\.downsample\.)(\d+)\.(.*)$")
_MAX_LISTED = 8  # key names quoted per category in messages


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file is a pickle that needs globals weights_only refuses."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (stem width, depth, or strict mode)."""


class CheckpointLoadWarning(UserWarning):
    """Some tensors of a checkpoint were not loaded, or some weights are missing.

    Escalate with ``warnings.simplefilter("error", CheckpointLoadWarning)``.
    """


@dataclass(frozen=True)
class ShapeMismatch:
    """A checkpoint tensor whose shape differs from the model's (not loaded).

    Attributes:
        key: Parameter / buffer name (our names).
        checkpoint_shape: Shape in the checkpoint.
        model_shape: Shape in the model.
    """

    key: str
    checkpoint_shape: Tuple[int, ...]
    model_shape: Tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.key} (checkpoint {self.checkpoint_shape} vs model {self.model_shape})"


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` did with a checkpoint.

    Attributes:
        checkpoint: The checkpoint as given (path, URL or ``mmcls://`` name).
        source: Detected (or declared) key format, one of :data:`FORMATS`.
        loaded: Keys copied into the model.
        missing: Model keys the checkpoint lacks (left at their initial
            values). BatchNorm ``num_batches_tracked`` counters are not
            reported, as in mmcv: they do not affect the output.
        unexpected: Backbone keys of the checkpoint the model does not have.
        shape_mismatched: Keys present in both with different shapes (not
            loaded).
        ignored: Keys of other parts of a whole-model checkpoint
            (``keypoint_head.*``, ``head.*``, ``fc.*``), dropped on purpose.
        checkpoint_depth: Depth whose stage blocks the checkpoint has, or
            ``None`` if they match no ResNeSt depth.
        checkpoint_stem_channels: Stem width of the checkpoint, if it has a stem.
    """

    checkpoint: str
    source: str
    loaded: Tuple[str, ...] = ()
    missing: Tuple[str, ...] = ()
    unexpected: Tuple[str, ...] = ()
    shape_mismatched: Tuple[ShapeMismatch, ...] = ()
    ignored: Tuple[str, ...] = ()
    checkpoint_depth: Optional[int] = None
    checkpoint_stem_channels: Optional[int] = None

    @property
    def num_loaded(self) -> int:
        """Number of tensors copied into the model."""
        return len(self.loaded)

    @property
    def num_missing(self) -> int:
        """Number of model keys the checkpoint lacks."""
        return len(self.missing)

    @property
    def num_unexpected(self) -> int:
        """Number of checkpoint backbone keys the model lacks."""
        return len(self.unexpected)

    @property
    def num_shape_mismatched(self) -> int:
        """Number of tensors skipped because their shapes differ."""
        return len(self.shape_mismatched)

    @property
    def num_ignored(self) -> int:
        """Number of non-backbone keys dropped on purpose."""
        return len(self.ignored)

    @property
    def is_clean(self) -> bool:
        """True if every model weight was loaded and every backbone tensor used."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def summary(self) -> str:
        """A human-readable description of the mismatches (or of a clean load)."""
        head = (f"checkpoint {self.checkpoint!r} ({self.source} names): {self.num_loaded} tensors "
                f"loaded, {self.num_ignored} non-backbone keys ignored")
        if self.is_clean:
            return head + "; all model weights loaded."
        parts = [head + ", but it does not match the model:"]
        if self.shape_mismatched:
            parts.append(f"  {self.num_shape_mismatched} shape-mismatched tensors NOT loaded (model keeps "
                         f"its initial values): {_listing(self.shape_mismatched)}")
        if self.missing:
            parts.append(f"  {self.num_missing} model keys missing from the checkpoint (left at their "
                         f"initial values): {_listing(self.missing)}")
        if self.unexpected:
            parts.append(f"  {self.num_unexpected} checkpoint keys the model does not have (unused): "
                         f"{_listing(self.unexpected)}")
        return "\n".join(parts)


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


# --------------------------------------------------------------------------- reading


def resolve_checkpoint(checkpoint: str) -> Path:
    """Turn a checkpoint name into a local file, downloading URLs once.

    ``mmcls://NAME`` and ``open-mmlab://NAME`` are looked up in the host's
    model-zoo tables (mmcv's or mmengine's, :mod:`.host_services`), as their
    ``load_checkpoint`` does. URLs are cached in
    ``<torch.hub.get_dir()>/checkpoints`` - the folder mmcv and torch.hub use -
    so a file downloaded by either is reused. In distributed runs rank 0
    downloads while the others wait (mmcv's ``load_from_http``).

    Args:
        checkpoint: Local path, ``http(s)://`` URL, ``mmcls://NAME`` or
            ``open-mmlab://NAME``.

    Returns:
        Path of the local file.

    Raises:
        ValueError: For an unknown ``scheme://`` or model-zoo name.
        FileNotFoundError: If a local path does not exist.
    """
    services = host_services()
    if checkpoint.startswith("mmcls://"):
        return _download(_zoo_url(checkpoint, "mmcls://", services.model_zoo("mmcls")))
    if checkpoint.startswith(("open-mmlab://", "openmmlab://")):
        prefix = checkpoint.split("://")[0] + "://"
        url = _zoo_url(checkpoint, prefix, services.model_zoo("open-mmlab"))
        if not url.startswith(("http://", "https://")):  # mmcv / mmengine: a path under their home
            return resolve_checkpoint(os.path.join(services.zoo_home(), url))
        return _download(url)
    if checkpoint.startswith(("http://", "https://")):
        return _download(checkpoint)
    if "://" in checkpoint:
        raise ValueError(
            f"unsupported checkpoint scheme in {checkpoint!r}: expected a local path, an http(s):// URL, "
            "mmcls://NAME or open-mmlab://NAME")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    return path


def _zoo_url(checkpoint: str, prefix: str, urls: Mapping[str, str]) -> str:
    name = checkpoint[len(prefix):]
    if name not in urls:
        known = sorted(key for key in urls if "resnest" in key)
        raise ValueError(f"unknown model {checkpoint!r}: the host's {prefix} table has no {name!r} "
                         f"(ResNeSt entries: {known})")
    return urls[name]


def _dist_info() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` outside one.

    What mmcv's and mmengine's ``get_dist_info`` return, read from torch directly.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _download(url: str) -> Path:
    # Same cache file as mmcv's load_url / torch.hub.load_state_dict_from_url.
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    rank, world_size = _dist_info()
    if rank == 0 and not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    if world_size > 1:
        torch.distributed.barrier()
    if not cached.is_file():
        raise FileNotFoundError(f"download of {url!r} did not produce {str(cached)!r}")
    return cached


def read_checkpoint(path: Union[str, Path]) -> Any:
    """``torch.load`` a checkpoint file on CPU with ``weights_only=True``.

    Tensors, containers and numpy scalars of plain numeric/bool dtypes
    (:func:`resnest_plugin.models.checkpoint_globals.numpy_checkpoint_globals`) load; any other
    pickled global is refused.

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
        # Explicit, so this holds even where resnest_plugin.compat did not
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


def extract_state_dict(checkpoint: Any, name: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """Take the state dict out of a checkpoint and drop wrapper prefixes.

    Accepts ``{'state_dict': ...}`` (mmcv / MMPose / timm training),
    ``{'model': ...}`` or a bare state dict; strips the ``module.`` prefix of
    (Distributed)DataParallel.

    Args:
        checkpoint: The object :func:`read_checkpoint` returned.
        name: Name of the checkpoint for error messages.

    Returns:
        Key -> tensor, in the checkpoint's order.

    Raises:
        ValueError: If no mapping of names to tensors is found.
    """
    if isinstance(checkpoint, Mapping):
        for container in ("state_dict", "model"):
            if isinstance(checkpoint.get(container), Mapping):
                checkpoint = checkpoint[container]
                break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{name!r} holds a {type(checkpoint).__name__}, expected a state dict "
                         "(a dict of tensors) or a dict with 'state_dict' or 'model'")
    state = OrderedDict()
    others = []
    for key, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            state[key[len("module."):] if key.startswith("module.") else key] = value
        else:
            others.append(key)
    if not state:
        raise ValueError(f"{name!r} holds no tensors: expected a state dict, or 'state_dict' / "
                         f"'model' entries; saw keys {_listing(list(others))}")
    return state


# --------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class _Converted:
    state: "OrderedDict[str, torch.Tensor]"
    source: str
    ignored: Tuple[str, ...]


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """Name the key format of a ResNeSt state dict.

    Args:
        state_dict: Keys as saved (``backbone.`` / ``module.`` prefixes
            allowed).

    Returns:
        ``"mmpose"``, ``"mmcls"`` or ``"official/timm"`` (see the module
        docstring).

    Raises:
        ValueError: If the keys are of none of them, naming the keys seen.
    """
    return _split(extract_state_dict(state_dict), None).source


def _split(state: Mapping[str, torch.Tensor], source: Optional[str]) -> _Converted:
    """Strip the ``backbone.`` prefix, set non-backbone keys aside, detect the format."""
    keys = list(state)
    ignored: List[str] = []
    backbone: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    has_prefix = any(key.startswith("backbone.") for key in keys)
    for key, value in state.items():
        if has_prefix:
            if key.startswith("backbone."):
                backbone[key[len("backbone."):]] = value
            else:
                ignored.append(key)
        elif key.startswith(_HEAD_PREFIXES):
            ignored.append(key)
        else:
            backbone[key] = value
    if source is None:
        source = _detect(backbone, keys)
        if source == FORMAT_MMPOSE and any(key.startswith("head.") for key in ignored):
            source = FORMAT_MMCLS
    elif source not in FORMATS:
        raise ValueError(f"unknown checkpoint source {source!r}; expected one of {FORMATS}")
    elif source in ("official", "timm"):
        source = FORMAT_OFFICIAL_TIMM
    return _Converted(backbone, source, tuple(ignored))


def _detect(backbone: Mapping[str, torch.Tensor], all_keys: Sequence[str]) -> str:
    has_attention = any(".conv2.fc1." in key for key in backbone)
    if has_attention and any(key.startswith("stem.") for key in backbone):
        return FORMAT_MMPOSE
    if has_attention and any(key.startswith(("conv1.0.", "bn1.")) for key in backbone):
        return FORMAT_OFFICIAL_TIMM
    if has_attention:  # stages only: tell the layouts apart by layer1's shortcut
        return FORMAT_OFFICIAL_TIMM if "layer1.0.downsample.2.weight" in backbone else FORMAT_MMPOSE
    raise ValueError(
        "unknown checkpoint format: expected ResNeSt keys, either MMPose/mmcls "
        "('stem.0.conv.weight', 'layer1.0.conv2.fc1.weight', optionally under 'backbone.') or "
        "official/timm ('conv1.0.weight', 'bn1.weight', 'layer1.0.conv2.fc1.weight'); "
        f"saw {len(all_keys)} keys: {_listing(list(all_keys))}")


def _rename_official(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    renamed: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in state.items():
        for old, new in _OFFICIAL_STEM.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    # Official/timm keep a parameter-free pool at downsample.0 in every stage;
    # ours has none where the stride is 1 (layer1 of the standard models).
    return _shift_downsample(renamed, {"layer1": -1})


def _shift_downsample(state: Mapping[str, torch.Tensor],
                      shifts: Mapping[str, int]) -> "OrderedDict[str, torch.Tensor]":
    """Move ``layerX.0.downsample.N.*`` to ``N + shifts['layerX']``."""
    shifted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in state.items():
        match = _DOWNSAMPLE_KEY.match(key)
        if match and match.group(1).split(".")[0] in shifts:
            index = int(match.group(2)) + shifts[match.group(1).split(".")[0]]
            key = f"{match.group(1)}{index}.{match.group(3)}"
        shifted[key] = value
    return shifted


def _convert(state: Mapping[str, torch.Tensor], source: Optional[str]) -> _Converted:
    split = _split(state, source)
    backbone = split.state
    if split.source == FORMAT_OFFICIAL_TIMM:
        backbone = _rename_official(backbone)
    return _Converted(backbone, split.source, split.ignored)


def convert_state_dict(state_dict: Mapping[str, Any], source: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Convert a ResNeSt checkpoint's state dict to our (MMPose 0.x) backbone names.

    The result fits ``resnest_plugin.ResNeSt`` and MMPose's built-in
    ``ResNeSt`` with the default strides; non-backbone keys (heads,
    classifier) are dropped.

    Args:
        state_dict: A state dict or a whole checkpoint dict (``state_dict`` /
            ``model`` entries are unwrapped; ``module.`` and ``backbone.``
            prefixes are stripped).
        source: One of :data:`FORMATS`; ``None`` detects it from the keys.

    Returns:
        Backbone state dict in our names.

    Raises:
        ValueError: For an unknown ``source`` or unrecognised keys.
    """
    return dict(_convert(extract_state_dict(state_dict), source).state)


# --------------------------------------------------------------------------- loading


def stage_blocks(keys: Sequence[str], prefix: str = "") -> Tuple[int, ...]:
    """Count the bottlenecks per stage from ``{prefix}layerS.B.*`` keys.

    Args:
        keys: State-dict keys.
        prefix: Key prefix of the backbone (``"backbone."`` in a TopDown model).

    Returns:
        Blocks of stages 1, 2, ... (empty when no such key exists).
    """
    blocks: Dict[int, int] = {}
    for key in keys:
        match = _BLOCK_KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return tuple(blocks.get(stage, 0) for stage in range(1, max(blocks, default=0) + 1))


def depth_of(blocks: Sequence[int]) -> Optional[int]:
    """Return the ResNeSt depth whose blocks per stage are ``blocks``, or ``None``."""
    for depth, arch in ARCH_SETTINGS.items():
        if arch.stage_blocks == tuple(blocks):
            return depth
    return None


def _stem_width(shapes: Mapping[str, Tuple[int, ...]]) -> Optional[int]:
    shape = shapes.get("stem.2.conv.weight")
    return shape[0] if shape else None


def _align_downsample(state: Mapping[str, torch.Tensor],
                      model_keys: Sequence[str]) -> "OrderedDict[str, torch.Tensor]":
    """Match the shortcut indices to the model's, if only the pool differs.

    A stage's shortcut has a parameter-free pool at index 0 only when its
    stride is not 1; a checkpoint of other strides then has the conv/norm
    one index off. Shift it when that makes the indices agree.
    """
    def indices(keys: Sequence[str]) -> Dict[str, set]:
        found: Dict[str, set] = {}
        for key in keys:
            match = _DOWNSAMPLE_KEY.match(key)
            if match:
                found.setdefault(match.group(1).split(".")[0], set()).add(int(match.group(2)))
        return found

    ours, theirs = indices(model_keys), indices(list(state))
    shifts = {}
    for layer, have in theirs.items():
        want = ours.get(layer)
        if want and have != want and {index + (min(want) - min(have)) for index in have} == want:
            shifts[layer] = min(want) - min(have)
    return _shift_downsample(state, shifts) if shifts else OrderedDict(state)


def _logger(logger: Optional[logging.Logger]) -> logging.Logger:
    return logger if logger is not None else host_services().logger()


def load_pretrained(
    model: nn.Module,
    checkpoint: str,
    strict: Optional[bool] = None,
    source: Optional[str] = None,
    logger: Optional[logging.Logger] = None,
) -> LoadReport:
    """Load a ResNeSt checkpoint of any supported format into a backbone.

    Tensors whose shapes differ are never copied. Any mismatch is logged at
    WARNING on the host's logger (MMPose's root logger / MMLogger) and raised as a
    :class:`CheckpointLoadWarning` (``warnings.warn``).

    Args:
        model: A backbone with our (MMPose 0.x) parameter names: ours or
            MMPose's built-in ``ResNeSt``.
        checkpoint: Local path, ``http(s)://`` URL, ``mmcls://NAME`` or
            ``open-mmlab://NAME``.
        strict: ``True``: any missing, unexpected or shape-mismatched key
            raises. ``None`` (default): a different stem width or depth
            raises (they mean the wrong model or file), other mismatches
            warn. ``False``: nothing raises; what fits is loaded and the rest
            reported (MMPose's behaviour, e.g. ``mmcls://resnest101`` into a
            64-channel stem). ``None`` defers to ``model.pretrained_strict``
            when the model has that attribute.
        source: Key format (one of :data:`FORMATS`); ``None`` detects it.
        logger: Logger for the report; default the host's logger.

    Returns:
        The :class:`LoadReport`.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: If the file needs unsafe unpickling.
        CheckpointMismatchError: (a ``ValueError``) for a stem width or
            depth mismatch (unless ``strict=False``), any mismatch with
            ``strict=True``, or when no tensor fits at all. The model is
            unchanged when this is raised.
        ValueError: If the keys are of no known format.
    """
    if strict is None:
        strict = getattr(model, "pretrained_strict", None)
    path = resolve_checkpoint(checkpoint)
    converted = _convert(extract_state_dict(read_checkpoint(path), checkpoint), source)
    model_state = model.state_dict()
    model_shapes = {key: tuple(value.shape) for key, value in model_state.items()}
    state = _align_downsample(converted.state, list(model_shapes))
    ckpt_shapes = {key: tuple(value.shape) for key, value in state.items()}

    loadable = OrderedDict()
    mismatched = []
    for key, value in state.items():
        if key in model_shapes:
            if ckpt_shapes[key] == model_shapes[key]:
                loadable[key] = value
            else:
                mismatched.append(ShapeMismatch(key, ckpt_shapes[key], model_shapes[key]))
    report = LoadReport(
        checkpoint=checkpoint,
        source=converted.source,
        loaded=tuple(loadable),
        missing=tuple(key for key in model_shapes
                      if key not in state and not key.endswith("num_batches_tracked")),
        unexpected=tuple(key for key in state if key not in model_shapes),
        shape_mismatched=tuple(mismatched),
        ignored=converted.ignored,
        checkpoint_depth=depth_of(stage_blocks(list(state))),
        checkpoint_stem_channels=_stem_width(ckpt_shapes),
    )

    errors = [] if strict is False else _architecture_errors(model, report, model_shapes, ckpt_shapes)
    if strict and not report.is_clean and not errors:
        errors.append(report.summary() + "\nstrict loading was requested, so nothing was loaded.")
    if not loadable:
        errors.append(report.summary() + "\nno tensor of the checkpoint fits the model.")
    if errors:
        raise CheckpointMismatchError("\n".join(errors))

    model.load_state_dict(loadable, strict=False)
    log = _logger(logger)
    if report.is_clean:
        log.info("resnest_plugin: %s", report.summary())
    else:
        advice = _advice(model, report, strict)
        log.warning("resnest_plugin: %s\n%s", report.summary(), advice)
        warnings.warn(f"resnest_plugin: {report.summary()}\n{advice}", CheckpointLoadWarning, stacklevel=2)
    return report


def _strict_hint(model: nn.Module, value: bool) -> str:
    if hasattr(model, "pretrained_strict"):
        return f"pretrained_strict={value} in the backbone config, or load_pretrained(..., strict={value})"
    return f"load_pretrained(model, checkpoint, strict={value})"


def _advice(model: nn.Module, report: LoadReport, strict: Optional[bool]) -> str:
    if (report.checkpoint_stem_channels is not None
            and any(item.key.startswith("stem.") for item in report.shape_mismatched)):
        return (f"The checkpoint's stem is {report.checkpoint_stem_channels} channels wide and was skipped "
                "(with layer1.0.conv1 and the layer1 shortcut conv, whose inputs are the stem's output); "
                "those layers keep their initial values, as MMPose does with mmcls://resnest101 and "
                f"stem_channels=64. Build the backbone with stem_channels={report.checkpoint_stem_channels} "
                f"to use them, or make this an error with {_strict_hint(model, True)}.")
    return f"To make this an error use {_strict_hint(model, True)}."


def _architecture_errors(model: nn.Module, report: LoadReport, model_shapes: Mapping[str, Tuple[int, ...]],
                         ckpt_shapes: Mapping[str, Tuple[int, ...]]) -> List[str]:
    """Stem-width and depth mismatches: wrong model or wrong file."""
    errors = []
    model_stem, ckpt_stem = _stem_width(model_shapes), report.checkpoint_stem_channels
    if model_stem is not None and ckpt_stem is not None and model_stem != ckpt_stem:
        errors.append(
            f"checkpoint {report.checkpoint!r} has a {ckpt_stem}-channel stem but the model has "
            f"stem_channels={model_stem}. Build the backbone with stem_channels={ckpt_stem} to load it "
            "(ImageNet ResNeSt-101/200/269 from the official release, timm and mmcls:// use 128; "
            "ResNeSt-50 and MMPose's released COCO checkpoints use 64), or skip the stem "
            f"(it then keeps its initial values, MMPose's behaviour) with {_strict_hint(model, False)}.")
    model_blocks = stage_blocks(list(model_shapes))
    ckpt_blocks = stage_blocks(list(ckpt_shapes))[:len(model_blocks)]
    if ckpt_blocks and model_blocks and ckpt_blocks != model_blocks:
        offending = [key for key in (*report.unexpected, *report.missing) if _BLOCK_KEY.match(key)]
        blocks = list(dict.fromkeys(_BLOCK_KEY.match(key).group(0)[:-1] for key in offending))
        span = blocks[0] if len(blocks) == 1 else f"{blocks[0]} ... {blocks[-1]}"
        ckpt_name = (f"ResNeSt-{report.checkpoint_depth}" if report.checkpoint_depth is not None
                     else "a ResNeSt of unknown depth")
        model_depth = getattr(model, "depth", depth_of(model_blocks))
        errors.append(
            f"checkpoint {report.checkpoint!r} is {ckpt_name} (blocks per stage {ckpt_blocks}) but the "
            f"model has depth={model_depth} (blocks per stage {model_blocks}); "
            f"{len(offending)} keys of {len(blocks)} blocks ({span}) exist in only one of the two: "
            f"{_listing(offending)}. "
            + (f"Build the backbone with depth={report.checkpoint_depth}, or "
               if report.checkpoint_depth is not None else "Use a matching checkpoint, or ")
            + f"load the common blocks only with {_strict_hint(model, False)}.")
    return errors


# --------------------------------------------------------------------------- CLI


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resnest_plugin.models.weights convert IN OUT [--source S]``.

    Reads ``IN`` (path, URL or ``mmcls://`` name) safely, converts it to our
    backbone names and saves the bare state dict to ``OUT``.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status 0.
    """
    parser = argparse.ArgumentParser(prog="python -m resnest_plugin.models.weights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a ResNeSt checkpoint to MMPose 0.x backbone names")
    convert.add_argument("input", help="checkpoint path, http(s) URL or mmcls://NAME")
    convert.add_argument("output", help="where to save the converted state dict")
    convert.add_argument("--source", choices=FORMATS, default=None, help="key format (default: detect)")
    args = parser.parse_args(argv)

    state = extract_state_dict(read_checkpoint(resolve_checkpoint(args.input)), args.input)
    converted = _convert(state, args.source)
    blocks = stage_blocks(list(converted.state))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(OrderedDict(converted.state), args.output)
    stem = _stem_width({key: tuple(value.shape) for key, value in converted.state.items()})
    print(f"{args.input} ({converted.source} names) -> {args.output}: {len(converted.state)} tensors, "
          f"depth {depth_of(blocks)} (blocks per stage {blocks}), stem_channels {stem}, "
          f"{len(converted.ignored)} non-backbone keys dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
