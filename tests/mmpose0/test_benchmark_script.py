"""The benchmark script's plumbing (no timing is asserted: numbers live in the README).

``benchmarks/benchmark_backbone.py`` runs each section in a fresh process and
merges their numbers; these tests check the option handling, and (slow tier)
that a tiny end-to-end run prints the tables and writes the raw numbers.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import benchmark_backbone  # noqa: E402


def test_child_argv_drops_unit_options_with_their_values() -> None:
    argv = ["--quick", "--sections", "train", "memory", "--json", "out.json", "--train-depths", "50", "101",
            "--train-reps=3", "--impls", "ours", "mmpose"]
    assert benchmark_backbone._child_argv(argv) == ["--quick", "--train-reps=3", "--impls", "ours", "mmpose"]
    assert benchmark_backbone._child_argv(["--sections=forward", "--reps", "2"]) == ["--reps", "2"]


def test_units_split_training_by_depth_and_keep_section_order() -> None:
    args = benchmark_backbone.parse_args(["--sections", "forward", "train", "tools"])
    assert args.train_depths == [50, 101]
    assert benchmark_backbone._units(args) == [
        ["--sections", "forward"],
        ["--sections", "train", "--train-depths", "50"],
        ["--sections", "train", "--train-depths", "101"],
        ["--sections", "tools"],
    ]


def test_merge_keeps_entries_of_every_unit() -> None:
    summary: dict = {}
    benchmark_backbone._merge(summary, {"train": {"ours/50/256x192": {"img_s": 1.0}}})
    benchmark_backbone._merge(summary, {"train": {"ours/101/256x192": {"img_s": 2.0}}, "tools": 1.5})
    assert summary == {"train": {"ours/50/256x192": {"img_s": 1.0}, "ours/101/256x192": {"img_s": 2.0}},
                       "tools": 1.5}


def test_failing_unit_raises_with_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 3, stdout="boom")

    monkeypatch.setattr(benchmark_backbone.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match=r"exit 3.*--sections train"):
        benchmark_backbone.run_isolated(["--quick"], ["--sections", "train"])


@pytest.mark.slow
def test_tiny_training_run_prints_tables_and_writes_numbers(tmp_path: Path) -> None:
    out = tmp_path / "numbers.json"
    command = [sys.executable, str(REPO / "benchmarks" / "benchmark_backbone.py"), "--quick", "--sections", "train",
               "--train-depths", "50", "--train-reps", "1", "--train-batch", "2", "--sizes", "256x192",
               "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "### Training step, ResNeSt-50" in completed.stdout
    assert "| training step R50 256x192: ours / MMPose |" in completed.stdout
    numbers = json.loads(out.read_text())
    assert set(numbers["train"]) == {"ours/50/256x192", "mmpose/50/256x192"}
    assert all(entry["img_s"] > 0 for entry in numbers["train"].values())
