"""Bad data and bad checkpoints: what MMPose 0.29 says, and what the plugin's checks say.

For each case the stock behaviour is pinned down first (``test_stock_*``:
the reason a plugin-side check exists; if MMPose ever names the file
itself these tests fail and the check can go), then the plugin's
``resnest_plugin.CheckedTopDownCocoDataset`` / ``checkpoint_check`` must
name the offending file or keys. Data: a writable copy of the bundled mini
COCO, broken one way per test.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.datasets import build_dataset
from mmpose.models import build_posenet

import resnest_plugin.hosts.mmpose0  # noqa: F401  (registers resnest_plugin.CheckedTopDownCocoDataset)
from resnest_plugin.data_checks import (CorruptDataError, MissingDataError,
                                        check_coco_annotations, check_detections,
                                        check_image_file, check_image_files)
from resnest_plugin.hosts.mmpose0.datasets import DataPipelineError
from resnest_plugin.hosts.mmpose0.checkpoint_check import check_checkpoint, main as checkpoint_main
from resnest_plugin.hosts.mmpose0.coco_files import CocoFiles, cfg_options, mini_coco
from resnest_plugin.stock_tools import run_stock_script, stock_script

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco"
R50 = CONFIG_DIR / "resnest50_coco_256x192.py"
R101 = CONFIG_DIR / "resnest101_coco_256x192.py"
CHECKED = "resnest_plugin.CheckedTopDownCocoDataset"
STOCK = "TopDownCocoDataset"
IMAGE = "000000196141.jpg"


@pytest.fixture()
def coco_copy(tmp_path: Path, coco_root: Path) -> CocoFiles:
    """A writable copy of the bundled mini COCO (the originals are read-only)."""
    root = tmp_path / "coco"
    root.mkdir()
    for item in coco_root.iterdir():
        shutil.copyfile(item, root / item.name)
    return mini_coco(root)


def _build(files: CocoFiles, dataset_type: str, test_mode: bool = True):
    """Build the test (detector boxes) or train split of our R50 config on ``files``."""
    cfg = Config.fromfile(str(R50))
    split = cfg.data.test if test_mode else cfg.data.train
    split.type = dataset_type
    split.ann_file = str(files.ann_file)
    split.img_prefix = str(files.img_prefix) + "/"
    split.data_cfg.bbox_file = str(files.bbox_file)
    return build_dataset(split, dict(test_mode=test_mode))


def _load_image_of(dataset, image_name: str):
    """Run the pipeline on the first sample of ``image_name``."""
    index = next(i for i, entry in enumerate(dataset.db)
                 if entry["image_file"].endswith(image_name))
    return dataset[index]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# --- the checks themselves, on good and bad files --------------------------------------------

def test_bundled_mini_coco_passes_every_check(coco_root: Path) -> None:
    files = mini_coco(coco_root)
    annotations = check_coco_annotations(files.ann_file)
    detections = check_detections(files.bbox_file)
    images = check_image_files(files.img_prefix / img["file_name"] for img in annotations["images"])
    for image in images:
        check_image_file(image)
    assert (len(annotations["images"]), len(detections), len(images)) == (4, 118, 4)


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty (0 bytes)"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "truncated PNG"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "truncated JPEG"),
])
def test_check_image_file_names_empty_and_truncated_images(tmp_path: Path, content: bytes,
                                                           expected: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(CorruptDataError, match=re.escape(expected)) as info:
        check_image_file(path)
    assert str(path) in str(info.value)


def test_check_detections_rejects_an_empty_list_and_a_wrong_entry(tmp_path: Path) -> None:
    empty, wrong = tmp_path / "empty.json", tmp_path / "wrong.json"
    empty.write_text("[]")
    wrong.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(CorruptDataError, match="an empty list"):
        check_detections(empty)
    with pytest.raises(CorruptDataError, match=r"entry 0 .* lacks one of"):
        check_detections(wrong)


def test_check_coco_annotations_rejects_a_list_and_a_missing_images_key(tmp_path: Path) -> None:
    as_list, no_images = tmp_path / "list.json", tmp_path / "noimages.json"
    as_list.write_text("[]")
    no_images.write_text(json.dumps({"annotations": []}))
    with pytest.raises(CorruptDataError, match="holds a JSON list"):
        check_coco_annotations(as_list)
    with pytest.raises(CorruptDataError, match="has no 'images' list"):
        check_coco_annotations(no_images)


# --- the checked dataset is MMPose's dataset when the data is good ---------------------------

@pytest.mark.parametrize("test_mode", [True, False], ids=["test-detector-boxes", "train-gt"])
def test_checked_dataset_yields_the_same_samples_as_mmpose(coco_root: Path,
                                                          test_mode: bool) -> None:
    stock = _build(mini_coco(coco_root), STOCK, test_mode)
    checked = _build(mini_coco(coco_root), CHECKED, test_mode)
    assert len(checked) == len(stock) == (118 if test_mode else 12)
    assert [e["image_file"] for e in checked.db] == [e["image_file"] for e in stock.db]
    if test_mode:  # the test pipeline is deterministic: samples must be equal
        for index in (0, 57, 117):
            assert torch.equal(checked[index]["img"], stock[index]["img"])
            assert checked[index]["img_metas"].data["image_file"] == \
                stock[index]["img_metas"].data["image_file"]


# --- each broken case: stock message vs checked message --------------------------------------

def _remove_image(files: CocoFiles) -> Path:
    path = files.img_prefix / IMAGE
    path.unlink()
    return path


def _empty_image(files: CocoFiles) -> Path:
    path = files.img_prefix / IMAGE
    path.write_bytes(b"")
    return path


def _truncate_image(files: CocoFiles) -> Path:
    path = files.img_prefix / IMAGE
    _truncate(path)
    return path


def _garbage_image(files: CocoFiles) -> Path:
    path = files.img_prefix / IMAGE
    path.write_bytes(b"this is not an image\n" * 50)
    return path


def test_stock_missing_image_is_reported_only_when_its_sample_is_loaded(coco_copy: CocoFiles
                                                                        ) -> None:
    path = _remove_image(coco_copy)
    dataset = _build(coco_copy, STOCK)  # builds without complaint
    assert len(dataset) == 118
    with pytest.raises(FileNotFoundError, match=IMAGE):
        _load_image_of(dataset, IMAGE)
    assert not path.exists()


def test_checked_missing_image_fails_when_the_dataset_is_built(coco_copy: CocoFiles) -> None:
    path = _remove_image(coco_copy)
    with pytest.raises(MissingDataError) as info:
        _build(coco_copy, CHECKED)
    assert str(path) in str(info.value) and "1 of 4 images" in str(info.value)


@pytest.mark.parametrize("corrupt", [_empty_image, _truncate_image, _garbage_image],
                         ids=["empty", "truncated", "garbage"])
def test_stock_corrupt_image_error_does_not_name_the_file(coco_copy: CocoFiles,
                                                         corrupt: Callable[[CocoFiles], Path]
                                                         ) -> None:
    import cv2

    path = corrupt(coco_copy)
    dataset = _build(coco_copy, STOCK)
    with pytest.raises(cv2.error) as info:
        _load_image_of(dataset, IMAGE)
    assert IMAGE not in str(info.value)
    assert "Assertion failed" in str(info.value) and path.exists()


@pytest.mark.parametrize("corrupt, error, words", [
    (_empty_image, CorruptDataError, "is empty (0 bytes)"),
    (_truncate_image, CorruptDataError, "truncated JPEG"),
    (_garbage_image, DataPipelineError, "failed in the data pipeline"),
], ids=["empty", "truncated", "garbage"])
def test_checked_corrupt_image_error_names_the_file(coco_copy: CocoFiles,
                                                   corrupt: Callable[[CocoFiles], Path],
                                                   error: type, words: str) -> None:
    path = corrupt(coco_copy)
    dataset = _build(coco_copy, CHECKED)  # the file exists, so building succeeds
    with pytest.raises(error) as info:
        _load_image_of(dataset, IMAGE)
    assert str(path) in str(info.value) and words in str(info.value)


def _missing_annotations(files: CocoFiles) -> Dict[str, str]:
    files.ann_file.unlink()
    return {"file": str(files.ann_file), "field": "ann_file"}


def _corrupt_annotations(files: CocoFiles) -> Dict[str, str]:
    _truncate(files.ann_file)
    return {"file": str(files.ann_file), "field": "ann_file"}


def _corrupt_detections(files: CocoFiles) -> Dict[str, str]:
    _truncate(files.bbox_file)
    return {"file": str(files.bbox_file), "field": "bbox_file"}


@pytest.mark.parametrize("corrupt", [_corrupt_annotations, _corrupt_detections],
                         ids=["annotations", "detections"])
def test_stock_corrupt_json_error_names_neither_file_nor_json(coco_copy: CocoFiles,
                                                              corrupt: Callable) -> None:
    facts = corrupt(coco_copy)
    with pytest.raises(TypeError) as info:
        _build(coco_copy, STOCK)
    # mmcv's build_from_cfg re-raises type(e)(msg); JSONDecodeError needs 3 arguments.
    assert "JSONDecodeError.__init__() missing 2 required positional arguments" in str(info.value)
    assert facts["file"] not in str(info.value)


@pytest.mark.parametrize("corrupt, error", [
    (_missing_annotations, MissingDataError),
    (_corrupt_annotations, CorruptDataError),
    (_corrupt_detections, CorruptDataError),
], ids=["missing-annotations", "corrupt-annotations", "corrupt-detections"])
def test_checked_annotation_errors_name_file_and_config_field(coco_copy: CocoFiles,
                                                              corrupt: Callable, error: type
                                                              ) -> None:
    facts = corrupt(coco_copy)
    with pytest.raises(error) as info:
        _build(coco_copy, CHECKED)
    message = str(info.value)
    assert facts["file"] in message and facts["field"] in message
    if error is CorruptDataError:
        assert "is not valid JSON" in message and "line" in message


def test_stock_missing_data_root_names_only_the_annotation_path(tmp_path: Path) -> None:
    files = mini_coco(tmp_path / "no_such_root")
    with pytest.raises(FileNotFoundError) as info:
        _build(files, STOCK)
    # It names the file it tried, not the folder that is missing nor the config field.
    assert str(files.ann_file) in str(info.value)
    assert "folder" not in str(info.value) and "ann_file" not in str(info.value)


def test_checked_missing_data_root_names_the_missing_folder(tmp_path: Path) -> None:
    files = mini_coco(tmp_path / "no_such_root")
    with pytest.raises(MissingDataError) as info:
        _build(files, CHECKED)
    message = str(info.value)
    assert f"the folder {tmp_path / 'no_such_root'} does not exist" in message
    assert "data_root" in message and "ann_file" in message


# --- wrong-depth checkpoint ------------------------------------------------------------------

@pytest.fixture(scope="module")
def r101_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNeSt-101 TopDown checkpoint (our R101 config, random weights)."""
    cfg = Config.fromfile(str(R101))
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = build_posenet(cfg.model)
    path = tmp_path_factory.mktemp("ckpt") / "resnest101_random.pth"
    save_checkpoint(model, str(path))
    return path


def test_checkpoint_check_names_depths_and_keys(r101_checkpoint: Path) -> None:
    report = check_checkpoint(R50, r101_checkpoint)
    assert not report.is_clean
    assert report.checkpoint_blocks == (3, 4, 23, 3) and report.model_blocks == (3, 4, 6, 3)
    # layer3.6 ... layer3.22 exist only in ResNeSt-101; nothing is missing from R50.
    assert "backbone.layer3.6.conv1.weight" in report.unexpected
    assert all(k.startswith("backbone.layer3.") for k in report.unexpected)
    assert report.missing == () and report.shape_mismatched == ()
    summary = report.summary()
    assert "ResNeSt-101" in summary and "ResNeSt-50" in summary
    assert str(r101_checkpoint) in summary and "backbone.layer3.6." in summary


def test_checkpoint_check_command_exit_status(r101_checkpoint: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    assert checkpoint_main([str(R50), str(r101_checkpoint)]) == 1
    assert "unexpected keys" in capsys.readouterr().out
    assert checkpoint_main([str(R101), str(r101_checkpoint)]) == 0
    assert "all keys and shapes match" in capsys.readouterr().out


# --- the same errors through MMPose's stock tools --------------------------------------------

def _few_boxes(files: CocoFiles, tmp_path: Path, count: int = 4) -> CocoFiles:
    """The same data with only the first ``count`` detector boxes (a fast evaluation)."""
    boxes = json.loads(files.bbox_file.read_text())[:count]
    small = tmp_path / "few_boxes.json"
    small.write_text(json.dumps(boxes))
    return CocoFiles(files.ann_file, files.img_prefix, small)


def _checked_config(tmp_path: Path) -> Path:
    """Our R50 config with every split on the checked dataset, as a user would write it."""
    path = tmp_path / "resnest50_checked.py"
    path.write_text(
        f"_base_ = [{str(R50)!r}]\n"
        "custom_imports = dict(imports=['resnest_plugin.hosts.mmpose0'],\n"
        "                      allow_failed_imports=False)\n"
        f"data = dict(train=dict(type={CHECKED!r}), val=dict(type={CHECKED!r}),\n"
        f"            test=dict(type={CHECKED!r}))\n")
    return path


@pytest.mark.slow
def test_stock_test_py_loads_a_wrong_depth_checkpoint_and_carries_on(
        r101_checkpoint: Path, coco_root: Path, tmp_path: Path) -> None:
    files = _few_boxes(mini_coco(coco_root), tmp_path)
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(R50), str(r101_checkpoint), "--work-dir", str(tmp_path / "w"),
                            "--cfg-options", *cfg_options(files, splits=("test",)),
                            "data.workers_per_gpu=0"],
                           cwd=REPO_ROOT, echo=False, check=False)
    # mmcv's load_checkpoint(strict=False) names the keys in one line and evaluates anyway.
    assert run.returncode == 0, run.output[-2000:]
    assert "unexpected key in source state_dict: " in run.output
    assert "backbone.layer3.6.conv1.weight" in run.output
    assert "AP: " in run.output


@pytest.mark.slow
def test_stock_test_py_with_checked_dataset_names_the_corrupt_annotation_file(
        coco_copy: CocoFiles, r101_checkpoint: Path, tmp_path: Path) -> None:
    _truncate(coco_copy.ann_file)
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(_checked_config(tmp_path)), str(r101_checkpoint), "--work-dir",
                            str(tmp_path / "w"), "--cfg-options",
                            *cfg_options(coco_copy, splits=("test",))],
                           cwd=REPO_ROOT, echo=False, check=False)
    assert run.returncode != 0
    assert f"annotation file (ann_file) {coco_copy.ann_file} is not valid JSON" in run.output


@pytest.mark.slow
def test_stock_train_py_with_checked_dataset_names_the_missing_image_before_training(
        coco_copy: CocoFiles, tmp_path: Path) -> None:
    path = _remove_image(coco_copy)
    run = run_stock_script(stock_script("tools/train.py"),
                           [str(_checked_config(tmp_path)), "--work-dir", str(tmp_path / "w"),
                            "--no-validate", "--cfg-options", "model.pretrained=None",
                            *cfg_options(coco_copy), "data.workers_per_gpu=0"],
                           cwd=REPO_ROOT, echo=False, check=False)
    assert run.returncode != 0
    assert "MissingDataError" in run.output and str(path) in run.output
    assert "Epoch [1]" not in run.output  # failed before the first iteration
