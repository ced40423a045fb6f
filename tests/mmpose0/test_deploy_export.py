"""ONNX export on MMPose 0.x: every shipped config, the graph against MMPose's own test path.

Oracles, all MMPose 0.29's own code on the same inputs:

* ``TopDown.forward_test(..., return_heatmap=True)`` (backbone, head,
  ``flip_back``, ``shift_heatmap``, averaging, ``keypoints_from_heatmaps``)
  for the file's heatmaps and keypoints, with the box set to the crop itself
  (centre ``(W/2, H/2)``, scale ``(W, H) / 200``), so that MMPose's image
  coordinates are crop pixels;
* ``keypoints_from_heatmaps(post_process='default')`` on crafted heatmaps
  (every arg-max position, boundaries, ties, flat and negative maps) for the
  decode ops alone.

The export's input conversion is checked by feeding MMPose's own
``ToTensor`` + ``NormalizeTensor`` output of the same crops to the oracle.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.core.evaluation.top_down_eval import keypoints_from_heatmaps
from mmpose.datasets.pipelines import NormalizeTensor, ToTensor
from mmpose.models import build_posenet
from torch import nn

from deploy_export_helpers import (COCO_FLIP_PAIRS, check_benchmark_smoke, check_cli_errors, check_cli_int8,
                                   check_runner_equals_stock, check_written_file, crafted_heatmaps,
                                   export_variants, onnx_decode, session, smooth_crops)
from model_helpers import randomise
from resnest_plugin.deploy import contract
from resnest_plugin.deploy.checkpoint import file_sha256
from resnest_plugin.deploy.export import export_onnx, exportable_model, main, read_metadata
from tools_helpers import cfg_options_args, mini_coco_cfg_options, run_stock_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco"
CONFIGS = sorted(CONFIG_DIR.glob("resnest*_coco_*.py"))
R50 = CONFIG_DIR / "resnest50_coco_256x192.py"
#: Measured on 2 shared cores at load ~10 (0.x): build + export of R50 20-25 s, R101 ~45 s,
#: R269 384x288 ~60 s (390 MB file); R200 / R269 run in the slow tier.
SLOW_DEPTHS = ("resnest200", "resnest269")


# --- every shipped config ------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    pytest.param(c, id=c.stem, marks=[pytest.mark.slow, pytest.mark.heavy] if c.stem.startswith(SLOW_DEPTHS) else [])
    for c in CONFIGS])
def test_every_shipped_config_exports_a_valid_file_with_its_metadata(config: Path, tmp_path: Path) -> None:
    cfg = Config.fromfile(str(config))
    start = time.perf_counter()
    model = exportable_model(config, None)
    out = tmp_path / "model.onnx"
    meta = export_onnx(model, out, config=config, checkpoint_sha256="ab" * 32)
    seconds = time.perf_counter() - start
    check_written_file(out, meta, config, tuple(cfg.data_cfg.image_size), cfg.data_cfg.heatmap_size,
                       "mmpose0-default", "0.29")
    print(f"\n{config.stem}: built and exported in {seconds:.1f} s")


# --- the graph against MMPose's TopDown.forward_test ------------------------------------------

@pytest.fixture(scope="module")
def released_format(tmp_path_factory: pytest.TempPathFactory) -> Tuple[nn.Module, Path]:
    """A TopDown model of our R50 256x192 config with non-trivial random weights, saved by mmcv."""
    cfg = Config.fromfile(str(R50))
    cfg.model.pretrained = None
    model = build_posenet(cfg.model)
    randomise(model, seed=5, spread=0.1)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "r50_random.pth"
    save_checkpoint(model, str(path), meta=dict(note="random weights"))
    return model, path


@pytest.fixture(scope="module")
def exports(released_format: Tuple[nn.Module, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Dict[Tuple[str, bool], Path]:
    """The CLI's files: (variant, flip test) -> path."""
    return export_variants(R50, released_format[1], tmp_path_factory.mktemp("exports"), main)


def _mmpose_forward(model: nn.Module, crops: np.ndarray, flip: bool) -> Dict[str, np.ndarray]:
    """MMPose's own test path on ``crops`` (BGR uint8), the box being the crop itself."""
    model.test_cfg["flip_test"] = flip
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    images = []
    for crop in crops:
        # LoadImageFromFile's default channel_order='rgb', then ToTensor + NormalizeTensor.
        results = NormalizeTensor(mean, std)(ToTensor()(dict(img=np.ascontiguousarray(crop[..., ::-1]))))
        images.append(results["img"])
    height, width = crops.shape[1:3]
    metas = [dict(image_file="", center=np.array([width / 2, height / 2]),
                  scale=np.array([width / 200, height / 200]), rotation=0, bbox_score=1.0,
                  flip_pairs=COCO_FLIP_PAIRS, bbox_id=i) for i in range(len(crops))]
    with torch.no_grad():
        result = model(img=torch.stack(images), img_metas=metas, return_loss=False, return_heatmap=True)
    model.test_cfg["flip_test"] = True
    return result


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no-flip"])
def test_file_equals_mmpose_forward_test(released_format: Tuple[nn.Module, Path],
                                         exports: Dict[Tuple[str, bool], Path], flip: bool) -> None:
    model, checkpoint = released_format
    crops = smooth_crops(3, (192, 256), seed=1)
    expected = _mmpose_forward(model, crops, flip)
    keypoints, scores = session(exports[("keypoints", flip)]).run(None, {contract.INPUT_NAME: crops})
    np.testing.assert_allclose(scores, expected["preds"][:, :, 2], rtol=1e-4, atol=1e-4)
    # Crop pixels = MMPose's image pixels here; one heatmap pixel is 4 crop pixels.
    diff = np.abs(keypoints - expected["preds"][:, :, :2])
    assert diff.max() <= 1e-3, f"keypoints differ by up to {diff.max()} px"
    assert np.unique(keypoints.reshape(-1, 2), axis=0).shape[0] > 20  # not degenerate
    meta = read_metadata(exports[("keypoints", flip)])
    assert (meta["flip_test"], meta["shift_heatmap"]) == (flip, flip)
    assert meta["checkpoint_sha256"] == file_sha256(checkpoint)
    if flip:
        (heatmaps,) = session(exports[("heatmaps", True)]).run(None, {contract.INPUT_NAME: crops})
        scale = np.abs(expected["output_heatmap"]).max()
        np.testing.assert_allclose(heatmaps, expected["output_heatmap"], rtol=0, atol=1e-4 * scale)
        assert read_metadata(exports[("heatmaps", True)])["decode"] is None


def test_flip_test_changes_the_heatmaps(exports: Dict[Tuple[str, bool], Path]) -> None:
    crops = smooth_crops(2, (192, 256), seed=4)
    with_flip = session(exports[("keypoints", True)]).run(None, {contract.INPUT_NAME: crops})[1]
    without = session(exports[("keypoints", False)]).run(None, {contract.INPUT_NAME: crops})[1]
    assert np.abs(with_flip - without).max() > 1e-3


# --- the decode ops against keypoints_from_heatmaps ----------------------------------------

def test_onnx_decode_equals_keypoints_from_heatmaps(tmp_path: Path) -> None:
    heatmaps = crafted_heatmaps()
    keypoints, scores = onnx_decode(heatmaps, "mmpose0-default", tmp_path / "decode.onnx")
    # center/scale that make transform_preds the identity: coords * 200 * scale / w + c - 100 * scale.
    count, height, width = heatmaps.shape[1:]
    center, scale = np.array([[width / 2, height / 2]]), np.array([[width / 200, height / 200]])
    expected, maxvals = keypoints_from_heatmaps(heatmaps, center, scale, post_process="default")
    np.testing.assert_allclose(keypoints, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(scores, maxvals[..., 0])


def test_cli_refuses_bad_inputs_with_one_line(released_format: Tuple[nn.Module, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    check_cli_errors(main, R50, released_format[1], tmp_path, capsys)


@pytest.mark.slow  # 60-90 s on 2 shared cores: export, 12 calibration crops with flip test, quantisation
def test_cli_int8_export_runs(released_format: Tuple[nn.Module, Path], tmp_path: Path) -> None:
    check_cli_int8(main, R50, released_format[1], tmp_path)


# --- slow: the runner on the flip-off file against the stock tools/test.py ----------------------

@pytest.mark.slow
@pytest.mark.parametrize("gt_boxes", [True, False], ids=["ground-truth-boxes", "detector-boxes"])
def test_runner_on_the_no_flip_file_equals_the_stock_test_tool(
        released_format: Tuple[nn.Module, Path], exports: Dict[Tuple[str, bool], Path], coco_root: Path,
        tmp_path: Path, gt_boxes: bool) -> None:
    # The flip-on file is compared in test_deploy_stock_match.py; one stock run per case here.
    _, checkpoint = released_format
    options = mini_coco_cfg_options(coco_root, image_size=None)
    options["data.test.data_cfg.use_gt_bbox"] = gt_boxes
    options["model.test_cfg.flip_test"] = False
    stock = run_stock_tool("test.py", [str(R50), str(checkpoint), "--eval", "mAP", "--work-dir", str(tmp_path),
                                       *cfg_options_args(options)])
    assert stock.returncode == 0, stock.stderr[-3000:]
    expected = json.loads((tmp_path / "result_keypoints.json").read_text())
    check_runner_equals_stock(exports[("keypoints", False)], coco_root, gt_boxes, expected, stock.stdout)


@pytest.mark.slow
def test_deploy_benchmark_smoke_writes_both_tables(released_format: Tuple[nn.Module, Path],
                                                   tmp_path: Path) -> None:
    check_benchmark_smoke("mmpose0", tmp_path, R50, released_format[1])
