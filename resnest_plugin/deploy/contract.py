"""The file format shared by the exporter (torch side) and the runner (numpy side).

One ONNX file per trained model. The exporter (:mod:`resnest_plugin.deploy.export`,
run in an MMPose venv) writes it; the runner (:mod:`resnest_plugin.deploy.runtime`,
numpy + opencv + onnxruntime only) reads it. This module is the only place both
sides agree on names, so it must stay importable without torch, mmcv, mmengine
or mmpose (standard library only).

Graph
-----
Input ``crops``: uint8, shape ``(N, H, W, 3)`` (NHWC, dynamic N), the
affine-warped person crops exactly as MMPose's ``TopDownAffine`` /
``TopdownAffine`` produce them from the image, in the channel order named by
the metadata's ``channel_order`` (``"bgr"``: what ``cv2.imread`` gives). The
graph itself converts to RGB, normalises with ``mean``/``std`` and runs the
network (and, when ``flip_test`` is true, the flipped pass with flip pairs and
``shift_heatmap`` as the config's ``test_cfg`` says).

Outputs of the ``"keypoints"`` variant: ``keypoints`` float32 ``(N, K, 2)``,
x/y in crop pixels (the ``W x H`` input frame, i.e. heatmap coordinates times
``input_size / heatmap_size``), after MMPose's default decoding (arg-max plus
the quarter-pixel shift toward the larger neighbour, with the boundary rule
of the generation named by ``decode``); ``scores`` float32 ``(N, K)`` (the
heatmap maxima). Outputs of the ``"heatmaps"`` variant: ``heatmaps`` float32
``(N, K, h, w)`` only (flip test applied inside when ``flip_test`` is true).

Metadata
--------
``onnx.ModelProto.metadata_props`` holds one entry, key :data:`METADATA_KEY`,
whose value is a JSON object with the fields of :data:`REQUIRED_FIELDS`.
"""
from __future__ import annotations

from typing import Tuple

#: metadata_props key whose value is the JSON metadata object.
METADATA_KEY = "resnest_plugin"
#: Value of the metadata's ``format`` field.
FORMAT = "resnest_plugin.pose_topdown"
#: Value of the metadata's ``format_version`` field; bump on any incompatible change.
FORMAT_VERSION = 1

#: Graph input name: uint8 (N, H, W, 3) crops in ``channel_order``.
INPUT_NAME = "crops"
#: Output names of the ``"keypoints"`` variant.
OUTPUT_KEYPOINTS = "keypoints"
OUTPUT_SCORES = "scores"
#: Output name of the ``"heatmaps"`` variant.
OUTPUT_HEATMAPS = "heatmaps"

#: Allowed values of the metadata's ``variant`` field.
VARIANTS: Tuple[str, ...] = ("keypoints", "heatmaps")
#: Allowed values of ``decode``: MMPose 0.x ``post_process='default'``
#: (``keypoints_from_heatmaps``: shift only when 1 < x < W-1 and 1 < y < H-1)
#: and MMPose 1.x ``MSRAHeatmap(unbiased=False)`` (``refine_keypoints``: each
#: axis on its own condition).
DECODES: Tuple[str, ...] = ("mmpose0-default", "mmpose1-msra")
#: Allowed values of ``precision``.
PRECISIONS: Tuple[str, ...] = ("fp32", "int8")

#: Fields every export's metadata carries (name -> meaning).
REQUIRED_FIELDS = {
    "format": "FORMAT",
    "format_version": "FORMAT_VERSION",
    "variant": "one of VARIANTS",
    "precision": "one of PRECISIONS",
    "input_size": "[W, H] of the crop the graph takes",
    "heatmap_size": "[w, h] of the heatmaps",
    "channel_order": "'bgr' (the crop's channel order)",
    "layout": "'NHWC'",
    "mean": "[r, g, b] on the 0-255 scale, applied inside the graph",
    "std": "[r, g, b] on the 0-255 scale, applied inside the graph",
    "box_padding": "1.25: box -> scale padding of MMPose's top-down pipeline",
    "flip_test": "bool: flipped pass averaged inside the graph",
    "shift_heatmap": "bool: flipped heatmap shifted one pixel right (0.x / 1.x test_cfg)",
    "decode": "one of DECODES (keypoints variant), or null",
    "keypoint_names": "list of K names",
    "skeleton": "list of [i, j] keypoint index pairs to draw",
    "flip_pairs": "list of [i, j] index pairs swapped by a horizontal flip",
    "sigmas": "list of K OKS sigmas (COCO), for evaluation",
    "config": "file name of the config the model was built from",
    "checkpoint_sha256": "sha256 of the checkpoint file",
    "plugin_version": "resnest_plugin.__version__ at export",
    "mmpose_version": "version of the MMPose that built the model",
}
