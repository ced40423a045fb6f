"""Person detector -> pose on an image: the mmdet route of MMPose's own demo, with our config.

mmdet 2.28's Faster R-CNN (its shipped ``faster_rcnn_r50_fpn_1x_coco.py``)
and our ResNeSt-50 pose config, both with random weights saved to a
temporary folder (nothing is downloaded), run on CPU:

* through MMPose's unmodified ``demo/top_down_img_demo_with_mmdet.py``
  (the command users run with real weights, see README), and
* through the ``mmdet.apis`` / ``mmpose.apis`` calls that script makes,
  to check the intermediate results.

Random detector weights score every class alike, so the person logit gets
a fixed bias and the detector config keeps at most 5 boxes, all with a
score threshold of 0: boxes exist and the run stays short.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.models import build_posenet

from resnest_plugin.stock_tools import run_stock_script, stock_script

REPO_ROOT = Path(__file__).resolve().parents[2]
POSE_CONFIG = REPO_ROOT / "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
IMAGE = "000000196141.jpg"
MAX_BOXES = 5


def _mmdet_config(relative: str) -> Path:
    spec = importlib.util.find_spec("mmdet")
    assert spec is not None and spec.submodule_search_locations, "mmdet is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs" / relative
    assert path.is_file(), f"mmdet's shipped config {path} not found"
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory):
    """(config, checkpoint) of a random-weight Faster R-CNN that reports up to 5 persons."""
    from mmdet.core import get_classes
    from mmdet.models import build_detector

    folder = tmp_path_factory.mktemp("det")
    config = folder / "faster_rcnn_r50_fpn_1x_coco_5_boxes.py"
    config.write_text(
        f"_base_ = [{str(_mmdet_config('faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py'))!r}]\n"
        f"model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img={MAX_BOXES})))\n")
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None  # no torchvision://resnet50 download
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    with torch.no_grad():
        # Class 0 of mmdet's COCO classes is "person" (background is the last logit).
        model.roi_head.bbox_head.fc_cls.bias[0] += 6.0
    checkpoint = folder / "faster_rcnn_random.pth"
    save_checkpoint(model, str(checkpoint), meta=dict(CLASSES=get_classes("coco")))
    return config, checkpoint


@pytest.fixture(scope="module")
def pose_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our ResNeSt-50 pose model with random weights."""
    cfg = Config.fromfile(str(POSE_CONFIG))
    cfg.model.pretrained = None
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pose") / "resnest50_random.pth"
    save_checkpoint(build_posenet(cfg.model), str(path))
    return path


def test_mmdet_and_mmpose_apis_find_people_and_their_keypoints(detector, pose_checkpoint: Path,
                                                               coco_root: Path) -> None:
    from mmdet.apis import inference_detector, init_detector
    from mmpose.apis import (inference_top_down_pose_model, init_pose_model,
                             process_mmdet_results)
    from mmpose.datasets import DatasetInfo

    det_model = init_detector(str(detector[0]), str(detector[1]), device="cpu")
    pose_model = init_pose_model(str(POSE_CONFIG), str(pose_checkpoint), device="cpu")
    image = str(coco_root / IMAGE)
    person_results = process_mmdet_results(inference_detector(det_model, image), cat_id=1)
    assert 1 <= len(person_results) <= MAX_BOXES
    poses, _ = inference_top_down_pose_model(
        pose_model, image, person_results, bbox_thr=0.0, format="xyxy",
        dataset_info=DatasetInfo(pose_model.cfg.data.test.dataset_info))
    assert len(poses) == len(person_results)
    for pose, person in zip(poses, person_results):
        assert pose["keypoints"].shape == (17, 3)
        np.testing.assert_allclose(pose["bbox"], person["bbox"])
        # Top-down keypoints lie in the crop: the box padded 1.25x and widened
        # to 3:4, i.e. within max(w, h) of the box on every side.
        x1, y1, x2, y2 = person["bbox"][:4]
        margin = max(x2 - x1, y2 - y1)
        xs, ys = pose["keypoints"][:, 0], pose["keypoints"][:, 1]
        assert np.all((xs >= x1 - margin) & (xs <= x2 + margin) &
                      (ys >= y1 - margin) & (ys <= y2 + margin))


@pytest.mark.slow
def test_mmpose_demo_script_with_mmdet_writes_the_picture(detector, pose_checkpoint: Path,
                                                          coco_root: Path, tmp_path: Path) -> None:
    run = run_stock_script(stock_script("demo/top_down_img_demo_with_mmdet.py"),
                           [str(detector[0]), str(detector[1]), str(POSE_CONFIG),
                            str(pose_checkpoint), "--img-root", str(coco_root), "--img", IMAGE,
                            "--out-img-root", str(tmp_path), "--device", "cpu",
                            "--bbox-thr", "0.0", "--kpt-thr", "0.0"],
                           cwd=REPO_ROOT, echo=False, check=False)
    assert run.returncode == 0, run.output[-3000:]
    drawing = cv2.imread(str(tmp_path / f"vis_{IMAGE}"))
    original = cv2.imread(str(coco_root / IMAGE))
    assert drawing is not None, f"no picture written; output:\n{run.output[-2000:]}"
    assert drawing.shape == original.shape == (429, 640, 3)
    # Boxes and skeletons were drawn (beyond JPEG re-encoding noise).
    changed = (np.abs(drawing.astype(int) - original.astype(int)).max(axis=2) > 40).mean()
    assert changed > 0.001, f"only {changed:.5f} of the pixels changed"
