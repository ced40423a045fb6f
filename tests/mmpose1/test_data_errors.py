"""Bad data on MMPose 1.x: every error names the file (MMPose's own message where it does).

The dataset is built from our 1.x config (``resnest_plugin.CheckedCocoDataset``,
MMPose's ``CocoDataset`` plus the corrupt-JSON checks) on copies of the
bundled mini COCO with one file broken at a time.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from mmengine.config import Config
from mmpose.registry import DATASETS
from mmpose.utils import register_all_modules

import resnest_plugin  # noqa: F401  (registers resnest_plugin.CheckedCocoDataset)
from resnest_plugin.data_checks import CorruptDataError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = (REPO_ROOT / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco" /
          "td-hm_resnest50_8xb64-210e_coco-256x192.py")
IMAGE = "000000196141.jpg"

register_all_modules(init_default_scope=True)


@pytest.fixture()
def coco_copy(tmp_path: Path, coco_root: Path) -> Path:
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    return root


def _build(root: Path, *, test_mode: bool = False, **changes: object):
    cfg = Config.fromfile(str(CONFIG))
    loader = cfg.val_dataloader if test_mode else cfg.train_dataloader
    dataset = copy.deepcopy(loader.dataset.to_dict())
    dataset.update(data_root=str(root), ann_file="test_coco.json", data_prefix=dict(img=""))
    if test_mode:
        dataset["bbox_file"] = str(root / "test_coco_det_AP_H_56.json")
    dataset.update(changes)
    return DATASETS.build(dataset)


def test_the_checked_dataset_gives_mmpose_samples(coco_copy: Path) -> None:
    from mmpose.datasets import CocoDataset

    ours = _build(coco_copy)
    assert type(ours).__name__ == "CheckedCocoDataset" and isinstance(ours, CocoDataset)
    plain = DATASETS.build(dict(type="CocoDataset", data_root=str(coco_copy), data_mode="topdown",
                                ann_file="test_coco.json", data_prefix=dict(img=""), pipeline=[]))
    assert len(ours) == len(plain) == 12
    assert [ours.get_data_info(i)["img_path"] for i in range(12)] == \
        [plain.get_data_info(i)["img_path"] for i in range(12)]


@pytest.mark.parametrize("broken,test_mode", [("test_coco.json", False),
                                              ("test_coco_det_AP_H_56.json", True)])
def test_corrupt_json_names_the_file(coco_copy: Path, broken: str, test_mode: bool) -> None:
    (coco_copy / broken).write_text("{not json")
    with pytest.raises(CorruptDataError) as error:
        _build(coco_copy, test_mode=test_mode)
    assert str(coco_copy / broken) in str(error.value)


def test_missing_annotation_and_bbox_files_are_named(coco_copy: Path) -> None:
    # MMPose's own AssertionError names the file; our re-check then raises a
    # MissingDataError naming it and the config field.
    with pytest.raises(Exception, match="nope.json"):
        _build(coco_copy, ann_file="nope.json")
    with pytest.raises(Exception, match="nope_det.json"):
        _build(coco_copy, test_mode=True, bbox_file=str(coco_copy / "nope_det.json"))


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty"])
def test_bad_image_is_named_by_mmpose(coco_copy: Path, damage: str) -> None:
    image = coco_copy / IMAGE
    if damage == "missing":
        image.unlink()
    else:
        data = image.read_bytes()
        image.write_bytes(b"" if damage == "empty" else data[:2000])
    dataset = _build(coco_copy)
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)["img_path"] == str(image))
    with pytest.raises(Exception) as error:
        dataset[index]
    assert str(image) in str(error.value)
