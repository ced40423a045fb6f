"""The installed MMPose's own top-down functions behind one interface: the oracle of the runner's tests.

:func:`host_reference` returns the reference of the installed generation
(``resnest_plugin.hosts.installed_host()``), so each stack checks the
runner's arithmetic of its own generation against MMPose itself; nothing is
skipped. Every method takes and returns what :class:`~resnest_plugin.deploy.boxes.Geometry`
does, for a ``192 x 256`` input with ``48 x 64`` heatmaps.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from resnest_plugin.hosts import installed_host

__all__ = ["HEATMAP_SIZE", "INPUT_SIZE", "host_reference"]

INPUT_SIZE = (192, 256)
HEATMAP_SIZE = (48, 64)


class _Mmpose0:
    generation = "mmpose0"

    def __init__(self) -> None:
        from mmpose.core.evaluation.top_down_eval import keypoints_from_heatmaps
        from mmpose.core.post_processing import get_affine_transform, transform_preds
        from mmpose.core.post_processing.nms import oks_nms
        from mmpose.datasets.pipelines.top_down_transform import TopDownAffine, TopDownGetBboxCenterScale

        self._decode, self._affine, self._inverse = keypoints_from_heatmaps, get_affine_transform, transform_preds
        self.oks_nms = oks_nms
        self._cs, self._crop = TopDownGetBboxCenterScale(padding=1.25), TopDownAffine()
        self._ann_info = {"image_size": np.array(INPUT_SIZE), "num_joints": 17}

    def center_scale(self, box: List[float]) -> Tuple[np.ndarray, np.ndarray]:
        x1, y1, x2, y2 = box
        out = self._cs({"bbox": [x1, y1, x2 - x1, y2 - y1], "ann_info": self._ann_info})
        return out["center"], out["scale"]

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return self._affine(center, scale, 0, self._ann_info["image_size"])

    def crop(self, image: np.ndarray, box: List[float]) -> np.ndarray:
        center, scale = self.center_scale(box)
        results = {"img": image, "joints_3d": np.zeros((17, 3), np.float32),
                   "joints_3d_visible": np.zeros((17, 3), np.float32), "center": center, "scale": scale,
                   "rotation": 0, "ann_info": self._ann_info}
        return self._crop(results)["img"]

    def to_image(self, crop_xy: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        # keypoints_from_heatmaps calls transform_preds on heatmap coordinates (crop / 4).
        return self._inverse(crop_xy / np.float32(4), center, scale, list(HEATMAP_SIZE))

    def decode_to_image(self, heatmaps: np.ndarray, centers: np.ndarray,
                        scales: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        preds, maxvals = self._decode(heatmaps.copy(), centers, scales, post_process="default")
        return preds, maxvals[..., 0]


class _Mmpose1:
    generation = "mmpose1"

    def __init__(self) -> None:
        from mmengine.structures import InstanceData
        from mmpose.codecs import MSRAHeatmap
        from mmpose.datasets.transforms import GetBBoxCenterScale, TopdownAffine
        from mmpose.evaluation.functional import oks_nms
        from mmpose.models.pose_estimators import TopdownPoseEstimator
        from mmpose.structures import PoseDataSample
        from mmpose.structures.bbox import get_warp_matrix

        self._instance, self._sample, self._estimator = InstanceData, PoseDataSample, TopdownPoseEstimator
        self._codec = MSRAHeatmap(input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, sigma=2)
        self._warp, self.oks_nms = get_warp_matrix, oks_nms
        self._cs, self._crop = GetBBoxCenterScale(padding=1.25), TopdownAffine(input_size=INPUT_SIZE)

    def _affine_results(self, image: np.ndarray, box: List[float]) -> dict:
        results = self._cs.transform({"bbox": np.array([box], dtype=np.float32), "img": image})
        return self._crop.transform(results)

    def center_scale(self, box: List[float]) -> Tuple[np.ndarray, np.ndarray]:
        results = self._affine_results(np.zeros((4, 4, 3), np.uint8), box)
        return results["input_center"], results["input_scale"]

    def warp_matrix(self, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return self._warp(center, scale, 0.0, output_size=INPUT_SIZE)

    def crop(self, image: np.ndarray, box: List[float]) -> np.ndarray:
        return self._affine_results(image, box)["img"]

    def to_image(self, crop_xy: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        # TopdownPoseEstimator.add_pred_to_datasample only reads self.test_cfg.
        pred = self._instance(keypoints=crop_xy[None].astype(np.float32).copy(),
                              keypoint_scores=np.ones((1, len(crop_xy)), np.float32))
        sample = self._sample(metainfo={"input_center": center, "input_scale": scale, "input_size": INPUT_SIZE})
        sample.gt_instances = self._instance(bboxes=np.zeros((1, 4), np.float32),
                                             bbox_scores=np.ones(1, np.float32))

        class _Cfg:
            test_cfg: dict = {}

        (out,) = self._estimator.add_pred_to_datasample(_Cfg(), [pred], None, [sample])
        return out.pred_instances.keypoints[0]

    def decode_crop(self, heatmaps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        keypoints, scores = self._codec.decode(heatmaps.copy())
        return keypoints[0], scores[0]


def host_reference() -> "_Mmpose0 | _Mmpose1":
    """The installed MMPose generation's reference (the conftest guarantees there is one)."""
    host = installed_host()
    assert host in ("mmpose0", "mmpose1"), f"no MMPose installed (host {host!r})"
    return _Mmpose0() if host == "mmpose0" else _Mmpose1()
