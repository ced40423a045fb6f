"""``PoseEstimator``: run an exported top-down pose model with numpy, OpenCV and onnxruntime only.

Provenance: the steps are MMPose's top-down test pipeline, in the arithmetic
of the generation that built the file (:mod:`.boxes`): box -> centre/scale
(padding 1.25, the input's aspect ratio), the affine crop with
``cv2.warpAffine(..., flags=cv2.INTER_LINEAR)``, the network with
normalisation, flip test and decoding inside the ONNX graph
(:mod:`.contract`), and the crop -> image inverse transform. The calling
convention (BGR image as ``cv2.imread`` gives it, ``(N, 4)`` x1, y1, x2, y2
boxes from a person detector) is rtmlib's.

This module imports only the standard library, numpy, OpenCV and
onnxruntime: no torch and no OpenMMLab package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort

from . import contract
from .boxes import Geometry, geometry_for, warp_crops
from .decoding import decode_heatmaps
from .errors import NotAnExportError
from .inputs import as_bgr, check_boxes
from .metadata import ExportInfo, parse_metadata

__all__ = ["PoseEstimator"]


def _open_session(path: Path, providers: Sequence[str], threads: Optional[int]) -> ort.InferenceSession:
    if not path.is_file():
        raise NotAnExportError(f"{str(path)!r} does not exist or is not a file; expected an ONNX file written by "
                               "`python -m resnest_plugin.deploy export`")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/... classes
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NotAnExportError(f"{str(path)!r} is not a loadable ONNX model ({first_line}); expected an ONNX "
                               "file written by `python -m resnest_plugin.deploy export`") from None


def _check_graph(session: ort.InferenceSession, info: ExportInfo, source: str) -> None:
    inputs = session.get_inputs()
    width, height = info.input_size
    if len(inputs) != 1 or inputs[0].name != contract.INPUT_NAME or inputs[0].type != "tensor(uint8)":
        found = [(i.name, i.type) for i in inputs]
        raise NotAnExportError(f"{source}: graph inputs are {found}, expected one uint8 input "
                               f"{contract.INPUT_NAME!r} (contract.INPUT_NAME)")
    shape = list(inputs[0].shape)
    static = [d if isinstance(d, int) else None for d in shape]
    if len(shape) != 4 or any(d is not None and d != e for d, e in zip(static[1:], (height, width, 3))):
        raise NotAnExportError(f"{source}: input {contract.INPUT_NAME!r} has shape {shape}, expected "
                               f"[N, {height}, {width}, 3] (NHWC, metadata input_size [W, H] = "
                               f"{list(info.input_size)})")
    expected = ((contract.OUTPUT_KEYPOINTS, contract.OUTPUT_SCORES) if info.variant == "keypoints"
                else (contract.OUTPUT_HEATMAPS,))
    names = tuple(o.name for o in session.get_outputs())
    if set(expected) - set(names):
        raise NotAnExportError(f"{source}: graph outputs are {list(names)}, expected {list(expected)} for the "
                               f"{info.variant!r} variant")


class PoseEstimator:
    """A top-down pose model exported by ``resnest_plugin.deploy``, run on person boxes.

    Args:
        model_path: The ``.onnx`` file.
        max_batch_size: At most this many crops go through the network at once
            (memory bound; results do not depend on it).
        providers: onnxruntime execution providers, in order of preference.
        intra_op_num_threads: onnxruntime's thread count (``None``: its default).

    Raises:
        NotAnExportError: The file is missing, not ONNX, or not one of our
            exports (no or invalid metadata, graph inputs/outputs not as in
            :mod:`.contract`).
        UnsupportedExportError: Our export, of another ``format_version``.
    """

    def __init__(self, model_path: Union[str, Path], max_batch_size: int = 16,
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 intra_op_num_threads: Optional[int] = None) -> None:
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size is {max_batch_size!r}, expected an integer >= 1")
        self.model_path = Path(model_path)
        self.max_batch_size = int(max_batch_size)
        self.session = _open_session(self.model_path, providers, intra_op_num_threads)
        source = str(self.model_path)
        self.info: ExportInfo = parse_metadata(self.session.get_modelmeta().custom_metadata_map, source)
        _check_graph(self.session, self.info, source)
        self.geometry: Geometry = geometry_for(self.info.generation, self.info.input_size,
                                               self.info.heatmap_size, self.info.box_padding)

    @property
    def num_keypoints(self) -> int:
        """``K``, the number of keypoints per person."""
        return self.info.num_keypoints

    def __call__(self, image: Any, boxes: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Estimate the keypoints of the person in each box.

        Args:
            image: The image as ``cv2.imread`` gives it: uint8 ``(H, W, 3)``
                BGR (grayscale ``(H, W)`` / ``(H, W, 1)`` and BGRA ``(H, W, 4)``
                are converted as MMPose's loader does; see :mod:`.inputs`).
            boxes: ``(N, 4)`` x1, y1, x2, y2 person boxes in image pixels
                (a detector's output); ``[]`` for none.

        Returns:
            ``keypoints``, float32 ``(N, K, 2)`` x, y in image pixels, and
            ``scores``, float32 ``(N, K)`` (heatmap maxima), in box order.

        Raises:
            ImageError: The image is not uint8 or of a shape listed above.
            BoxError: The boxes are not ``(N, 4)``, not finite, or a box has
                zero or negative width or height.
        """
        bgr = as_bgr(image)
        checked = check_boxes(boxes)
        centers, scales = self.geometry.center_scale(checked)
        return self.estimate(bgr, centers, scales)

    def estimate(self, image: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Run crops given as MMPose's centres and scales (the evaluation path).

        Args:
            image: uint8 ``(H, W, 3)`` BGR image.
            centers: float32 ``(N, 2)`` box centres.
            scales: float32 ``(N, 2)`` scales in this export's generation's
                unit (:attr:`geometry`: 200 px for MMPose 0.x, pixels for 1.x).

        Returns:
            ``keypoints`` float32 ``(N, K, 2)`` in image pixels and ``scores``
            float32 ``(N, K)``.
        """
        count, k = len(centers), self.num_keypoints
        keypoints = np.zeros((count, k, 2), dtype=np.float32)
        scores = np.zeros((count, k), dtype=np.float32)
        for start in range(0, count, self.max_batch_size):
            stop = min(start + self.max_batch_size, count)
            crops = warp_crops(image, self.geometry, centers[start:stop], scales[start:stop])
            crop_xy, crop_scores = self._run(crops)
            for index in range(start, stop):
                keypoints[index] = self.geometry.to_image(crop_xy[index - start], centers[index], scales[index])
            scores[start:stop] = crop_scores
        return keypoints, scores

    def _run(self, crops: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Run the graph on uint8 ``(n, H, W, 3)`` crops; crop-pixel keypoints and scores."""
        n, k = len(crops), self.num_keypoints
        if self.info.variant == "heatmaps":
            (heatmaps,) = self.session.run([contract.OUTPUT_HEATMAPS], {contract.INPUT_NAME: crops})
            self._check_shape(contract.OUTPUT_HEATMAPS, heatmaps, (n, k, self.info.heatmap_size[1],
                                                                    self.info.heatmap_size[0]))
            return decode_heatmaps(heatmaps, self.info.generation, self.info.input_size)
        crop_xy, crop_scores = self.session.run([contract.OUTPUT_KEYPOINTS, contract.OUTPUT_SCORES],
                                                {contract.INPUT_NAME: crops})
        self._check_shape(contract.OUTPUT_KEYPOINTS, crop_xy, (n, k, 2))
        self._check_shape(contract.OUTPUT_SCORES, crop_scores, (n, k))
        return crop_xy.astype(np.float32, copy=False), crop_scores.astype(np.float32, copy=False)

    def _check_shape(self, name: str, value: np.ndarray, expected: Tuple[int, ...]) -> None:
        if tuple(value.shape) != expected:
            raise NotAnExportError(f"{self.model_path}: output {name!r} has shape {tuple(value.shape)}, expected "
                                   f"{expected} (K = {self.num_keypoints} keypoint_names in the metadata)")
