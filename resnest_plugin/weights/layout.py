"""What a ResNeSt state dict's key names say about its architecture.

Block counts per stage (hence the depth), the stem width, and the
shortcut indices: these are read from keys and shapes alone, by the format
conversion (:mod:`.formats`), the report (:mod:`.report`) and the loader
(:mod:`.loading`). Key names are ours (MMPose 0.x's built-in ``ResNeSt``,
``mmpose/models/backbones/resnest.py`` of MMPose 0.29).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Set, Tuple

import torch

from ..models.arch import ARCH_SETTINGS

__all__ = ["BLOCK_KEY", "align_downsample", "depth_of", "listing", "shift_downsample",
           "stage_blocks", "stem_width"]

#: ``layerS.B.`` at the start of a key: bottleneck ``B`` of stage ``S``.
BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")
# ``layerS.0.downsample.N.rest``: the shortcut of a stage's first block.
_DOWNSAMPLE_KEY = re.compile(r"^(layer\d+\.0\.downsample\.)(\d+)\.(.*)$")
_MAX_LISTED = 8  # key names quoted per category in messages


def listing(items: Sequence[object]) -> str:
    """Quote the first few ``items`` for a message, with a count of the rest.

    Args:
        items: Keys (or anything with a readable ``str``).

    Returns:
        ``"a, b, c"`` or ``"a, ..., h, ... (12 more)"``.
    """
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


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
        match = BLOCK_KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return tuple(blocks.get(stage, 0) for stage in range(1, max(blocks, default=0) + 1))


def depth_of(blocks: Sequence[int]) -> Optional[int]:
    """Return the ResNeSt depth whose blocks per stage are ``blocks``, or ``None``.

    Args:
        blocks: Bottlenecks per stage, as :func:`stage_blocks` counts them.
    """
    for depth, arch in ARCH_SETTINGS.items():
        if arch.stage_blocks == tuple(blocks):
            return depth
    return None


def stem_width(shapes: Mapping[str, Tuple[int, ...]], prefix: str = "") -> Optional[int]:
    """Return the deep stem's output width (its last conv's), or ``None`` without a stem.

    Args:
        shapes: Key -> tensor shape, in our names.
        prefix: Key prefix of the backbone.
    """
    shape = shapes.get(f"{prefix}stem.2.conv.weight")
    return shape[0] if shape else None


def shift_downsample(state: Mapping[str, torch.Tensor],
                     shifts: Mapping[str, int]) -> "OrderedDict[str, torch.Tensor]":
    """Move ``layerX.0.downsample.N.*`` to ``N + shifts['layerX']``.

    Args:
        state: A backbone state dict in our names.
        shifts: Stage name (``"layer1"``) -> index offset.

    Returns:
        The state dict with the shortcut keys of those stages renamed, in order.
    """
    shifted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in state.items():
        match = _DOWNSAMPLE_KEY.match(key)
        if match and match.group(1).split(".")[0] in shifts:
            index = int(match.group(2)) + shifts[match.group(1).split(".")[0]]
            key = f"{match.group(1)}{index}.{match.group(3)}"
        shifted[key] = value
    return shifted


def _downsample_indices(keys: Sequence[str]) -> Dict[str, Set[int]]:
    found: Dict[str, Set[int]] = {}
    for key in keys:
        match = _DOWNSAMPLE_KEY.match(key)
        if match:
            found.setdefault(match.group(1).split(".")[0], set()).add(int(match.group(2)))
    return found


def align_downsample(state: Mapping[str, torch.Tensor],
                     model_keys: Sequence[str]) -> "OrderedDict[str, torch.Tensor]":
    """Match the shortcut indices to the model's, if only the pool differs.

    A stage's shortcut has a parameter-free pool at index 0 only when its
    stride is not 1; a checkpoint of other strides (e.g. ``strides=(1, 2, 2,
    1)``) then has the conv/norm one index off. Shift it when that makes the
    indices agree.

    Args:
        state: The checkpoint's backbone state dict in our names.
        model_keys: The model's state-dict keys.

    Returns:
        ``state`` with the shortcut keys of such stages renamed.
    """
    ours, theirs = _downsample_indices(model_keys), _downsample_indices(list(state))
    shifts = {}
    for layer, have in theirs.items():
        want = ours.get(layer)
        if want and have != want and {index + (min(want) - min(have)) for index in have} == want:
            shifts[layer] = min(want) - min(have)
    return shift_downsample(state, shifts) if shifts else OrderedDict(state)
