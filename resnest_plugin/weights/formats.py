"""Key formats of ResNeSt checkpoints: detection and conversion to our (MMPose 0.x) names.

Provenance:
    Key schemes read from the code that writes them: MMPose 0.29
    ``mmpose/models/backbones/resnest.py`` (= mmcls; ours), the official
    release ``resnest.torch`` (PyPI ``resnest`` 0.0.5, zhanghang1989/ResNeSt)
    and timm 1.0 ``timm/models/resnest.py`` + ``timm/layers/split_attn.py``.
    Written for this plugin.

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
``tests/test_weights.py``):

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
* Shortcut indices follow the model: the loader shifts
  ``layerX.0.downsample.N`` by one when the checkpoint's stage had a pool
  where the model's has none (or the reverse), e.g. ``strides=(1, 2, 2, 1)``
  (:func:`resnest_plugin.weights.layout.align_downsample`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .layout import listing, shift_downsample

__all__ = ["ConvertedState", "FORMATS", "FORMAT_MMCLS", "FORMAT_MMPOSE", "FORMAT_OFFICIAL_TIMM",
           "convert", "convert_state_dict", "detect_format", "extract_state_dict"]

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


@dataclass(frozen=True)
class ConvertedState:
    """A checkpoint's backbone in our names.

    Attributes:
        state: Backbone key -> tensor, in the checkpoint's order.
        source: The key format it was in (one of :data:`FORMATS`, normalised:
            ``"official"`` / ``"timm"`` become ``"official/timm"``).
        ignored: Keys of other parts of the checkpoint (heads, classifier),
            dropped on purpose.
    """

    state: "OrderedDict[str, torch.Tensor]"
    source: str
    ignored: Tuple[str, ...]


def extract_state_dict(checkpoint: Any, name: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """Take the state dict out of a checkpoint and drop wrapper prefixes.

    Accepts ``{'state_dict': ...}`` (mmcv / MMPose / timm training),
    ``{'model': ...}`` or a bare state dict; strips the ``module.`` prefix of
    (Distributed)DataParallel.

    Args:
        checkpoint: The object :func:`~resnest_plugin.weights.safe_loading.read_checkpoint`
            returned.
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
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    others = []
    for key, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            state[key[len("module."):] if key.startswith("module.") else key] = value
        else:
            others.append(key)
    if not state:
        raise ValueError(f"{name!r} holds no tensors: expected a state dict, or 'state_dict' / "
                         f"'model' entries; saw keys {listing(list(others))}")
    return state


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


def _split(state: Mapping[str, torch.Tensor], source: Optional[str]) -> ConvertedState:
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
    return ConvertedState(backbone, source, tuple(ignored))


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
        f"saw {len(all_keys)} keys: {listing(list(all_keys))}")


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
    return shift_downsample(renamed, {"layer1": -1})


def convert(state: Mapping[str, torch.Tensor], source: Optional[str] = None) -> ConvertedState:
    """Convert an extracted state dict to our names, keeping what was dropped and the format.

    Args:
        state: What :func:`extract_state_dict` returned.
        source: One of :data:`FORMATS`; ``None`` detects it from the keys.

    Returns:
        The backbone in our names, its format and the ignored keys.

    Raises:
        ValueError: For an unknown ``source`` or unrecognised keys.
    """
    split = _split(state, source)
    backbone = split.state
    if split.source == FORMAT_OFFICIAL_TIMM:
        backbone = _rename_official(backbone)
    return ConvertedState(backbone, split.source, split.ignored)


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
    return dict(convert(extract_state_dict(state_dict), source).state)
