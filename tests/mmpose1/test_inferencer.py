"""Inference with our 1.x config: MMPoseInferencer, and mmdet 3.x detector -> pose (slow).

Offline, nothing is downloaded: the pose model is our ResNeSt-50 256x192
config with random weights saved to a temporary checkpoint (with
``meta.dataset_meta``, as a 1.x checkpoint has it); the detector is mmdet
3.3's shipped ``faster-rcnn_r50_fpn_1x_coco.py`` with random weights
(``backbone.init_cfg=None``: no ``torchvision://resnet50``). Random
detector weights score every class alike, so the person logit gets a
fixed bias and the detector keeps at most 5 boxes at score threshold 0:
boxes exist and the run stays short. Everything runs on CPU on the bundled
``tests/data/coco/000000196141.jpg``.

The routes:

* ``MMPoseInferencer(pose2d=<our config>, pose2d_weights=..., det_model='whole_image')``:
  no detector, the whole image is the box. MMPose 1.3.2's
  ``Pose2DInferencer.preprocess_single`` resets its ``bboxes`` argument to
  ``[]`` before looking at the detector, so ``bboxes=`` is ignored (pinned
  below): for your own boxes use ``mmpose.apis.inference_topdown``.
* ``MMPoseInferencer(..., det_model=<mmdet config>, det_weights=..., det_cat_ids=[0])``.
* ``mmdet.apis.init_detector`` / ``inference_detector``, then
  ``mmpose.apis.init_model`` / ``inference_topdown`` / ``merge_data_samples``
  and ``PoseLocalVisualizer``: the calls of MMPose's
  ``demo/topdown_demo_with_mmdet.py``; both routes must give the same poses.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Tuple

import cv2
import mmdet
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint

from resnest_plugin.hosts import mmpose1 as host

from tools_helpers import CONFIG_R50

pytestmark = pytest.mark.slow

IMAGE = "000000196141.jpg"
IMAGE_SHAPE = (429, 640, 3)
MAX_BOXES = 5
BBOX_THR = NMS_THR = 0.3  # the inferencer's defaults, applied on the API route too
DRAW_ALL = -1e9  # kpt_thr: random heatmaps give scores ~1e-7 (or below 0)
DRAW_NONE = 1e9
MMDET_FASTER_RCNN = (Path(mmdet.__file__).parent / ".mim" / "configs" / "faster_rcnn"
                     / "faster-rcnn_r50_fpn_1x_coco.py")


@pytest.fixture(autouse=True)
def _restore_default_scope() -> Iterator[None]:
    """init_detector / the inferencers switch mmengine's default scope: restore it afterwards."""
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(scope="module")
def pose_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our ResNeSt-50 pose model, randomly initialised, saved as a 1.x checkpoint."""
    from mmpose.apis import init_model

    torch.manual_seed(0)
    model = init_model(str(CONFIG_R50), None, device="cpu")  # sets backbone.init_cfg=None
    model.init_weights()
    path = tmp_path_factory.mktemp("pose") / "resnest50_random.pth"
    save_checkpoint({"state_dict": model.state_dict(),
                     "meta": {"dataset_meta": model.dataset_meta}}, str(path))
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """(config, checkpoint) of a random-weight Faster R-CNN that reports up to 5 persons."""
    from mmdet.apis import init_detector

    assert MMDET_FASTER_RCNN.is_file(), f"mmdet's shipped config {MMDET_FASTER_RCNN} not found"
    folder = tmp_path_factory.mktemp("det")
    config = folder / "faster-rcnn_r50_fpn_1x_coco_5_boxes.py"
    config.write_text(
        f"_base_ = [{str(MMDET_FASTER_RCNN)!r}]\n"
        "model = dict(backbone=dict(init_cfg=None),  # no torchvision://resnet50 download\n"
        f"             test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img={MAX_BOXES})))\n")
    torch.manual_seed(0)
    saved = DefaultScope._instance_dict.copy()
    try:
        model = init_detector(str(config), None, device="cpu")
    finally:
        DefaultScope._instance_dict.clear()
        DefaultScope._instance_dict.update(saved)
    with torch.no_grad():
        # Class 0 of mmdet's COCO classes is "person" (background is the last logit).
        model.roi_head.bbox_head.fc_cls.bias[0] += 6.0
    checkpoint = folder / "faster-rcnn_random.pth"
    save_checkpoint({"state_dict": model.state_dict(),
                     "meta": {"dataset_meta": model.dataset_meta}}, str(checkpoint))
    return config, checkpoint


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image[:, :, ::-1]


def _changed(drawing: np.ndarray, original: np.ndarray) -> float:
    """Fraction of pixels changed by more than 40 in some channel."""
    return float((np.abs(drawing.astype(int) - original.astype(int)).max(axis=2) > 40).mean())


def test_inferencer_without_detector_draws_a_skeleton_on_the_bundled_image(
        pose_checkpoint: Path, coco_root: Path, tmp_path: Path) -> None:
    from mmpose.apis import MMPoseInferencer

    inferencer = MMPoseInferencer(pose2d=str(CONFIG_R50), pose2d_weights=str(pose_checkpoint),
                                  device="cpu", det_model="whole_image")
    model = inferencer.inferencer.model
    assert type(model.backbone) is host.ResNeSt
    saved = torch.load(pose_checkpoint, map_location="cpu")["state_dict"]
    key = "backbone.layer4.2.conv2.fc2.weight"
    assert torch.equal(model.state_dict()[key], saved[key]), "pose2d_weights were not loaded"

    image = coco_root / IMAGE
    vis_dir = tmp_path / "vis"
    result = next(inferencer(str(image), vis_out_dir=str(vis_dir), return_vis=True,
                             kpt_thr=DRAW_ALL, bboxes=[[10, 10, 100, 200]]))
    (people,) = result["predictions"]
    assert len(people) == 1
    # bboxes= is ignored by MMPose 1.3.2's Pose2DInferencer: the whole image is the box.
    np.testing.assert_allclose(people[0]["bbox"][0], [0, 0, IMAGE_SHAPE[1], IMAGE_SHAPE[0]])
    keypoints = np.asarray(people[0]["keypoints"])
    assert keypoints.shape == (17, 2) and np.isfinite(keypoints).all()
    assert len(people[0]["keypoint_scores"]) == 17

    written = sorted(p.name for p in vis_dir.iterdir())
    assert written == [IMAGE], written
    assert cv2.imread(str(vis_dir / IMAGE)).shape == IMAGE_SHAPE
    original = _rgb(image)
    (drawing,) = result["visualization"]
    assert drawing.shape == IMAGE_SHAPE and _changed(drawing, original) > 0.001
    # With every keypoint under the threshold and no box, nothing is drawn:
    # what changed above is the skeleton.
    (blank,) = next(inferencer(str(image), return_vis=True, kpt_thr=DRAW_NONE,
                               draw_bbox=False))["visualization"]
    np.testing.assert_array_equal(blank, original)


def _inside_padded_box(keypoints: np.ndarray, box: np.ndarray) -> bool:
    """Top-down keypoints lie in the crop: the box padded 1.25x and widened to 3:4,
    i.e. within max(w, h) of the box on every side."""
    x1, y1, x2, y2 = box[:4]
    margin = max(x2 - x1, y2 - y1)
    xs, ys = keypoints[:, 0], keypoints[:, 1]
    return bool(np.all((xs >= x1 - margin) & (xs <= x2 + margin)
                       & (ys >= y1 - margin) & (ys <= y2 + margin)))


def test_mmdet_detector_then_pose_apis_and_inferencer_agree(
        detector: Tuple[Path, Path], pose_checkpoint: Path, coco_root: Path,
        tmp_path: Path) -> None:
    from mmdet.apis import inference_detector, init_detector
    from mmpose.apis import MMPoseInferencer, inference_topdown, init_model
    from mmpose.evaluation.functional import nms
    from mmpose.structures import merge_data_samples
    from mmpose.visualization import PoseLocalVisualizer

    image = str(coco_root / IMAGE)
    # mmdet 3.x: boxes, scores, labels; keep persons over the threshold, then NMS.
    det_model = init_detector(str(detector[0]), str(detector[1]), device="cpu")
    found = inference_detector(det_model, image).pred_instances.cpu().numpy()
    assert 1 <= len(found.bboxes) <= MAX_BOXES
    boxes = np.concatenate([found.bboxes, found.scores[:, None]], axis=1)
    boxes = boxes[(found.labels == 0) & (found.scores > BBOX_THR)]
    boxes = boxes[nms(boxes, NMS_THR)]
    assert len(boxes) >= 1

    pose_model = init_model(str(CONFIG_R50), str(pose_checkpoint), device="cpu")
    assert type(pose_model.backbone) is host.ResNeSt
    samples = inference_topdown(pose_model, image, boxes[:, :4], bbox_format="xyxy")
    assert len(samples) == len(boxes)
    merged = merge_data_samples(samples)
    keypoints = merged.pred_instances.keypoints
    assert keypoints.shape == (len(boxes), 17, 2) and np.isfinite(keypoints).all()
    np.testing.assert_allclose(merged.pred_instances.bboxes, boxes[:, :4], rtol=1e-5)
    for person, box in zip(keypoints, boxes):
        assert _inside_padded_box(person, box)

    visualizer = PoseLocalVisualizer(name=f"resnest-test-{time.time()}")
    visualizer.set_dataset_meta(pose_model.dataset_meta)
    original = _rgb(Path(image))
    out_file = tmp_path / f"vis_{IMAGE}"
    visualizer.add_datasample("result", original.copy(), data_sample=merged, draw_gt=False,
                              draw_bbox=True, kpt_thr=DRAW_ALL, show=False, out_file=str(out_file))
    drawing = _rgb(out_file)
    assert drawing.shape == IMAGE_SHAPE and _changed(drawing, original) > 0.001

    # The inferencer with the same detector and pose model: the same people and poses.
    inferencer = MMPoseInferencer(pose2d=str(CONFIG_R50), pose2d_weights=str(pose_checkpoint),
                                  device="cpu", det_model=str(detector[0]),
                                  det_weights=str(detector[1]), det_cat_ids=[0])
    (people,) = next(inferencer(image, bbox_thr=BBOX_THR, nms_thr=NMS_THR))["predictions"]
    assert len(people) == len(boxes)
    np.testing.assert_allclose([p["bbox"][0] for p in people], boxes[:, :4], rtol=1e-4)
    np.testing.assert_allclose([p["keypoints"] for p in people], keypoints, atol=1e-2)
