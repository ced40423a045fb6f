"""The exported-model runner (resnest_plugin.deploy.runtime and friends), on both stacks.

The runner's arithmetic is compared bit for bit with the installed MMPose's
own functions (tests/deploy_host_reference.py: 0.x on the 0.x stack, 1.x on
the 1.x stack); everything else runs the tiny contract-obeying ONNX files of
tests/deploy_helpers.py, so no exporter and no torch is involved.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
from deploy_helpers import COCO_KEYPOINTS, OFFSETS, SCORE_FACTORS, tiny_metadata, write_tiny_model
from deploy_host_reference import HEATMAP_SIZE, INPUT_SIZE, host_reference

from resnest_plugin.deploy import PoseEstimator
from resnest_plugin.deploy.boxes import Mmpose0Geometry, Mmpose1Geometry, geometry_for, warp_crops
from resnest_plugin.deploy.cli import main as cli_main
from resnest_plugin.deploy.decoding import decode_heatmaps
from resnest_plugin.deploy.errors import (BoxError, ImageError, ImageReadError, MissingDependencyError,
                                          NotAnExportError, UnsupportedExportError)
from resnest_plugin.deploy.evaluate import evaluate_coco, oks_nms
from resnest_plugin.deploy.inputs import as_bgr, read_image

REPO = Path(__file__).resolve().parents[1]
COCO = REPO / "tests" / "data" / "coco"
IMAGE = COCO / "000000000785.jpg"
DECODES = ("mmpose0-default", "mmpose1-msra")
K = len(COCO_KEYPOINTS)


def _boxes(rng: np.random.Generator, count: int, width: int = 640, height: int = 480) -> List[List[float]]:
    """Random x1, y1, x2, y2 boxes: inside, partly outside, thin, wide, sub-pixel sized."""
    boxes = [[10.0, 20.0, 110.0, 220.0], [-50.5, -30.25, 100.0, 90.0], [600.0, 400.0, 900.0, 700.0],
             [0.0, 0.0, float(width), float(height)], [5.0, 5.0, 5.5, 300.0], [3.0, 4.0, 400.0, 4.75],
             [100.0, 100.0, 100.001, 100.001]]
    for _ in range(count):
        x1, y1 = rng.uniform(-100, width), rng.uniform(-100, height)
        boxes.append([x1, y1, x1 + rng.uniform(0.5, 500), y1 + rng.uniform(0.5, 500)])
    return boxes


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny exports: one per decode rule (keypoints variant) and a heatmaps variant of each generation."""
    root = tmp_path_factory.mktemp("tiny")
    built = {decode: write_tiny_model(root / f"{decode}.onnx", decode) for decode in DECODES}
    for version in ("0.29.0", "1.3.2"):
        built[f"heatmaps-{version}"] = write_tiny_model(root / f"heatmaps-{version}.onnx", None,
                                                        metadata=tiny_metadata(None, mmpose_version=version))
    return built


# --- box -> centre/scale, affine matrix, inverse: known values and MMPose's own functions ------------------


def test_center_scale_of_a_tall_box_widens_it_to_the_input_aspect_ratio_in_both_generations() -> None:
    old = Mmpose0Geometry(INPUT_SIZE, HEATMAP_SIZE, 1.25)
    new = Mmpose1Geometry(INPUT_SIZE, HEATMAP_SIZE, 1.25)
    box = np.array([[10.0, 20.0, 110.0, 220.0]])  # 100 x 200 -> 150 x 200 at 3:4, times 1.25
    center0, scale0 = old.center_scale(box)
    center1, scale1 = new.center_scale(box)
    np.testing.assert_array_equal(center0, [[60.0, 120.0]])
    np.testing.assert_array_equal(center1, [[60.0, 120.0]])
    np.testing.assert_array_equal(scale0, [[0.9375, 1.25]])  # units of 200 px
    np.testing.assert_array_equal(scale1, [[187.5, 250.0]])  # pixels
    assert scale0.dtype == scale1.dtype == np.float32


def test_center_scale_and_affine_matrix_equal_the_installed_mmpose_bit_for_bit() -> None:
    reference = host_reference()
    geometry = geometry_for(reference.generation, INPUT_SIZE, HEATMAP_SIZE, 1.25)
    boxes = _boxes(np.random.default_rng(0), 200)
    centers, scales = geometry.center_scale(np.array(boxes))
    for box, center, scale in zip(boxes, centers, scales):
        expected_center, expected_scale = reference.center_scale(box)
        np.testing.assert_array_equal(center, np.reshape(expected_center, 2), err_msg=str(box))
        np.testing.assert_array_equal(scale, np.reshape(expected_scale, 2), err_msg=str(box))
        np.testing.assert_array_equal(geometry.warp_matrix(center, scale),
                                      reference.warp_matrix(center, scale), err_msg=str(box))


def test_crops_equal_the_installed_mmpose_pipeline_also_for_boxes_partly_outside_the_image() -> None:
    reference = host_reference()
    geometry = geometry_for(reference.generation, INPUT_SIZE, HEATMAP_SIZE, 1.25)
    image = cv2.imread(str(IMAGE))
    boxes = _boxes(np.random.default_rng(1), 20)
    centers, scales = geometry.center_scale(np.array(boxes))
    crops = warp_crops(image, geometry, centers, scales)
    assert crops.shape == (len(boxes), INPUT_SIZE[1], INPUT_SIZE[0], 3) and crops.dtype == np.uint8
    for box, crop in zip(boxes, crops):
        np.testing.assert_array_equal(crop, reference.crop(image.copy(), box), err_msg=str(box))
    # [-50.5, -30.25, 100, 90] reaches past the top-left corner: MMPose pads with black, and so do we.
    assert (crops[1][:5, :5] == 0).all() and crops[1].any()


def test_inverse_transform_equals_the_installed_mmpose_bit_for_bit() -> None:
    reference = host_reference()
    geometry = geometry_for(reference.generation, INPUT_SIZE, HEATMAP_SIZE, 1.25)
    rng = np.random.default_rng(2)
    boxes = _boxes(rng, 50)
    centers, scales = geometry.center_scale(np.array(boxes))
    for center, scale in zip(centers, scales):
        # What a graph gives: heatmap coordinates (quarter pixels, -1 for none) times 4.
        heat = np.round(rng.uniform(-1, 64, size=(K, 2)) * 4) / 4
        heat[0] = -1
        crop_xy = (heat * 4).astype(np.float32)
        np.testing.assert_array_equal(geometry.to_image(crop_xy, center, scale),
                                      reference.to_image(crop_xy, center, scale))


@pytest.mark.parametrize("generation", ["mmpose0", "mmpose1"])
def test_inverse_transform_undoes_the_crop_warp(generation: str) -> None:
    geometry = geometry_for(generation, INPUT_SIZE, HEATMAP_SIZE, 1.25)
    rng = np.random.default_rng(3)
    for box in _boxes(rng, 30):
        (center,), (scale,) = geometry.center_scale(np.array([box]))
        points = rng.uniform([box[0], box[1]], [box[2], box[3]], size=(K, 2)).astype(np.float32)
        crop_xy = cv2.transform(points[None], geometry.warp_matrix(center, scale))[0]
        size = max(box[2] - box[0], box[3] - box[1])
        np.testing.assert_allclose(geometry.to_image(crop_xy, center, scale), points, atol=2e-5 * size + 1e-3)


def test_heatmap_decoding_equals_the_installed_mmpose() -> None:
    reference = host_reference()
    geometry = geometry_for(reference.generation, INPUT_SIZE, HEATMAP_SIZE, 1.25)
    rng = np.random.default_rng(4)
    heatmaps = rng.uniform(0, 1, size=(6, K, HEATMAP_SIZE[1], HEATMAP_SIZE[0])).astype(np.float32)
    peaks = [(0, 0), (1, 0), (0, 1), (47, 63), (46, 62), (2, 2), (47, 10), (10, 63), (1, 30), (30, 1)]
    for n in range(6):
        for k, (x, y) in enumerate(peaks):
            heatmaps[n, k, y, x] = 2.0
    heatmaps[0, 12] = -heatmaps[0, 12]  # no positive maximum: -1
    heatmaps[1, 13] = 0.5  # a plateau: first arg-max, no step
    crop_xy, scores = decode_heatmaps(heatmaps, reference.generation, INPUT_SIZE)
    centers, scales = geometry.center_scale(np.array(_boxes(rng, 0)[:6]))
    if reference.generation == "mmpose0":
        expected_xy, expected_scores = reference.decode_to_image(heatmaps, centers, scales)
        mine = np.stack([geometry.to_image(xy, c, s) for xy, c, s in zip(crop_xy, centers, scales)])
        np.testing.assert_array_equal(mine, expected_xy)
        np.testing.assert_array_equal(scores, expected_scores)
    else:
        for n in range(6):
            expected_xy, expected_scores = reference.decode_crop(heatmaps[n])
            np.testing.assert_array_equal(crop_xy[n], expected_xy)
            np.testing.assert_array_equal(scores[n], expected_scores)
    assert (crop_xy[0, 12] == -4).all()


def test_oks_nms_keeps_what_the_installed_mmpose_keeps() -> None:
    reference = host_reference()
    rng = np.random.default_rng(5)
    sigmas = np.array([0.026] * K, dtype=np.float64 if reference.generation == "mmpose0" else np.float32)
    base = rng.uniform(0, 300, size=(K, 2))
    persons = []
    for index in range(12):
        keypoints = np.concatenate([base + rng.normal(0, 1 + index, size=(K, 2)),
                                    rng.uniform(0, 1, size=(K, 1))], axis=1).astype(np.float32)
        persons.append({"keypoints": keypoints, "score": float(rng.uniform()),
                        "area": np.float32(rng.uniform(1e3, 1e5))})
    kept = oks_nms(persons, 0.9, sigmas)
    assert kept == [int(i) for i in reference.oks_nms(persons, 0.9, sigmas=sigmas)]
    assert 1 < len(kept) < len(persons)


# --- PoseEstimator on tiny exports ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*DECODES, "heatmaps-0.29.0", "heatmaps-1.3.2"])
def test_a_bright_dot_comes_back_at_its_image_position(models: dict, name: str) -> None:
    estimator = PoseEstimator(models[name])
    assert estimator.geometry.name == ("mmpose0" if "0-" in name or "0.29" in name else "mmpose1")
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[200:202, 300:302] = 255  # 2 x 2 so the 4 x 4 pooled heatmap still sees it
    boxes = np.array([[250, 100, 350, 400], [280, 150, 330, 260], [260, 180, 700, 500]], dtype=np.float64)
    keypoints, scores = estimator(image, boxes)
    assert keypoints.shape == (3, K, 2) and scores.shape == (3, K)
    assert keypoints.dtype == scores.dtype == np.float32
    centers, scales = estimator.geometry.center_scale(boxes)
    # One crop pixel in image pixels (the scale has the input's aspect ratio).
    pixel = scales.max(axis=1) * (200 if estimator.geometry.name == "mmpose0" else 1) / INPUT_SIZE[1]
    tolerance = pixel * (4 if name.startswith("heatmaps") else 1.5)  # a heatmap pixel / a crop pixel and a half
    offset = 0 if name.startswith("heatmaps") else 8  # the keypoint with no offset
    error = np.abs(keypoints[:, offset] - [300.5, 200.5]).max(axis=1)
    assert (error <= tolerance).all(), (error, tolerance)
    if not name.startswith("heatmaps"):
        assert scores[0] == pytest.approx(SCORE_FACTORS * scores[0, -1] / SCORE_FACTORS[-1])
        spread = keypoints[:, 1:, 0] - keypoints[:, :-1, 0]  # OFFSETS: one crop pixel apart in x
        np.testing.assert_allclose(spread, np.repeat(pixel[:, None], K - 1, axis=1), rtol=0.35)
        assert OFFSETS[8, 0] == 0


def test_max_batch_size_does_not_change_the_results(models: dict) -> None:
    image = cv2.imread(str(IMAGE))
    boxes = np.array(_boxes(np.random.default_rng(6), 9))
    one = PoseEstimator(models["mmpose1-msra"], max_batch_size=1)(image, boxes)
    many = PoseEstimator(models["mmpose1-msra"], max_batch_size=4)(image, boxes)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])
    assert len(one[0]) == len(boxes)


@pytest.mark.parametrize("empty", [[], np.zeros((0, 4)), np.zeros((0,))])
def test_no_boxes_give_empty_arrays_of_the_right_shape(models: dict, empty: object) -> None:
    keypoints, scores = PoseEstimator(models["mmpose0-default"])(cv2.imread(str(IMAGE)), empty)
    assert keypoints.shape == (0, K, 2) and scores.shape == (0, K)
    assert keypoints.dtype == scores.dtype == np.float32


def test_grayscale_and_bgra_images_are_converted_as_mmposes_color_loader_does(models: dict,
                                                                                tmp_path: Path) -> None:
    bgr = cv2.imread(str(IMAGE))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = np.arange(bgra.shape[1], dtype=np.uint8)[None]  # alpha varies: it must be dropped
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "bgra.png"), bgra)
    # mmcv.imread(path, 'color') is cv2.imdecode(..., IMREAD_COLOR): compare with what as_bgr makes of the arrays.
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), as_bgr(gray))
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), as_bgr(gray[..., None]))
    np.testing.assert_array_equal(read_image(tmp_path / "bgra.png"), as_bgr(bgra))
    np.testing.assert_array_equal(as_bgr(bgra), bgr)
    estimator = PoseEstimator(models["mmpose1-msra"])
    boxes = [[100, 50, 400, 420]]
    for image, same_as in ((gray, as_bgr(gray)), (bgra, bgr)):
        np.testing.assert_array_equal(estimator(image, boxes)[0], estimator(same_as, boxes)[0])


def test_a_box_past_the_image_edge_is_not_clipped(models: dict) -> None:
    estimator = PoseEstimator(models["mmpose1-msra"])
    image = np.full((100, 100, 3), 40, dtype=np.uint8)
    image[90:92, 90:92] = 255
    keypoints, _ = estimator(image, [[50, 50, 150, 150]])  # three quarters outside
    assert np.abs(keypoints[0, 8] - [90.5, 90.5]).max() <= 1.5 * 100 * 1.25 / INPUT_SIZE[0]  # 1.5 crop pixels
    centers, scales = estimator.geometry.center_scale(np.array([[50.0, 50.0, 150.0, 150.0]]))
    np.testing.assert_array_equal(centers, [[100.0, 100.0]])  # the box's own centre: nothing was clipped


# --- named errors -------------------------------------------------------------------------------------------


def test_a_file_that_is_not_an_export_is_named(tmp_path: Path) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(NotAnExportError, match="model.onnx.*not a loadable ONNX model"):
        PoseEstimator(garbage)
    with pytest.raises(NotAnExportError, match="does not exist"):
        PoseEstimator(tmp_path / "missing.onnx")
    with pytest.raises(NotAnExportError, match="no 'resnest_plugin' metadata entry"):
        PoseEstimator(write_tiny_model(tmp_path / "plain.onnx", raw_metadata=""))
    with pytest.raises(NotAnExportError, match="is not JSON"):
        PoseEstimator(write_tiny_model(tmp_path / "text.onnx", raw_metadata="{oops"))
    broken = tiny_metadata()
    del broken["sigmas"], broken["skeleton"]
    with pytest.raises(NotAnExportError, match=r"lacks the fields \['skeleton', 'sigmas'\]"):
        PoseEstimator(write_tiny_model(tmp_path / "fields.onnx", metadata=broken))
    with pytest.raises(NotAnExportError, match="'format' is 'something.else'"):
        PoseEstimator(write_tiny_model(tmp_path / "format.onnx", metadata=tiny_metadata(format="something.else")))
    with pytest.raises(NotAnExportError, match="'decode' is 'argmax'"):
        PoseEstimator(write_tiny_model(tmp_path / "decode.onnx", metadata=tiny_metadata(decode="argmax")))
    with pytest.raises(NotAnExportError, match=r"'skeleton' is \[\[0, 17\]\]"):
        PoseEstimator(write_tiny_model(tmp_path / "skel.onnx", metadata=tiny_metadata(skeleton=[[0, 17]])))
    heatmaps_of_no_known_mmpose = tiny_metadata(None, mmpose_version="2.0.0")
    with pytest.raises(NotAnExportError, match="'mmpose_version' is '2.0.0', expected an MMPose 0.x or 1.x"):
        PoseEstimator(write_tiny_model(tmp_path / "v.onnx", None, metadata=heatmaps_of_no_known_mmpose))


def test_another_format_version_is_named_with_the_one_this_runner_reads(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "v2.onnx", metadata=tiny_metadata(format_version=2))
    with pytest.raises(UnsupportedExportError, match="format_version is 2, this runner reads format_version 1"):
        PoseEstimator(path)


def test_metadata_that_disagrees_with_the_graph_is_named(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "size.onnx", metadata=tiny_metadata(input_size=[288, 384]))
    with pytest.raises(NotAnExportError, match=r"shape \['N', 256, 192, 3\], expected \[N, 384, 288, 3\]"):
        PoseEstimator(path)
    keypoint_names = tiny_metadata(keypoint_names=COCO_KEYPOINTS[:5], sigmas=[0.1] * 5, skeleton=[], flip_pairs=[])
    estimator = PoseEstimator(write_tiny_model(tmp_path / "k.onnx", metadata=keypoint_names))
    with pytest.raises(NotAnExportError, match=r"output 'keypoints' has shape \(1, 17, 2\), expected \(1, 5, 2\)"):
        estimator(cv2.imread(str(IMAGE)), [[0, 0, 10, 10]])


@pytest.mark.parametrize("image, message", [
    (np.zeros((10, 10, 3), np.float32), "dtype is float32, expected uint8"),
    (np.zeros((10, 10, 3), np.uint16), "dtype is uint16, expected uint8"),
    (np.zeros((10, 10, 2), np.uint8), r"shape is \(10, 10, 2\), expected \(H, W, 3\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), r"shape is \(2, 10, 10, 3\)"),
    (np.zeros((0, 10, 3), np.uint8), "expected a non-empty image"),
    ([[0, 1], [2, 3]], "image is a list, expected a numpy uint8 array"),
])
def test_a_bad_image_array_is_named(models: dict, image: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        PoseEstimator(models["mmpose1-msra"])(image, [[0, 0, 5, 5]])


@pytest.mark.parametrize("boxes, message", [
    ([0, 0, 10, 10], r"shape \(4,\), expected \(N, 4\)"),
    ([[0, 0, 10, 10, 0.9]], r"shape \(1, 5\), expected \(N, 4\).*boxes\[:, :4\]"),
    ([[0, 0, 10, 10], [5, 5, 5, 20]], r"box 1 is \[5.0, 5.0, 5.0, 20.0\]: width 0.0"),
    ([[0, 0, 10, 10], [5, 30, 15, 20]], r"box 1 .* height -10.0, expected x2 > x1 and y2 > y1"),
    ([[0, 0, float("nan"), 10]], r"box 0 is \[0.0, 0.0, nan, 10.0\], expected finite"),
    ([["a", 0, 1, 1]], "could not be read as numbers"),
])
def test_bad_boxes_are_named(models: dict, boxes: object, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        PoseEstimator(models["mmpose0-default"])(np.zeros((20, 20, 3), np.uint8), boxes)


def test_an_unreadable_image_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="missing.jpg.*No such file"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"cannot decode image file .*text.jpg.* \(12 bytes\)"):
        read_image(tmp_path / "text.jpg")


def test_evaluate_without_xtcocotools_names_it(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xtcocotools", None)  # import fails as if it were not installed
    monkeypatch.setitem(sys.modules, "xtcocotools.coco", None)
    with pytest.raises(MissingDependencyError, match="needs xtcocotools.*pip install xtcocotools"):
        evaluate_coco(PoseEstimator(models["mmpose1-msra"]), COCO / "test_coco.json", COCO)


# --- command line -------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnest_plugin.deploy", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_cli_infer_writes_keypoints_json_and_a_drawing(models: dict, tmp_path: Path) -> None:
    model, image = tmp_path / "model.onnx", tmp_path / "image.jpg"
    model.write_bytes(models["mmpose1-msra"].read_bytes())
    image.write_bytes(IMAGE.read_bytes())
    (tmp_path / "boxes.json").write_text(json.dumps([[100, 50, 400, 420], {"bbox": [0, 0, 200, 200], "score": 1}]))
    result = subprocess.run([sys.executable, "-m", "resnest_plugin.deploy", "infer", "model.onnx", "image.jpg",
                             "--boxes", "boxes.json", "--json", "keypoints.json", "--out", "drawn.png"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "keypoints.json").read_text())
    expected, expected_scores = PoseEstimator(model)(cv2.imread(str(image)), [[100, 50, 400, 420], [0, 0, 200, 200]])
    assert report["keypoint_names"] == COCO_KEYPOINTS and len(report["persons"]) == 2
    np.testing.assert_array_equal(np.array([p["keypoints"] for p in report["persons"]], np.float32), expected)
    np.testing.assert_array_equal(np.array([p["keypoint_scores"] for p in report["persons"]], np.float32),
                                  expected_scores)
    drawn = cv2.imread(str(tmp_path / "drawn.png"))
    assert drawn.shape == cv2.imread(str(image)).shape and (drawn != cv2.imread(str(image))).any()


def test_cli_infer_refuses_a_coco_detection_file_and_a_bad_image_with_exit_status_2(
        models: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # In-process: `python -m resnest_plugin.deploy` exits with main()'s return value (__main__.py).
    detections = COCO / "test_coco_det_AP_H_56.json"
    assert cli_main(["infer", str(models["mmpose1-msra"]), str(IMAGE), "--boxes", str(detections)]) == 2
    stderr = capsys.readouterr().err
    assert "COCO detection results file" in stderr and "evaluate --boxes" in stderr
    (tmp_path / "boxes.json").write_text("[[0, 0, 10, 10]]")
    assert cli_main(["infer", str(models["mmpose1-msra"]), str(tmp_path / "nope.jpg"), "--boxes",
                     str(tmp_path / "boxes.json")]) == 2
    stderr = capsys.readouterr().err
    assert "error: cannot read image file" in stderr and "nope.jpg" in stderr
    assert cli_main(["infer", str(models["mmpose1-msra"]), str(IMAGE), "--boxes", str(tmp_path / "boxes.json"),
                     "--json", str(tmp_path / "out.json")]) == 0
    assert len(json.loads((tmp_path / "out.json").read_text())["persons"]) == 1


@pytest.mark.parametrize("boxes", [None, "test_coco_det_AP_H_56.json"])
def test_cli_evaluate_prints_the_ten_coco_metrics(models: dict, tmp_path: Path, boxes: object,
                                                  capsys: pytest.CaptureFixture) -> None:
    args = ["evaluate", str(models["mmpose0-default"]), "--ann", str(COCO / "test_coco.json"), "--images", str(COCO),
            "--json", str(tmp_path / "metrics.json"), *(["--boxes", str(COCO / boxes)] if boxes else [])]
    if boxes is None:  # the documented command, as a process
        result = _cli(*args)
        assert result.returncode == 0, result.stderr
        stdout = result.stdout
    else:
        assert cli_main(args) == 0
        stdout = capsys.readouterr().out
    assert "MMPose 0.x rules" in stdout and "AR (L)" in stdout
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert list(written["stats"]) == ["AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75",
                                      "AR (M)", "AR (L)"]
    assert written["results"] and {"center", "scale"} <= set(written["results"][0])
