"""``export --int8``: static INT8 quantisation of an exported fp32 file with onnxruntime.

The network's convolutions (``Conv``, ``ConvTranspose``) are quantised;
everything else stays float32: the preprocessing, the split attention's
pooling, softmax and weighted sums, the flip test's mirroring and averaging
and the decoding, whose arg-max and neighbour comparisons need the heatmaps'
float values. Activation ranges come from running the fp32 file on real
person crops (:mod:`.calibration`): the people of the bundled mini COCO by
default, or the user's crops (``--calib-images DIR``).

The settings (:data:`DEFAULT_SETTINGS`) were chosen by measurement on a
2-vCPU AVX-512 VNNI machine (``benchmarks/deploy_benchmark.py``,
``docs/deploy.md``, "INT8 and speed").
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from .calibration import CalibrationDataError, calibration_crops
from .contract import INPUT_NAME
from .export import read_metadata, write_metadata

__all__ = ["DEFAULT_SETTINGS", "CalibrationDataError", "QuantSettings", "quantize_export"]


@dataclass(frozen=True)
class QuantSettings:
    """The knobs of :func:`onnxruntime.quantization.quantize_static` this export sets.

    Attributes:
        quant_format: ``"QDQ"`` (QuantizeLinear/DequantizeLinear pairs that
            onnxruntime fuses into integer kernels) or ``"QOperator"``
            (``QLinearConv`` written out).
        weight_type: ``"int8"`` (u8s8, the VNNI path) or ``"uint8"`` (u8u8).
        per_channel: One weight scale per output channel.
        reduce_range: 7-bit weights (for CPUs without VNNI, where u8s8
            accumulation can saturate).
        op_types: Node types quantised; all others stay float32.
        keep_last_conv_fp32: Leave the head's final 1x1 conv (the heatmaps)
            in float32: its output is compared value by value by the arg-max
            and the quarter-pixel shift.
        calibrate_method: ``"MinMax"`` or ``"Percentile"``.
    """

    quant_format: str = "QDQ"
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types: Tuple[str, ...] = ("Conv", "ConvTranspose")
    keep_last_conv_fp32: bool = True
    calibrate_method: str = "MinMax"


#: The measured choice (docs/deploy.md, "INT8 and speed").
DEFAULT_SETTINGS = QuantSettings()


class _Crops(CalibrationDataReader):
    """Feeds the calibration crops one at a time (batch 1: the file's dynamic axis)."""

    def __init__(self, crops: np.ndarray) -> None:
        self._feeds: Iterator[Dict[str, np.ndarray]] = iter(
            [{INPUT_NAME: crop[None]} for crop in crops])

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._feeds, None)


def _last_conv(path: Path) -> List[str]:
    """Name of the last ``Conv`` node whose output feeds no other conv (the heatmap conv)."""
    nodes = onnx.load(str(path)).graph.node
    convs = [node for node in nodes if node.op_type == "Conv"]
    return [convs[-1].name] if convs else []


def quantize_export(fp32: Union[str, Path], out: Union[str, Path],
                    calib_images: Optional[Union[str, Path]] = None,
                    settings: QuantSettings = DEFAULT_SETTINGS) -> Dict[str, Any]:
    """Quantise an exported fp32 file into ``out`` and write its metadata.

    Args:
        fp32: A file written by :func:`resnest_plugin.deploy.export.export_onnx`.
        out: The INT8 file to write.
        calib_images: Folder of person crops to calibrate on, or ``None`` for
            the people of the bundled mini COCO.
        settings: The quantisation settings.

    Returns:
        The metadata written (``precision: "int8"``, plus ``quantization``:
        the settings and the calibration data).

    Raises:
        CalibrationDataError: If the calibration images are missing, empty or
            unreadable (a ``ValueError``).
    """
    meta = read_metadata(fp32)
    generation = "mmpose0" if str(meta["mmpose_version"]).startswith("0.") else "mmpose1"
    crops = calibration_crops(generation, tuple(meta["input_size"]), tuple(meta["heatmap_size"]),
                              float(meta["box_padding"]), calib_images)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference + onnxruntime's graph optimisation first (onnxruntime's advice
        # for quantize_static): fused and folded nodes get one quantisation each.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), _Crops(crops),
            quant_format=QuantFormat.QDQ if settings.quant_format == "QDQ" else QuantFormat.QOperator,
            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8 if settings.weight_type == "int8" else QuantType.QUInt8,
            op_types_to_quantize=list(settings.op_types),
            nodes_to_exclude=_last_conv(prepared) if settings.keep_last_conv_fp32 else [],
            calibrate_method=CalibrationMethod[settings.calibrate_method],
            # MinMax keeps every crop's intermediate tensors until the end unless told to
            # merge them (tens of MB per crop for R50): bounded memory for large --calib-images.
            extra_options={"CalibMaxIntermediateOutputs": 8})
    meta["precision"] = "int8"
    meta["quantization"] = {
        **asdict(settings), "op_types": list(settings.op_types),
        "calibration": (str(calib_images) if calib_images is not None
                        else "bundled mini COCO people (GT boxes)"),
        "calibration_crops": int(len(crops)),
    }
    write_metadata(out, meta)
    return meta
