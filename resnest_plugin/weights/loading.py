"""Loading a ResNeSt checkpoint of any supported format into a backbone, with strict modes.

The loader resolves the name (:mod:`.sources`, through the host's tables the
backbone carries), reads the file weights-only (:mod:`.safe_loading`),
converts the keys to ours (:mod:`.formats`), compares them with the model
(:mod:`.report`) and copies what fits. A wrong depth or stem width is an
error naming both (the wrong file or the wrong model) unless
``strict=False``; any other mismatch warns, or is an error with
``strict=True``. Shape-mismatched tensors are never copied.

Provenance: the strict modes follow mmcv 1.7 ``load_state_dict`` (``strict``;
MMPose loads ``pretrained`` with ``strict=False``) with the architecture
checks added for this plugin.
"""
from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from typing import List, Optional

from torch import nn

from .formats import convert, extract_state_dict
from .layout import BLOCK_KEY, align_downsample, depth_of, listing, stem_width
from .report import LoadReport, compare_state_dicts
from .safe_loading import read_checkpoint
from .sources import HOST_FREE_SOURCES, CheckpointSources, resolve_checkpoint

__all__ = ["CheckpointLoadWarning", "CheckpointMismatchError", "load_pretrained"]


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (stem width, depth, or strict mode)."""


class CheckpointLoadWarning(UserWarning):
    """Some tensors of a checkpoint were not loaded, or some weights are missing.

    Escalate with ``warnings.simplefilter("error", CheckpointLoadWarning)``.
    """


def load_pretrained(
    model: nn.Module,
    checkpoint: str,
    strict: Optional[bool] = None,
    source: Optional[str] = None,
    logger: Optional[logging.Logger] = None,
    sources: Optional[CheckpointSources] = None,
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
        source: Key format (one of :data:`~resnest_plugin.weights.FORMATS`);
            ``None`` detects it.
        logger: Logger for the report; default that of ``sources``.
        sources: Model-zoo tables and logger to use; default the model's
            ``checkpoint_sources`` (a host's registered class carries its
            host's), else :data:`~resnest_plugin.weights.HOST_FREE_SOURCES`.

    Returns:
        The :class:`~resnest_plugin.weights.LoadReport`.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: If the file needs unsafe unpickling.
        CheckpointMismatchError: (a ``ValueError``) for a stem width or
            depth mismatch (unless ``strict=False``), any mismatch with
            ``strict=True``, or when no tensor fits at all. The model is
            unchanged when this is raised.
        ValueError: If the keys are of no known format, or the name cannot
            be resolved (e.g. ``mmcls://`` without a host's tables).
    """
    if strict is None:
        strict = getattr(model, "pretrained_strict", None)
    if sources is None:
        sources = getattr(model, "checkpoint_sources", HOST_FREE_SOURCES)
    path = resolve_checkpoint(checkpoint, sources)
    converted = convert(extract_state_dict(read_checkpoint(path), checkpoint), source)
    model_state = model.state_dict()
    state = align_downsample(converted.state, list(model_state))
    report = compare_state_dicts(checkpoint, state, model_state, converted.source, converted.ignored)

    model_stem = stem_width({key: tuple(value.shape) for key, value in model_state.items()})
    errors = [] if strict is False else _architecture_errors(model, report, model_stem)
    if strict and not report.is_clean and not errors:
        errors.append(report.summary() + "\nstrict loading was requested, so nothing was loaded.")
    if not report.loaded:
        errors.append(report.summary() + "\nno tensor of the checkpoint fits the model.")
    if errors:
        raise CheckpointMismatchError("\n".join(errors))

    model.load_state_dict(OrderedDict((key, state[key]) for key in report.loaded), strict=False)
    log = logger if logger is not None else sources.get_logger()
    if report.is_clean:
        log.info("resnest_plugin: %s", report.summary())
    else:
        advice = _advice(model, report)
        log.warning("resnest_plugin: %s\n%s", report.summary(), advice)
        warnings.warn(f"resnest_plugin: {report.summary()}\n{advice}", CheckpointLoadWarning, stacklevel=2)
    return report


def _strict_hint(model: nn.Module, value: bool) -> str:
    if hasattr(model, "pretrained_strict"):
        return f"pretrained_strict={value} in the backbone config, or load_pretrained(..., strict={value})"
    return f"load_pretrained(model, checkpoint, strict={value})"


def _advice(model: nn.Module, report: LoadReport) -> str:
    if (report.checkpoint_stem_channels is not None
            and any(item.key.startswith("stem.") for item in report.shape_mismatched)):
        return (f"The checkpoint's stem is {report.checkpoint_stem_channels} channels wide and was skipped "
                "(with layer1.0.conv1 and the layer1 shortcut conv, whose inputs are the stem's output); "
                "those layers keep their initial values, as MMPose does with mmcls://resnest101 and "
                f"stem_channels=64. Build the backbone with stem_channels={report.checkpoint_stem_channels} "
                f"to use them, or make this an error with {_strict_hint(model, True)}.")
    return f"To make this an error use {_strict_hint(model, True)}."


def _architecture_errors(model: nn.Module, report: LoadReport, model_stem: Optional[int]) -> List[str]:
    """Stem-width and depth mismatches: wrong model or wrong file."""
    errors = []
    ckpt_stem = report.checkpoint_stem_channels
    if model_stem is not None and ckpt_stem is not None and model_stem != ckpt_stem:
        errors.append(
            f"checkpoint {report.checkpoint!r} has a {ckpt_stem}-channel stem but the model has "
            f"stem_channels={model_stem}. Build the backbone with stem_channels={ckpt_stem} to load it "
            "(ImageNet ResNeSt-101/200/269 from the official release, timm and mmcls:// use 128; "
            "ResNeSt-50 and MMPose's released COCO checkpoints use 64), or skip the stem "
            f"(it then keeps its initial values, MMPose's behaviour) with {_strict_hint(model, False)}.")
    model_blocks = report.model_blocks
    ckpt_blocks = report.checkpoint_blocks[:len(model_blocks)]
    if ckpt_blocks and model_blocks and ckpt_blocks != model_blocks:
        offending = [key for key in (*report.unexpected, *report.missing) if BLOCK_KEY.match(key)]
        blocks = list(dict.fromkeys(BLOCK_KEY.match(key).group(0)[:-1] for key in offending))
        span = blocks[0] if len(blocks) == 1 else f"{blocks[0]} ... {blocks[-1]}"
        ckpt_name = (f"ResNeSt-{report.checkpoint_depth}" if report.checkpoint_depth is not None
                     else "a ResNeSt of unknown depth")
        model_depth = getattr(model, "depth", depth_of(model_blocks))
        errors.append(
            f"checkpoint {report.checkpoint!r} is {ckpt_name} (blocks per stage {ckpt_blocks}) but the "
            f"model has depth={model_depth} (blocks per stage {model_blocks}); "
            f"{len(offending)} keys of {len(blocks)} blocks ({span}) exist in only one of the two: "
            f"{listing(offending)}. "
            + (f"Build the backbone with depth={report.checkpoint_depth}, or "
               if report.checkpoint_depth is not None else "Use a matching checkpoint, or ")
            + f"load the common blocks only with {_strict_hint(model, False)}.")
    return errors
