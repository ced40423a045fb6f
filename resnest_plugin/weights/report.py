"""The one report of how a checkpoint's keys fit a model: loaded, missing, unexpected, mismatched.

:func:`compare_state_dicts` builds it from two state dicts.
:func:`resnest_plugin.weights.load_pretrained` returns it for a backbone
(names converted to ours first), and :mod:`resnest_plugin.hosts.mmpose0.checkpoint_check`
prints it for a whole TopDown model (keys as saved, under ``backbone.``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

import torch

from .layout import depth_of, listing, stage_blocks, stem_width

__all__ = ["LoadReport", "ShapeMismatch", "compare_state_dicts", "depth_name"]


@dataclass(frozen=True)
class ShapeMismatch:
    """A checkpoint tensor whose shape differs from the model's (not loaded).

    Attributes:
        key: Parameter / buffer name.
        checkpoint_shape: Shape in the checkpoint.
        model_shape: Shape in the model.
    """

    key: str
    checkpoint_shape: Tuple[int, ...]
    model_shape: Tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.key} (checkpoint {self.checkpoint_shape} vs model {self.model_shape})"


def depth_name(blocks: Sequence[int]) -> str:
    """Name the ResNeSt depth whose blocks per stage are ``blocks``, if any.

    Args:
        blocks: Bottlenecks per stage.

    Returns:
        ``"ResNeSt-50"``, ``"no ResNeSt depth"``, or ``"no ResNet-style
        backbone"`` when there are no stage keys at all.
    """
    depth = depth_of(blocks)
    if depth is not None:
        return f"ResNeSt-{depth}"
    return "no ResNeSt depth" if blocks else "no ResNet-style backbone"


@dataclass(frozen=True)
class LoadReport:
    """How the keys of a checkpoint fit a model.

    Attributes:
        checkpoint: The checkpoint as given (path, URL or ``mmcls://`` name).
        source: Key format the checkpoint was read in (one of
            :data:`resnest_plugin.weights.FORMATS`), or ``None`` when the keys
            were compared as saved.
        loaded: Keys that fit in name and shape: copied into the model by
            :func:`~resnest_plugin.weights.load_pretrained`.
        missing: Model keys the checkpoint lacks (left at their initial
            values). BatchNorm ``num_batches_tracked`` counters are not
            reported, as in mmcv: they do not affect the output.
        unexpected: Checkpoint keys the model does not have.
        shape_mismatched: Keys present in both with different shapes (never
            loaded).
        ignored: Keys of other parts of a whole-model checkpoint
            (``keypoint_head.*``, ``head.*``, ``fc.*``), dropped on purpose.
        checkpoint_blocks: Bottlenecks per stage in the checkpoint.
        model_blocks: Bottlenecks per stage in the model.
        checkpoint_stem_channels: Stem width of the checkpoint, if it has a stem.
    """

    checkpoint: str
    source: Optional[str] = None
    loaded: Tuple[str, ...] = ()
    missing: Tuple[str, ...] = ()
    unexpected: Tuple[str, ...] = ()
    shape_mismatched: Tuple[ShapeMismatch, ...] = ()
    ignored: Tuple[str, ...] = ()
    checkpoint_blocks: Tuple[int, ...] = ()
    model_blocks: Tuple[int, ...] = ()
    checkpoint_stem_channels: Optional[int] = None

    @property
    def checkpoint_depth(self) -> Optional[int]:
        """The ResNeSt depth of the checkpoint's blocks, or ``None`` if they match none."""
        return depth_of(self.checkpoint_blocks)

    @property
    def num_loaded(self) -> int:
        """Number of tensors that fit (copied into the model by the loader)."""
        return len(self.loaded)

    @property
    def num_missing(self) -> int:
        """Number of model keys the checkpoint lacks."""
        return len(self.missing)

    @property
    def num_unexpected(self) -> int:
        """Number of checkpoint keys the model lacks."""
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
        """True if every model weight fits and every checkpoint tensor is used."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def summary(self) -> str:
        """A human-readable description of the mismatches (or of a clean fit)."""
        names = f" ({self.source} names)" if self.source else ""
        ignored = f", {self.num_ignored} non-backbone keys ignored" if self.ignored else ""
        head = f"checkpoint {self.checkpoint!r}{names}: {self.num_loaded} tensors fit the model{ignored}"
        if self.is_clean:
            return head + "; all keys and shapes match the model."
        parts = [head + ", but it does not match the model:"]
        if self.checkpoint_blocks[:len(self.model_blocks)] != self.model_blocks:
            parts.append(f"  backbone blocks per stage: checkpoint {self.checkpoint_blocks} "
                         f"({depth_name(self.checkpoint_blocks)}), model {self.model_blocks} "
                         f"({depth_name(self.model_blocks)})")
        if self.shape_mismatched:
            parts.append(f"  {self.num_shape_mismatched} shape-mismatched tensors NOT loaded (model keeps "
                         f"its initial values): {listing(self.shape_mismatched)}")
        if self.missing:
            parts.append(f"  {self.num_missing} missing keys (in the model, not in the checkpoint; left "
                         f"at their initial values): {listing(self.missing)}")
        if self.unexpected:
            parts.append(f"  {self.num_unexpected} unexpected keys (in the checkpoint, not in the model; "
                         f"unused): {listing(self.unexpected)}")
        return "\n".join(parts)


def compare_state_dicts(checkpoint: str, ckpt_state: Mapping[str, torch.Tensor],
                        model_state: Mapping[str, torch.Tensor], source: Optional[str] = None,
                        ignored: Sequence[str] = (), prefix: str = "") -> LoadReport:
    """Compare a checkpoint's state dict with a model's, key by key and shape by shape.

    Args:
        checkpoint: Name of the checkpoint, for the report.
        ckpt_state: The checkpoint's tensors (wrapper prefixes such as
            ``module.`` already removed; names as the model's).
        model_state: ``model.state_dict()``.
        source: Key format the checkpoint was converted from, if any.
        ignored: Checkpoint keys set aside before the comparison.
        prefix: Key prefix of the backbone in both (``"backbone."`` for a
            TopDown model), for the block counts and the stem width.

    Returns:
        The report.
    """
    ckpt_shapes = {key: tuple(value.shape) for key, value in ckpt_state.items()}
    model_shapes = {key: tuple(value.shape) for key, value in model_state.items()}
    shared = [key for key in ckpt_shapes if key in model_shapes]
    return LoadReport(
        checkpoint=str(checkpoint),
        source=source,
        loaded=tuple(key for key in shared if ckpt_shapes[key] == model_shapes[key]),
        # mmcv's load_state_dict ignores missing BN counters; so do we.
        missing=tuple(key for key in model_shapes
                      if key not in ckpt_shapes and not key.endswith("num_batches_tracked")),
        unexpected=tuple(key for key in ckpt_shapes if key not in model_shapes),
        shape_mismatched=tuple(ShapeMismatch(key, ckpt_shapes[key], model_shapes[key])
                               for key in shared if ckpt_shapes[key] != model_shapes[key]),
        ignored=tuple(ignored),
        checkpoint_blocks=stage_blocks(list(ckpt_shapes), prefix),
        model_blocks=stage_blocks(list(model_shapes), prefix),
        checkpoint_stem_channels=stem_width(ckpt_shapes, prefix),
    )
