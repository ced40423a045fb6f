"""ONNX export on MMPose 1.x: every shipped config, the graph against MMPose's own test path.

Oracles, all MMPose 1.3's own code on the same inputs:

* ``TopdownPoseEstimator.test_step`` with ``output_heatmaps`` (the
  ``PoseDataPreprocessor``, backbone, head, ``flip_heatmaps`` with
  ``shift_heatmap``, averaging, ``MSRAHeatmap.decode``) for the file's
  heatmaps and keypoints, with the box set to the crop itself (centre
  ``(W/2, H/2)``, scale ``(W, H)``), so that MMPose's image coordinates are
  crop pixels;
* ``MSRAHeatmap(unbiased=False).decode`` on crafted heatmaps (every arg-max
  position, boundaries, ties, flat and negative maps) for the decode ops alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData
from mmpose.apis import init_model
from mmpose.codecs import MSRAHeatmap
from mmpose.structures import PoseDataSample
from torch import nn

from resnest_plugin.deploy import contract
from resnest_plugin.deploy.checkpoint import file_sha256
from resnest_plugin.deploy.export import exportable_model, export_onnx, main, read_metadata
from resnest_plugin.deploy.graph import decode_heatmaps

from model_helpers import randomise

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
CONFIGS = sorted(CONFIG_DIR.glob("td-hm_resnest*.py"))
R50 = CONFIG_DIR / "td-hm_resnest50_8xb64-210e_coco-256x192.py"
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
#: Measured on 2 shared cores: building and tracing R200 / R269 takes 40-90 s each, the
#: R50/R101 exports 10-25 s; the deep ones run in the slow tier.
SLOW_DEPTHS = ("td-hm_resnest200", "td-hm_resnest269")


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _crops(count: int, size: Tuple[int, int], seed: int) -> np.ndarray:
    """uint8 BGR crops: smooth random blobs (not noise), so the heatmaps have structure."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, height // 16, width // 16, 3)).astype(np.float32)
    fine = coarse.repeat(16, axis=1).repeat(16, axis=2)
    return np.clip(fine + rng.normal(0, 20, fine.shape), 0, 255).astype(np.uint8)


# --- every shipped config ------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if c.stem.startswith(SLOW_DEPTHS) else [])
    for c in CONFIGS])
def test_every_shipped_config_exports_a_valid_file_with_its_metadata(config: Path, tmp_path: Path) -> None:
    cfg = Config.fromfile(str(config))
    model = exportable_model(config, None)
    start = time.perf_counter()
    out = tmp_path / "model.onnx"
    meta = export_onnx(model, out, config=config, checkpoint_sha256="ab" * 32)
    seconds = time.perf_counter() - start
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert {node.domain for node in proto.graph.node} <= {"", "ai.onnx"}, "non-standard operators"
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}, "a norm was not folded"
    assert read_metadata(out) == meta
    assert set(meta) == set(contract.REQUIRED_FIELDS)
    width, height = cfg.codec.input_size
    assert meta["input_size"] == [width, height]
    assert meta["heatmap_size"] == list(cfg.codec.heatmap_size) == [width // 4, height // 4]
    assert meta["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert meta["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert (meta["flip_test"], meta["shift_heatmap"], meta["decode"]) == (True, True, "mmpose1-msra")
    assert meta["flip_pairs"] == COCO_FLIP_PAIRS
    assert meta["keypoint_names"][:3] == ["nose", "left_eye", "right_eye"] and len(meta["sigmas"]) == 17
    assert [15, 13] in meta["skeleton"] and meta["box_padding"] == 1.25
    assert meta["config"] == config.name and meta["mmpose_version"].startswith("1.3")
    graph_input = proto.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == (contract.INPUT_NAME, ["batch", height, width, 3])
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    keypoints, scores = _session(out).run(None, {contract.INPUT_NAME: _crops(1, (width, height), 0)})
    assert keypoints.shape == (1, 17, 2) and scores.shape == (1, 17)
    print(f"\n{config.stem}: built and exported in {seconds:.1f} s")


# --- the graph against MMPose's TopdownPoseEstimator.test_step --------------------------------

@pytest.fixture(scope="module")
def released_format(tmp_path_factory: pytest.TempPathFactory) -> Tuple[nn.Module, Path]:
    """A TopdownPoseEstimator of our R50 256x192 config with non-trivial random weights, saved
    as MMEngine's checkpoint hook writes it (``state_dict`` with ``head.*`` keys, ``meta``)."""
    cfg = Config.fromfile(str(R50))
    cfg.model.backbone.init_cfg = None
    model = init_model(cfg, checkpoint=None, device="cpu")
    randomise(model, seed=5, spread=0.1)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "r50_random.pth"
    torch.save({"meta": {"note": "random weights"}, "state_dict": model.state_dict()}, path)
    return model, path


@pytest.fixture(scope="module")
def exports(released_format: Tuple[nn.Module, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Dict[Tuple[str, bool], Path]:
    """The CLI's files: (variant, flip test) -> path."""
    _, checkpoint = released_format
    folder = tmp_path_factory.mktemp("exports")
    files = {}
    # The documented command, as a process (docs/deploy.md, "Export").
    out = folder / "keypoints_True.onnx"
    run = subprocess.run([sys.executable, "-m", "resnest_plugin.deploy", "export", str(R50), str(checkpoint),
                          str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and f"wrote {out}" in run.stdout, run.stderr[-3000:]
    files[("keypoints", True)] = out
    for variant, flip in (("keypoints", False), ("heatmaps", True)):
        out = folder / f"{variant}_{flip}.onnx"
        args = [str(R50), str(checkpoint), str(out), "--variant", variant] + ([] if flip else ["--no-flip"])
        assert main(args) == 0
        files[(variant, flip)] = out
    return files


def _mmpose_forward(model: nn.Module, crops: np.ndarray, flip: bool) -> Dict[str, np.ndarray]:
    """MMPose's own test path on ``crops`` (BGR uint8), the box being the crop itself."""
    model.test_cfg["flip_test"] = flip
    model.test_cfg["output_heatmaps"] = True
    height, width = crops.shape[1:3]
    samples = []
    for _ in crops:
        sample = PoseDataSample(metainfo=dict(
            input_size=(width, height), input_center=np.array([width / 2, height / 2]),
            input_scale=np.array([width, height]), flip_indices=model.dataset_meta["flip_indices"]))
        sample.gt_instances = InstanceData(bboxes=np.array([[0, 0, width, height]], dtype=np.float32),
                                           bbox_scores=np.ones(1, dtype=np.float32))
        samples.append(sample)
    # PackPoseInputs gives the loader CHW uint8 BGR tensors; the preprocessor does the rest.
    inputs = [torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))) for crop in crops]
    with torch.no_grad():
        results = model.test_step(dict(inputs=inputs, data_samples=samples))
    model.test_cfg["flip_test"] = True
    preds = np.stack([r.pred_instances.keypoints[0] for r in results])
    scores = np.stack([r.pred_instances.keypoint_scores[0] for r in results])
    heatmaps = np.stack([r.pred_fields.heatmaps.numpy() for r in results])
    return dict(preds=np.concatenate([preds, scores[..., None]], axis=-1), output_heatmap=heatmaps)


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no-flip"])
def test_file_equals_mmpose_forward_test(released_format: Tuple[nn.Module, Path],
                                         exports: Dict[Tuple[str, bool], Path], flip: bool) -> None:
    model, checkpoint = released_format
    crops = _crops(3, (192, 256), seed=1)
    expected = _mmpose_forward(model, crops, flip)
    keypoints, scores = _session(exports[("keypoints", flip)]).run(None, {contract.INPUT_NAME: crops})
    np.testing.assert_allclose(scores, expected["preds"][:, :, 2], rtol=1e-4, atol=1e-4)
    # Crop pixels = MMPose's image pixels here; one heatmap pixel is 4 crop pixels.
    diff = np.abs(keypoints - expected["preds"][:, :, :2])
    assert diff.max() <= 1e-3, f"keypoints differ by up to {diff.max()} px"
    assert np.unique(keypoints.reshape(-1, 2), axis=0).shape[0] > 20  # not degenerate
    meta = read_metadata(exports[("keypoints", flip)])
    assert (meta["flip_test"], meta["shift_heatmap"]) == (flip, flip)
    assert meta["checkpoint_sha256"] == file_sha256(checkpoint)
    if flip:
        (heatmaps,) = _session(exports[("heatmaps", True)]).run(None, {contract.INPUT_NAME: crops})
        scale = np.abs(expected["output_heatmap"]).max()
        np.testing.assert_allclose(heatmaps, expected["output_heatmap"], rtol=0, atol=1e-4 * scale)
        assert read_metadata(exports[("heatmaps", True)])["decode"] is None


def test_flip_test_changes_the_heatmaps(exports: Dict[Tuple[str, bool], Path]) -> None:
    crops = _crops(2, (192, 256), seed=4)
    with_flip = _session(exports[("keypoints", True)]).run(None, {contract.INPUT_NAME: crops})[1]
    without = _session(exports[("keypoints", False)]).run(None, {contract.INPUT_NAME: crops})[1]
    assert np.abs(with_flip - without).max() > 1e-3


# --- the decode ops against MSRAHeatmap.decode -----------------------------------------------

class _Decode(nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return decode_heatmaps(heatmaps, self.rule)


def crafted_heatmaps(height: int = 8, width: int = 6) -> np.ndarray:
    """(1, M, h, w): random maps, a peak at every position with a smaller right/lower
    neighbour, the same with equal neighbours, two equal maxima, flat 0, negative, flat 1."""
    rng = np.random.default_rng(0)
    maps = [rng.standard_normal((40, height, width))]
    for neighbour in (1, width, -1):
        peaks = np.full((height * width, height * width), -0.5)
        for position in range(height * width):
            peaks[position, position] = 1.0
            peaks[position, (position + neighbour) % (height * width)] = 0.7
        maps.append(peaks.reshape(-1, height, width))
    ties = np.zeros((1, height, width))
    ties[0, 3, 2] = ties[0, 5, 4] = 2.0
    maps += [ties, np.zeros((1, height, width)), -np.ones((1, height, width)), np.ones((1, height, width))]
    return np.concatenate(maps).astype(np.float32)[None]


def test_onnx_decode_equals_msra_heatmap_decode(tmp_path: Path) -> None:
    heatmaps = crafted_heatmaps()
    path = tmp_path / "decode.onnx"
    torch.onnx.export(_Decode("mmpose1-msra"), (torch.from_numpy(heatmaps),), str(path), dynamo=False,
                      opset_version=17, input_names=["heatmaps"], output_names=["keypoints", "scores"],
                      dynamic_axes={"heatmaps": {0: "n", 1: "k"}})
    keypoints, scores = _session(path).run(None, {"heatmaps": heatmaps})
    # input_size == heatmap_size: scale_factor 1, keypoints in heatmap pixels.
    count, height, width = heatmaps.shape[1:]
    codec = MSRAHeatmap(input_size=(width, height), heatmap_size=(width, height), sigma=2)
    expected, maxvals = codec.decode(heatmaps[0])
    np.testing.assert_allclose(keypoints, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(scores, maxvals)
    assert (keypoints == -1).all(axis=-1).sum() == 2  # the flat-0 and the negative maps
    assert (np.abs(keypoints - np.round(keypoints)) == 0.25).any()  # some were shifted
    assert np.array_equal(keypoints[0, -4], [2, 3])  # first of two equal maxima (x 2, y 3), unshifted


def test_cli_int8_export_and_its_errors(released_format: Tuple[nn.Module, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    _, checkpoint = released_format
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(R50), str(checkpoint), str(tmp_path / "a.onnx"), "--int8", "--calib-images",
                 str(empty)]) == 2
    assert f"--calib-images {empty}: no image files" in capsys.readouterr().err
    assert main([str(R50), str(tmp_path / "missing.pth"), str(tmp_path / "b.onnx")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, wrong)
    assert main([str(R50), str(wrong), str(tmp_path / "c.onnx")]) == 2
    assert "does not fit the config's model" in capsys.readouterr().err

    out = tmp_path / "int8.onnx"
    assert main([str(R50), str(checkpoint), str(out), "--int8"]) == 0
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["quantization"]["calibration_crops"] == 12
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops or "QLinearConv" in ops
    keypoints, scores = _session(out).run(None, {contract.INPUT_NAME: _crops(2, (192, 256), 3)})
    assert keypoints.shape == (2, 17, 2) and np.isfinite(scores).all()
    print(json.dumps(meta["quantization"]))


# --- slow: the runner on the flip-off file against the stock tools/test.py ----------------------

@pytest.mark.slow
@pytest.mark.parametrize("gt_boxes", [True, False], ids=["ground-truth-boxes", "detector-boxes"])
def test_runner_on_the_no_flip_file_equals_the_stock_test_tool(
        released_format: Tuple[nn.Module, Path], exports: Dict[Tuple[str, bool], Path], coco_root: Path,
        tmp_path: Path, gt_boxes: bool) -> None:
    # The flip-on file is compared in test_deploy_stock_match.py; one stock run per case here.
    from resnest_plugin.coco_metrics import parse_test_output
    from resnest_plugin.deploy import PoseEstimator
    from resnest_plugin.deploy.evaluate import evaluate_coco
    from tools_helpers import cfg_options_args, mini_coco_cfg_options, run_stock_tool

    _, checkpoint = released_format
    options = mini_coco_cfg_options(coco_root, input_size=None, max_epochs=None)
    options = {k: v for k, v in options.items() if k.startswith(("test_", "model."))}
    options["test_evaluator.outfile_prefix"] = str(tmp_path / "results")
    options["model.test_cfg.flip_test"] = False
    if gt_boxes:
        options["test_dataloader.dataset.bbox_file"] = None
    stock = run_stock_tool("test.py", [str(R50), str(checkpoint), "--work-dir", str(tmp_path),
                                       *cfg_options_args(options)])
    assert stock.returncode == 0, stock.stderr[-3000:]
    expected = json.loads((tmp_path / "results.keypoints.json").read_text())
    estimator = PoseEstimator(exports[("keypoints", False)], intra_op_num_threads=1)
    mine = evaluate_coco(estimator, coco_root / "test_coco.json", coco_root,
                         None if gt_boxes else coco_root / "test_coco_det_AP_H_56.json")
    assert len(mine.results) == len(expected) > (10 if gt_boxes else 50)
    got = np.array([r["keypoints"] for r in mine.results]).reshape(len(expected), -1, 3)
    want = np.array([r["keypoints"] for r in expected]).reshape(len(expected), -1, 3)
    assert np.abs(got[..., :2] - want[..., :2]).max() <= 0.01
    metrics = parse_test_output(stock.stdout + stock.stderr)
    assert {k: round(v, 4) for k, v in mine.stats.items()} == {k: round(metrics[k], 4) for k in mine.stats}


@pytest.mark.slow
def test_deploy_benchmark_smoke_writes_both_tables(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "deploy_benchmark.py"), "--smoke",
                          "--out-dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "deploy_mmpose1.json").read_text())
    rates = results["workloads"]["50@64x64"]
    assert set(rates) == {"batch1", "batch2", "runner_batch1"}
    assert all(rates["batch2"][name]["median"] > 0 for name in ("mmpose", "ours", "ort_fp32", "ort_int8"))
    table = (tmp_path / "deploy_mmpose1.md").read_text()
    assert "| ResNeSt-50 | 64x64 | 2 |" in table and "runner INT8" in table
