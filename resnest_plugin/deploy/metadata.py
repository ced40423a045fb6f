"""Read and check the metadata of an export (the reading side of :mod:`.contract`).

An export carries one ``metadata_props`` entry (key ``contract.METADATA_KEY``)
holding a JSON object. onnxruntime exposes it as the session's
``custom_metadata_map``, so the runner needs neither the ``onnx`` package nor
torch to read it. Anything that is not exactly what the contract describes is
a :class:`~.errors.NotAnExportError` naming the field, the value found and the
value expected; a newer ``format_version`` is an
:class:`~.errors.UnsupportedExportError`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from . import contract
from .errors import NotAnExportError, UnsupportedExportError

__all__ = ["ExportInfo", "GENERATIONS", "parse_metadata"]

#: ``decode`` value -> the MMPose generation whose geometry and evaluation the runner follows.
GENERATIONS = {"mmpose0-default": "mmpose0", "mmpose1-msra": "mmpose1"}


@dataclass(frozen=True)
class ExportInfo:
    """The checked metadata of one export.

    Attributes:
        variant: ``"keypoints"`` or ``"heatmaps"`` (graph outputs, see :mod:`.contract`).
        precision: ``"fp32"`` or ``"int8"``.
        input_size: ``(W, H)`` of the crops the graph takes.
        heatmap_size: ``(w, h)`` of the network's heatmaps.
        box_padding: Box -> scale padding (1.25 in MMPose's top-down pipelines).
        flip_test: Whether the graph averages a flipped pass.
        decode: The decoding rule inside the graph (``None`` for the heatmaps variant).
        generation: ``"mmpose0"`` or ``"mmpose1"``: whose box, affine and
            inverse-transform arithmetic (and evaluation rules) the runner follows.
        keypoint_names: The ``K`` keypoint names.
        skeleton: Index pairs to draw.
        flip_pairs: Index pairs swapped by a horizontal flip.
        sigmas: The ``K`` OKS sigmas.
        raw: The whole metadata object as read.
    """

    variant: str
    precision: str
    input_size: Tuple[int, int]
    heatmap_size: Tuple[int, int]
    box_padding: float
    flip_test: bool
    decode: Optional[str]
    generation: str
    keypoint_names: Tuple[str, ...]
    skeleton: Tuple[Tuple[int, int], ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    sigmas: Tuple[float, ...]
    raw: Mapping[str, Any]

    @property
    def num_keypoints(self) -> int:
        """``K``, the number of keypoints."""
        return len(self.keypoint_names)


def _bad(source: str, field: str, value: Any, expected: str) -> NotAnExportError:
    return NotAnExportError(f"{source}: metadata field {field!r} is {value!r}, expected {expected}")


def _size(source: str, meta: Mapping[str, Any], field: str) -> Tuple[int, int]:
    value = meta[field]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise _bad(source, field, value, "[W, H]: two positive integers")
    return int(value[0]), int(value[1])


def _pairs(source: str, meta: Mapping[str, Any], field: str, count: int) -> Tuple[Tuple[int, int], ...]:
    value = meta[field]
    ok = isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count for i in pair)
        for pair in value)
    if not ok:
        raise _bad(source, field, value, f"a list of [i, j] keypoint index pairs, 0 <= i, j < {count}")
    return tuple((int(i), int(j)) for i, j in value)


def _generation(source: str, meta: Mapping[str, Any]) -> str:
    # The keypoints variant names its decoding rule, which names the generation; the heatmaps
    # variant has decode null, so the MMPose that built the model decides.
    decode = meta["decode"]
    if decode is not None:
        return GENERATIONS[decode]
    version = str(meta["mmpose_version"])
    if version.split(".")[0] == "0":
        return "mmpose0"
    if version.split(".")[0] == "1":
        return "mmpose1"
    raise _bad(source, "mmpose_version", version, "an MMPose 0.x or 1.x version (decode is null)")


def _check_choices(source: str, meta: Mapping[str, Any]) -> None:
    choices = {"format": (contract.FORMAT,), "variant": contract.VARIANTS, "precision": contract.PRECISIONS,
               "channel_order": ("bgr",), "layout": ("NHWC",)}
    for field, allowed in choices.items():
        if meta[field] not in allowed:
            raise _bad(source, field, meta[field], " or ".join(repr(a) for a in allowed))
    decodes = contract.DECODES if meta["variant"] == "keypoints" else (*contract.DECODES, None)
    if meta["decode"] not in decodes:
        raise _bad(source, "decode", meta["decode"],
                   f"one of {list(decodes)} for the {meta['variant']!r} variant")
    for field in ("flip_test", "shift_heatmap"):
        if not isinstance(meta[field], bool):
            raise _bad(source, field, meta[field], "true or false")


def parse_metadata(custom_metadata: Mapping[str, str], source: str) -> ExportInfo:
    """Check an export's metadata against :mod:`.contract` and return it typed.

    Args:
        custom_metadata: The model's ``metadata_props`` as a mapping (onnxruntime's
            ``session.get_modelmeta().custom_metadata_map``).
        source: The file name, for the messages.

    Returns:
        The checked metadata.

    Raises:
        NotAnExportError: The entry is missing, is not a JSON object, lacks a
            required field or has a value outside the contract.
        UnsupportedExportError: ``format_version`` is not the one this runner reads.
    """
    if contract.METADATA_KEY not in custom_metadata:
        raise NotAnExportError(
            f"{source}: no {contract.METADATA_KEY!r} metadata entry (found keys "
            f"{sorted(custom_metadata)}); expected an ONNX file written by "
            "`python -m resnest_plugin.deploy export`")
    try:
        meta = json.loads(custom_metadata[contract.METADATA_KEY])
    except json.JSONDecodeError as error:
        raise NotAnExportError(f"{source}: metadata entry {contract.METADATA_KEY!r} is not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise NotAnExportError(f"{source}: metadata entry {contract.METADATA_KEY!r} is a "
                               f"{type(meta).__name__}, expected a JSON object")
    missing = [field for field in contract.REQUIRED_FIELDS if field not in meta]
    if missing:
        raise NotAnExportError(f"{source}: metadata lacks the fields {missing} (contract.REQUIRED_FIELDS)")
    if meta["format_version"] != contract.FORMAT_VERSION:
        raise UnsupportedExportError(
            f"{source}: format_version is {meta['format_version']!r}, this runner reads "
            f"format_version {contract.FORMAT_VERSION}; export the model again with this resnest_plugin "
            "or run it with the resnest_plugin that exported it")
    _check_choices(source, meta)
    names = meta["keypoint_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _bad(source, "keypoint_names", names, "a non-empty list of strings")
    sigmas: List[Any] = meta["sigmas"]
    if (not isinstance(sigmas, list) or len(sigmas) != len(names)
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in sigmas)):
        raise _bad(source, "sigmas", sigmas, f"{len(names)} positive numbers (one per keypoint)")
    padding = meta["box_padding"]
    if not isinstance(padding, (int, float)) or isinstance(padding, bool) or padding <= 0:
        raise _bad(source, "box_padding", padding, "a positive number (1.25 in MMPose)")
    return ExportInfo(
        variant=meta["variant"], precision=meta["precision"],
        input_size=_size(source, meta, "input_size"), heatmap_size=_size(source, meta, "heatmap_size"),
        box_padding=float(padding), flip_test=meta["flip_test"], decode=meta["decode"],
        generation=_generation(source, meta), keypoint_names=tuple(names),
        skeleton=_pairs(source, meta, "skeleton", len(names)),
        flip_pairs=_pairs(source, meta, "flip_pairs", len(names)),
        sigmas=tuple(float(s) for s in sigmas), raw=dict(meta))
