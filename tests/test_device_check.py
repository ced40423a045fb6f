"""benchmarks/device_check.py without a GPU: the --smoke run writes every field, and no CUDA is an error.

The smoke run (CPU, ResNeSt-50, batch 2 at 64x48, one repetition) exercises
every section that can run on a CPU; what needs CUDA (the with_cp memory
rows, torch.compile) must still be in the JSON, unmeasured, with a reason.
No speed is asserted: only that what was measured is there and positive, and
that the numerics agree.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.py"
FORWARD_MODES = {"fp32", "amp_bf16", "amp_fp16", "channels_last", "channels_last_amp_bf16", "compile"}
TRAIN_MODES = {"fp32", "amp_bf16", "channels_last_amp_bf16"}
IMPLS = ("default", "exact", "timm")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """One ``--smoke --out DIR`` run: its JSON document, markdown text and output."""
    out = tmp_path_factory.mktemp("device_check")
    completed = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=REPO,
                               capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return dict(data=json.loads((out / "device_check.json").read_text()),
                markdown=(out / "device_check.md").read_text(), stdout=completed.stdout)


def _assert_measured(row: Dict[str, Any]) -> None:
    assert row["skipped"] is None and row["error"] is None, row
    for impl in IMPLS:
        entry = row[impl]
        assert entry["img_per_s"] > 0, (row["mode"], impl)
        assert len(entry["rates"]) == 1 and all(rate > 0 for rate in entry["rates"])
    assert row["default_over_exact"] == pytest.approx(row["default"]["img_per_s"] / row["exact"]["img_per_s"])
    assert row["default_over_timm"] == pytest.approx(row["default"]["img_per_s"] / row["timm"]["img_per_s"])


def test_smoke_json_has_the_environment_and_completes(smoke: Dict[str, Any]) -> None:
    data = smoke["data"]
    assert data["status"] == "complete" and data["errors"] == []
    env = data["environment"]
    assert env["device"] == "cpu" and env["smoke"] is True and env["device_name"]
    assert env["torch"] == torch.__version__
    assert env["cuda"] == torch.version.cuda
    assert {"cudnn", "timm", "numpy", "python", "cudnn_allow_tf32", "capability"} <= env.keys()
    assert data["elapsed_s"] > 0
    assert "[" in smoke["stdout"] and "status: complete" in smoke["stdout"]  # progress lines


def _autocast_refuses(mode: str) -> bool:
    """Whether this torch's CPU autocast refuses the mode's dtype (torch 1.13: bfloat16 only)."""
    dtype = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16, "channels_last_amp_bf16": torch.bfloat16}.get(mode)
    if dtype is None:
        return False
    try:
        with torch.autocast("cpu", dtype=dtype):
            return False
    except RuntimeError:
        return True


def test_smoke_measures_every_cpu_row_and_records_why_the_others_are_skipped(smoke: Dict[str, Any]) -> None:
    data = smoke["data"]
    forward = {row["mode"]: row for row in data["forward"]}
    assert set(forward) == FORWARD_MODES and len(data["forward"]) == len(FORWARD_MODES)
    for mode, row in forward.items():
        assert (row["model"], row["size"], row["batch"], row["timm_model"]) == (
            "ResNeSt-50", "64x48", 2, "resnest50d")
        if mode == "compile":
            assert "CPU" in row["skipped"] and all(row[impl]["img_per_s"] is None for impl in IMPLS)
            assert set(row["compile_s"]) == set(IMPLS)
        elif _autocast_refuses(mode):
            assert "autocast on cpu refuses" in row["skipped"], row["skipped"]
            assert all(row[impl]["img_per_s"] is None for impl in IMPLS)
        else:
            _assert_measured(row)
    assert {row["mode"] for row in data["train"]} == TRAIN_MODES
    for row in data["train"]:
        if _autocast_refuses(row["mode"]):
            assert "autocast on cpu refuses" in row["skipped"], row["skipped"]
        else:
            _assert_measured(row)
    assert len(data["memory"]) == 1
    memory = data["memory"][0]
    assert "CUDA" in memory["skipped"]
    for key in ("without_cp", "with_cp", "timm"):
        assert memory[key] == {"memory_bytes": None, "resident_bytes": None}
    assert memory["with_cp_over_without"] is None


def test_smoke_correctness_default_matches_exact_and_every_figure_is_there(smoke: Dict[str, Any]) -> None:
    check = smoke["data"]["correctness"]
    assert check["skipped"] is None and check["error"] is None
    exact = check["default_vs_exact_fp32"]
    assert exact["tolerance"] == 1e-5
    assert exact["passed"] is True and 0 <= exact["rel_diff"] <= 1e-5
    assert exact["feature_scale"] > 0 and exact["max_abs_diff"] == pytest.approx(
        exact["rel_diff"] * exact["feature_scale"])
    for name in ("amp_bf16", "amp_fp16"):
        for impl in IMPLS:
            error = check["amp_vs_fp32_rel_error"][name][impl]
            if _autocast_refuses(name):
                assert error is None, (name, impl, error)
                continue
            # Finite and below 5%: a NaN or an overflow (fp16) shows up here.
            assert math.isfinite(error) and 0 <= error < 0.05, (name, impl, error)
    for impl in IMPLS:
        assert 0 <= check["channels_last_vs_nchw_rel_error"][impl] < 1e-4, impl
    for name in ("grad_default_vs_exact_fp32", "grad_channels_last_vs_nchw_fp32"):
        grads = check[name]
        assert 0 <= grads["input_rel_diff"] < 1e-4 and 0 <= grads["weights_rel_diff"] < 1e-4, (name, grads)
        assert grads["weights_worst_param"] and math.isfinite(grads["weights_worst_param_rel_diff"])


def test_smoke_markdown_table_has_a_row_per_measurement_with_ratios(smoke: Dict[str, Any]) -> None:
    text = smoke["markdown"]
    rows = [line for line in text.splitlines() if line.startswith("| ResNeSt-50 | 64x48 |")]
    data = smoke["data"]
    assert len(rows) == len(data["forward"]) + len(data["train"]) + len(data["memory"])
    assert "default/exact" in text and "default/timm" in text
    fp32 = next(row for row in data["forward"] if row["mode"] == "fp32")
    assert f"| {fp32['default_over_exact']:.3f} | {fp32['default_over_timm']:.3f} |" in text
    assert "(tolerance 1e-05: pass)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_without_cuda_and_without_smoke_it_exits_naming_the_missing_device(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], cwd=REPO,
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 2
    assert "no CUDA device" in completed.stderr and "--smoke" in completed.stderr
    assert not (tmp_path / "device_check.json").exists()
