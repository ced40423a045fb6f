"""Host-free pieces of the export tests of both stacks (tests/mmpose{0,1}/test_deploy_export.py).

The host files hold what differs (MMPose's own model, test path and decode
function as the oracle); the checks of a written file, the crafted heatmaps,
the CLI's INT8 path and the benchmark smoke run are the same on both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from resnest_plugin.deploy import contract
from resnest_plugin.deploy.export import read_metadata
from resnest_plugin.deploy.graph import decode_heatmaps
from resnest_plugin.torch_compat import onnx_export_options

__all__ = ["COCO_FLIP_PAIRS", "check_benchmark_smoke", "check_cli_errors", "check_cli_int8",
           "check_runner_equals_stock",
           "check_written_file",
           "crafted_heatmaps", "export_variants", "onnx_decode", "session", "smooth_crops"]

REPO_ROOT = Path(__file__).resolve().parents[1]
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def session(path: Path) -> onnxruntime.InferenceSession:
    """A one-thread CPU session (the tests' inputs are small)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def smooth_crops(count: int, size: Tuple[int, int], seed: int) -> np.ndarray:
    """uint8 BGR ``(count, H, W, 3)`` crops: smooth random blobs (not noise), so heatmaps have structure."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, height // 16, width // 16, 3)).astype(np.float32)
    fine = coarse.repeat(16, axis=1).repeat(16, axis=2)
    return np.clip(fine + rng.normal(0, 20, fine.shape), 0, 255).astype(np.uint8)


def check_written_file(out: Path, meta: Dict, config: Path, size: Tuple[int, int],
                       heatmap_size: Sequence[int], decode: str, mmpose_major: str) -> None:
    """Assert a fresh export of a shipped COCO config: valid, standard ops, folded, its metadata."""
    width, height = size
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert {node.domain for node in proto.graph.node} <= {"", "ai.onnx"}, "non-standard operators"
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"BatchNormalization", "ConvTranspose"}, f"unfolded norm or deconv left: {ops}"
    assert read_metadata(out) == meta and set(meta) == set(contract.REQUIRED_FIELDS)
    assert meta["input_size"] == [width, height]
    assert meta["heatmap_size"] == list(heatmap_size) == [width // 4, height // 4]
    assert meta["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert meta["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert (meta["flip_test"], meta["shift_heatmap"], meta["decode"]) == (True, True, decode)
    assert meta["flip_pairs"] == COCO_FLIP_PAIRS
    assert meta["keypoint_names"][:3] == ["nose", "left_eye", "right_eye"] and len(meta["sigmas"]) == 17
    assert [15, 13] in meta["skeleton"] and meta["box_padding"] == 1.25
    assert meta["config"] == config.name and meta["mmpose_version"].startswith(mmpose_major)
    graph_input = proto.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == (contract.INPUT_NAME, ["batch", height, width, 3])
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    keypoints, scores = session(out).run(None, {contract.INPUT_NAME: smooth_crops(1, (width, height), 0)})
    assert keypoints.shape == (1, 17, 2) and scores.shape == (1, 17)


def export_variants(config: Path, checkpoint: Path, folder: Path,
                    main: Callable[[Sequence[str]], int]) -> Dict[Tuple[str, bool], Path]:
    """The CLI's files of ``config`` + ``checkpoint``: (variant, flip test) -> path.

    The flip-test keypoints file is written by the documented command, as a
    process (docs/deploy.md, "Export"); the others through ``main``.
    """
    out = folder / "keypoints_True.onnx"
    run = subprocess.run([sys.executable, "-m", "resnest_plugin.deploy", "export", str(config), str(checkpoint),
                          str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and f"wrote {out}" in run.stdout, run.stderr[-3000:]
    files = {("keypoints", True): out}
    for variant, flip in (("keypoints", False), ("heatmaps", True)):
        out = folder / f"{variant}_{flip}.onnx"
        assert main([str(config), str(checkpoint), str(out), "--variant", variant]
                    + ([] if flip else ["--no-flip"])) == 0
        files[(variant, flip)] = out
    return files


def crafted_heatmaps(height: int = 8, width: int = 6) -> np.ndarray:
    """(1, M, h, w): random maps; a peak at every position with a smaller neighbour to the right,
    below and to the left; two equal maxima; flat 0; negative; flat 1."""
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


class _Decode(nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return decode_heatmaps(heatmaps, self.rule)


def onnx_decode(heatmaps: np.ndarray, rule: str, path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """The export's decode ops alone, exported to ONNX and run on ``heatmaps`` (heatmap pixels)."""
    torch.onnx.export(_Decode(rule), (torch.from_numpy(heatmaps),), str(path), **onnx_export_options(), opset_version=17,
                      input_names=["heatmaps"], output_names=["keypoints", "scores"],
                      dynamic_axes={"heatmaps": {0: "n", 1: "k"}})
    keypoints, scores = session(path).run(None, {"heatmaps": heatmaps})
    # Properties of the crafted maps that any correct decode shows.
    assert (keypoints == -1).all(axis=-1).sum() == 2  # the flat-0 and the negative maps
    assert (np.abs(keypoints - np.round(keypoints)) == 0.25).any()  # some were shifted
    assert np.array_equal(keypoints[0, -4], [2, 3])  # first of two equal maxima (x 2, y 3), unshifted
    return keypoints, scores


def check_cli_errors(main: Callable[[Sequence[str]], int], config: Path, checkpoint: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture) -> None:
    """``export``'s refusals: exit 2 and one line naming the bad input."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(config), str(checkpoint), str(tmp_path / "a.onnx"), "--int8", "--calib-images",
                 str(empty)]) == 2
    assert f"--calib-images {empty}: no image files" in capsys.readouterr().err
    assert main([str(config), str(tmp_path / "missing.pth"), str(tmp_path / "b.onnx")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, wrong)
    assert main([str(config), str(wrong), str(tmp_path / "c.onnx")]) == 2
    assert "does not fit the config's model" in capsys.readouterr().err


def check_cli_int8(main: Callable[[Sequence[str]], int], config: Path, checkpoint: Path, tmp_path: Path) -> None:
    """``export --int8`` (bundled calibration people, the config's flip test): a file that runs."""
    out = tmp_path / "int8.onnx"
    assert main([str(config), str(checkpoint), str(out), "--int8"]) == 0
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["quantization"]["calibration_crops"] == 12
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops or "QLinearConv" in ops
    keypoints, scores = session(out).run(None, {contract.INPUT_NAME: smooth_crops(2, (192, 256), 3)})
    assert keypoints.shape == (2, 17, 2) and np.isfinite(scores).all()


def check_benchmark_smoke(stack: str, tmp_path: Path, config: Path, checkpoint: Path) -> None:
    """``benchmarks/deploy_benchmark.py --smoke`` writes both tables with every path measured, and
    ``--accuracy-only`` adds the INT8-vs-fp32 section (a 64x64 input here, to stay short)."""
    script = str(REPO_ROOT / "benchmarks" / "deploy_benchmark.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in ([], ["--accuracy-only", "--accuracy-config", str(config), "--accuracy-checkpoint",
                       str(checkpoint), "--accuracy-size", "64x64"]):
        run = subprocess.run([sys.executable, script, "--smoke", "--out-dir", str(tmp_path), *extra],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / f"deploy_{stack}.json").read_text())
    rates = results["workloads"]["50@64x64"]
    assert set(rates) == {"batch1", "batch2", "runner_batch1"}
    assert all(rates["batch2"][name]["median"] > 0 for name in ("mmpose", "ours", "ort_fp32", "ort_int8"))
    accuracy = results["accuracy"]
    assert accuracy["input_size"] == [64, 64] and accuracy["gt"]["persons"] >= 10
    assert 0 < accuracy["det"]["mean_oks"] <= 1 and len(accuracy["det"]["pixel_error_mean"]) == 17
    table = (tmp_path / f"deploy_{stack}.md").read_text()
    assert "| ResNeSt-50 | 64x64 | 2 |" in table and "runner INT8" in table and "| det |" in table


def check_runner_equals_stock(export: Path, coco_root: Path, gt_boxes: bool, expected: Sequence[Dict],
                              stock_output: str) -> None:
    """The runner's ``evaluate`` on ``export`` against the stock ``tools/test.py``'s results list:
    the same kept persons, keypoints within 0.01 px (but float near-ties), the same COCO metrics."""
    from resnest_plugin.coco_metrics import parse_test_output
    from resnest_plugin.deploy import PoseEstimator
    from resnest_plugin.deploy.evaluate import evaluate_coco

    estimator = PoseEstimator(export, intra_op_num_threads=1)
    mine = evaluate_coco(estimator, coco_root / "test_coco.json", coco_root,
                         None if gt_boxes else coco_root / "test_coco_det_AP_H_56.json")
    assert len(mine.results) == len(expected) > (10 if gt_boxes else 50)
    assert [r["image_id"] for r in mine.results] == [r["image_id"] for r in expected]
    got = np.array([r["keypoints"] for r in mine.results]).reshape(len(expected), -1, 3)
    want = np.array([r["keypoints"] for r in expected]).reshape(len(expected), -1, 3)
    # Within 0.01 px, except where the quarter-pixel step compares two neighbours equal to
    # float rounding (onnxruntime and PyTorch sum in other orders): measured 1 keypoint of 2006
    # with random weights, detector boxes, no flip test, one step (0.67 px) off.
    error = np.abs(got[..., :2] - want[..., :2]).max(axis=-1)
    off = error > 0.01
    assert off.mean() <= 1e-3 and error.max() <= 1.0, f"{off.sum()} keypoints off, up to {error.max()} px"
    metrics = parse_test_output(stock_output)
    assert {k: round(v, 4) for k, v in mine.stats.items()} == {k: round(metrics[k], 4) for k in mine.stats}
