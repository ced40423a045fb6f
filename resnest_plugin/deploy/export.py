"""``python -m resnest_plugin.deploy export``: a trained top-down model -> one ONNX file.

Run in the MMPose venv the config belongs to (0.x configs under
``configs/top_down/``, 1.x under ``configs/body_2d_keypoint/``). The installed
host's ``deploy_model`` module builds the model with MMPose's own builder and
reads the numbers; :mod:`.graph` wraps it (crops in, MMPose's test-time path
and decoding, keypoints out); this module traces it with the TorchScript
exporter, writes the metadata of :mod:`.contract` and, with ``--int8``, hands
the file to :mod:`.quantize`.

Usage::

    python -m resnest_plugin.deploy export CONFIG CHECKPOINT OUT.onnx \\
        [--variant keypoints|heatmaps] [--no-flip] [--int8 [--calib-images DIR]] [--opset N]
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import onnx
import torch

from .. import __version__
from ..hosts import installed_host
from ..torch_compat import onnx_export_options
from .checkpoint import file_sha256
from .contract import (FORMAT, FORMAT_VERSION, INPUT_NAME, METADATA_KEY, OUTPUT_HEATMAPS,
                       OUTPUT_KEYPOINTS, OUTPUT_SCORES, VARIANTS)
from .graph import ExportableModel

__all__ = ["DEFAULT_OPSET", "build_metadata", "export_onnx", "exportable_model", "main",
           "read_metadata", "write_metadata"]

#: ONNX opset of the export (the TorchScript exporter's well-tested range).
DEFAULT_OPSET = 17


def exportable_model(config: Union[str, Path], checkpoint: Optional[Union[str, Path]]) -> ExportableModel:
    """Build the export's model with the installed MMPose generation's host module.

    Args:
        config: The config file.
        checkpoint: Its trained checkpoint, or ``None`` for initial weights.

    Returns:
        The host's :class:`~resnest_plugin.deploy.graph.ExportableModel`.

    Raises:
        RuntimeError: If no MMPose is installed.
    """
    host = installed_host()
    if host is None:
        raise RuntimeError("the export needs MMPose 0.x or 1.x installed (run it in the venv "
                           "of the config's MMPose generation)")
    module = importlib.import_module(f"resnest_plugin.hosts.{host}.deploy_model")
    return module.exportable_model(config, checkpoint)


def build_metadata(model: ExportableModel, *, variant: str, flip_test: bool, precision: str,
                   config: Union[str, Path], checkpoint_sha256: Optional[str],
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The metadata object of :data:`~resnest_plugin.deploy.contract.REQUIRED_FIELDS`.

    Args:
        model: The exported model.
        variant: ``"keypoints"`` or ``"heatmaps"``.
        flip_test: Whether the graph runs the flip test.
        precision: ``"fp32"`` or ``"int8"``.
        config: The config file (its name is recorded).
        checkpoint_sha256: sha256 of the checkpoint, or ``None`` without one.
        extra: Further fields (e.g. the quantisation settings).

    Returns:
        A JSON-serialisable dict.
    """
    meta: Dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": variant,
        "precision": precision,
        "input_size": list(model.input_size),
        "heatmap_size": list(model.heatmap_size),
        "channel_order": "bgr",
        "layout": "NHWC",
        "mean": list(model.normalisation.mean),
        "std": list(model.normalisation.std),
        "box_padding": model.box_padding,
        "flip_test": bool(flip_test),
        "shift_heatmap": bool(model.flip.shift_heatmap) if flip_test else False,
        "decode": model.decode if variant == "keypoints" else None,
        "keypoint_names": list(model.keypoint_names),
        "skeleton": [list(link) for link in model.skeleton],
        "flip_pairs": [list(pair) for pair in model.flip_pairs],
        "sigmas": list(model.sigmas),
        "config": Path(config).name,
        "checkpoint_sha256": checkpoint_sha256,
        "plugin_version": __version__,
        "mmpose_version": model.mmpose_version,
    }
    meta.update(extra or {})
    return meta


def write_metadata(path: Union[str, Path], metadata: Dict[str, Any]) -> None:
    """Store ``metadata`` as the JSON value of :data:`METADATA_KEY` in the ONNX file at ``path``."""
    proto = onnx.load(str(path))
    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))


def read_metadata(path: Union[str, Path]) -> Dict[str, Any]:
    """The metadata object of an exported file.

    Raises:
        KeyError: If the file has no :data:`METADATA_KEY` entry.
    """
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise KeyError(f"{path}: no {METADATA_KEY!r} metadata (not written by this exporter)")


def export_onnx(model: ExportableModel, out: Union[str, Path], *, variant: str = "keypoints",
                flip_test: Optional[bool] = None, opset: int = DEFAULT_OPSET,
                config: Union[str, Path] = "", checkpoint_sha256: Optional[str] = None) -> Dict[str, Any]:
    """Trace ``model``'s graph to an fp32 ONNX file at ``out`` and write its metadata.

    Args:
        model: The host's model.
        out: The ONNX file to write.
        variant: ``"keypoints"`` (decoded inside) or ``"heatmaps"``.
        flip_test: Override the config's flip test; ``None`` keeps it.
        opset: ONNX opset.
        config: The config file (its name goes into the metadata).
        checkpoint_sha256: sha256 of the checkpoint, for the metadata.

    Returns:
        The metadata written.
    """
    graph = model.pose_graph(variant, flip_test)
    width, height = model.input_size
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    outputs = [OUTPUT_KEYPOINTS, OUTPUT_SCORES] if variant == "keypoints" else [OUTPUT_HEATMAPS]
    # The TorchScript exporter (dynamo=False) folds every eval-mode BatchNorm into its
    # conv (constant folding), so the file holds Conv/Relu/... and no BatchNormalization.
    # The registered fast backbone exports its plain graph (tests/test_onnx_export.py).
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(out), **onnx_export_options(), opset_version=opset,
                          input_names=[INPUT_NAME], output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
                          do_constant_folding=True)
    metadata = build_metadata(model, variant=variant, flip_test=graph.flip.enabled,
                              precision="fp32", config=config, checkpoint_sha256=checkpoint_sha256)
    write_metadata(out, metadata)
    return metadata


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resnest_plugin.deploy export",
        description="Export a trained top-down model (config + checkpoint) to one ONNX file "
                    "with MMPose's preprocessing, flip test and decoding inside.")
    parser.add_argument("config", help="the model's config (0.x or 1.x, matching this venv)")
    parser.add_argument("checkpoint", help="its trained checkpoint (read weights-only)")
    parser.add_argument("out", help="the ONNX file to write")
    parser.add_argument("--variant", choices=VARIANTS, default="keypoints",
                        help="keypoints: decoded inside (default); heatmaps: for runtimes that decode")
    parser.add_argument("--no-flip", action="store_true",
                        help="leave out the flip test even where the config's test_cfg has it")
    parser.add_argument("--int8", action="store_true",
                        help="static INT8 quantisation with onnxruntime (calibrated)")
    parser.add_argument("--calib-images", metavar="DIR",
                        help="with --int8: folder of person crops to calibrate on "
                             "(default: the people of the bundled mini COCO)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default 17)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``export`` command.

    Args:
        argv: Arguments after ``export`` (``None``: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on a usage or input error (printed as one line).
    """
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.calib_images and not args.int8:
        print("export: --calib-images needs --int8", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        if args.calib_images:  # a bad folder fails before the minutes of building and tracing
            from .calibration import calibration_files
            calibration_files(args.calib_images)
        model = exportable_model(args.config, args.checkpoint)
        sha = file_sha256(args.checkpoint)
        flip = False if args.no_flip else None
        out.parent.mkdir(parents=True, exist_ok=True)
        if not args.int8:
            meta = export_onnx(model, out, variant=args.variant, flip_test=flip, opset=args.opset,
                               config=args.config, checkpoint_sha256=sha)
        else:
            from .quantize import quantize_export  # onnxruntime.quantization: only with --int8
            with tempfile.TemporaryDirectory() as scratch:
                fp32 = Path(scratch) / "fp32.onnx"
                meta = export_onnx(model, fp32, variant=args.variant, flip_test=flip,
                                   opset=args.opset, config=args.config, checkpoint_sha256=sha)
                meta = quantize_export(fp32, out, calib_images=args.calib_images)
    except (FileNotFoundError, ValueError) as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({meta['precision']}, {meta['variant']}, flip test "
          f"{'on' if meta['flip_test'] else 'off'}, input {meta['input_size'][0]}x"
          f"{meta['input_size'][1]}, {out.stat().st_size / 2**20:.1f} MiB)")
    return 0
