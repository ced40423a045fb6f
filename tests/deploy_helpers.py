"""Tiny ONNX files that obey resnest_plugin.deploy.contract, built with the onnx helper API.

The runner's tests use them instead of a real export, so they need neither
torch nor the exporter. Two graphs:

* ``"keypoints"`` variant, the *brightest-pixel* model: every keypoint ``k``
  is the crop pixel of largest channel sum (first in row-major order), plus
  ``OFFSETS[k]`` crop pixels; its score is that sum / 765 times
  ``SCORE_FACTORS[k]``. A bright dot in the image therefore comes back at its
  own position (within one crop pixel), which tests the crop and the inverse
  transform end to end.
* ``"heatmaps"`` variant: the crop's channel sum, 4 x 4 average-pooled, the
  same map for every keypoint.

Needs ``onnx`` (both stacks have it); the files are then read with
onnxruntime only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from resnest_plugin.deploy import contract

__all__ = ["COCO_KEYPOINTS", "COCO_SIGMAS", "COCO_SKELETON", "OFFSETS", "SCORE_FACTORS",
           "assert_evaluate_matches_stock", "export_random_model", "tiny_metadata",
           "write_tiny_model"]

COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]
COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
               0.087, 0.087, 0.089, 0.089]
COCO_SKELETON = [[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8],
                 [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6]]
K = len(COCO_KEYPOINTS)
#: Crop-pixel offset of keypoint k from the brightest pixel: k - 8 in x, 0 in y.
OFFSETS = np.stack([np.arange(K) - 8, np.zeros(K)], axis=1).astype(np.float32)
#: Score of keypoint k = brightness * SCORE_FACTORS[k].
SCORE_FACTORS = np.linspace(0.1, 1.0, K).astype(np.float32)


def tiny_metadata(decode: Optional[str] = "mmpose1-msra", input_size: Tuple[int, int] = (192, 256),
                  **overrides: Any) -> Dict[str, Any]:
    """A complete metadata object of :data:`contract.REQUIRED_FIELDS` for the tiny models."""
    variant = "keypoints" if decode is not None else "heatmaps"
    meta: Dict[str, Any] = {
        "format": contract.FORMAT, "format_version": contract.FORMAT_VERSION, "variant": variant,
        "precision": "fp32", "input_size": list(input_size),
        "heatmap_size": [input_size[0] // 4, input_size[1] // 4], "channel_order": "bgr", "layout": "NHWC",
        "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "box_padding": 1.25,
        "flip_test": False, "shift_heatmap": False, "decode": decode, "keypoint_names": list(COCO_KEYPOINTS),
        "skeleton": COCO_SKELETON, "flip_pairs": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14],
                                                   [15, 16]],
        "sigmas": list(COCO_SIGMAS), "config": "tiny.py", "checkpoint_sha256": "0" * 64,
        "plugin_version": "0.0.0", "mmpose_version": "1.3.2" if decode != "mmpose0-default" else "0.29.0",
    }
    meta.update(overrides)
    return meta


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name=name)


def _keypoints_graph(width: int, height: int) -> onnx.GraphProto:
    nodes = [
        helper.make_node("Cast", ["crops"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["pixels", "channel_axis"], ["brightness"], keepdims=0),
        helper.make_node("Reshape", ["brightness", "flat_shape"], ["flat"]),
        helper.make_node("ArgMax", ["flat"], ["index"], axis=1, keepdims=1, select_last_index=0),
        helper.make_node("Mod", ["index", "width"], ["x"]),
        helper.make_node("Div", ["index", "width"], ["y"]),
        helper.make_node("Concat", ["x", "y"], ["xy_int"], axis=1),
        helper.make_node("Cast", ["xy_int"], ["xy"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["xy", "one_axis"], ["xy_1"]),
        helper.make_node("Add", ["xy_1", "offsets"], ["keypoints"]),
        helper.make_node("ReduceMax", ["flat"], ["peak"], axes=[1], keepdims=1),
        helper.make_node("Div", ["peak", "full_scale"], ["peak_unit"]),
        helper.make_node("Mul", ["peak_unit", "score_factors"], ["scores"]),
    ]
    initializers = [
        _const("channel_axis", np.array([3], dtype=np.int64)),
        _const("flat_shape", np.array([0, -1], dtype=np.int64)),
        _const("width", np.array(width, dtype=np.int64)),
        _const("one_axis", np.array([1], dtype=np.int64)),
        _const("offsets", OFFSETS[None]),
        _const("full_scale", np.array(765.0, dtype=np.float32)),
        _const("score_factors", SCORE_FACTORS[None]),
    ]
    outputs = [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["N", K, 2]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", K])]
    crops = helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", height, width, 3])
    return helper.make_graph(nodes, "tiny_brightest", [crops], outputs, initializers)


def _heatmaps_graph(width: int, height: int) -> onnx.GraphProto:
    nodes = [
        helper.make_node("Cast", ["crops"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceSum", ["nchw", "channel_axis"], ["brightness"], keepdims=1),
        helper.make_node("AveragePool", ["brightness"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Tile", ["pooled", "repeats"], ["heatmaps"]),
    ]
    initializers = [_const("channel_axis", np.array([1], dtype=np.int64)),
                    _const("repeats", np.array([1, K, 1, 1], dtype=np.int64))]
    outputs = [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", K, height // 4, width // 4])]
    crops = helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", height, width, 3])
    return helper.make_graph(nodes, "tiny_heatmaps", [crops], outputs, initializers)


def write_tiny_model(path: Path, decode: Optional[str] = "mmpose1-msra", input_size: Tuple[int, int] = (192, 256),
                     metadata: Optional[Dict[str, Any]] = None, raw_metadata: Optional[str] = None) -> Path:
    """Write a tiny contract-obeying ONNX file.

    Args:
        path: Where to write.
        decode: ``"mmpose0-default"`` / ``"mmpose1-msra"`` (keypoints variant) or
            ``None`` (heatmaps variant).
        input_size: ``(W, H)`` of the crop.
        metadata: The metadata object (default :func:`tiny_metadata`).
        raw_metadata: The metadata entry's raw string instead (for broken-metadata tests);
            ``""`` writes no entry at all.

    Returns:
        ``path``.
    """
    width, height = input_size
    graph = _keypoints_graph(width, height) if decode is not None else _heatmaps_graph(width, height)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    if raw_metadata is None:
        raw_metadata = json.dumps(metadata if metadata is not None else tiny_metadata(decode, input_size))
    if raw_metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = contract.METADATA_KEY, raw_metadata
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def assert_evaluate_matches_stock(export: Path, coco_root: Path, gt_boxes: bool, expected: List[Dict[str, Any]],
                                  stock_output: str, identity: Tuple[str, ...]) -> None:
    """``evaluate`` of ``export`` against the stock ``tools/test.py``'s results list and printed metrics.

    Args:
        export: The exported file.
        coco_root: The bundled mini COCO.
        gt_boxes: Ground-truth boxes (else the bundled detections).
        expected: The results list the stock tool wrote.
        stock_output: What it printed (its ten metrics).
        identity: Result fields that must be equal person by person (besides ``image_id``).
    """
    from resnest_plugin.coco_metrics import parse_test_output
    from resnest_plugin.deploy import PoseEstimator
    from resnest_plugin.deploy.evaluate import evaluate_coco

    estimator = PoseEstimator(export, intra_op_num_threads=1)
    mine = evaluate_coco(estimator, coco_root / "test_coco.json", coco_root,
                         None if gt_boxes else coco_root / "test_coco_det_AP_H_56.json")
    assert len(mine.results) == len(expected) > (10 if gt_boxes else 50)
    for got, want in zip(mine.results, expected):
        assert [got[k] for k in ("image_id", *identity)] == [want[k] for k in ("image_id", *identity)]
    got_kps = np.array([r["keypoints"] for r in mine.results]).reshape(len(expected), -1, 3)
    want_kps = np.array([r["keypoints"] for r in expected]).reshape(len(expected), -1, 3)
    np.testing.assert_array_equal(got_kps[..., :2], want_kps[..., :2])  # image pixels: identical
    np.testing.assert_allclose(got_kps[..., 2], want_kps[..., 2], rtol=0, atol=1e-5)  # float32 noise
    metrics = parse_test_output(stock_output)
    assert {name: round(value, 4) for name, value in mine.stats.items()} == {
        name: round(metrics[name], 4) for name in mine.stats}


def export_random_model(model: Any, config: Path, folder: Path, save: Callable[[Any, Path], None]) -> Dict[str, Path]:
    """Give ``model`` non-trivial random weights, save it as its generation does, and export it (fp32, flip test).

    Args:
        model: A freshly built MMPose top-down model of ``config``.
        config: Its config file.
        folder: Where the checkpoint and the export go.
        save: Writes the checkpoint as the generation's runner does (``save(model, path)``).

    Returns:
        ``checkpoint``, ``export`` and ``folder``.
    """
    from model_helpers import randomise

    from resnest_plugin.deploy.export import main as export_main

    randomise(model, seed=5, spread=0.1)
    model.eval()
    checkpoint, export = folder / "r50.pth", folder / "r50.onnx"
    save(model, checkpoint)
    assert export_main([str(config), str(checkpoint), str(export)]) == 0
    return dict(checkpoint=checkpoint, export=export, folder=folder)
