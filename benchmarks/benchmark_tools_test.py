"""End-to-end images/s of MMPose's stock ``tools/test.py``: our config vs MMPose's.

Both runs evaluate the bundled mini COCO (``tests/data/coco``: 4 images, 118
detector boxes, flip test, as in the released configs) with *the same random
checkpoint* (the state dicts of the two backbones are key-for-key identical),
so they compute the same keypoints; the script checks that they do. Runs
alternate (ours, MMPose, MMPose, ours, ...) and the median and spread are
reported.

Timed: MMPose's inference loop (``single_gpu_test``: data loading, forward
with flip, post-processing), see ``_timed_tools_test.py``; the whole script
(start-up, evaluation) is reported beside it.

Usage::

    .venv/bin/python benchmarks/benchmark_tools_test.py [--reps 2] [--fuse-conv-bn]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_summary  # noqa: E402

__all__ = ["main", "run"]

DATA = REPO / "tests" / "data" / "coco"


def _mmpose_root() -> Path:
    import mmpose

    return Path(mmpose.__file__).resolve().parent / ".mim"


def config_paths(depth: int, size: str) -> Dict[str, Path]:
    """Our config and MMPose's own for a depth and input size."""
    name = f"resnest{depth}_coco_{size}.py"
    return {
        "ours": REPO / "configs" / "top_down" / "resnest" / "coco" / name,
        "mmpose": (_mmpose_root() / "configs" / "body" / "2d_kpt_sview_rgb_img" / "topdown_heatmap"
                   / "coco" / name),
    }


def save_random_checkpoint(config: Path, path: Path) -> None:
    """Build the TopDown model of MMPose's config with random weights and save it."""
    from mmcv import Config
    from mmpose.models import build_posenet

    cfg = Config.fromfile(str(config))
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = build_posenet(cfg.model)
    model.init_weights()
    # Plain tensors and strings only: loads under torch.load(weights_only=True).
    torch.save({"state_dict": model.state_dict(), "meta": {"note": "random weights for benchmarking"}},
               str(path))


def _run_once(config: Path, checkpoint: Path, work_dir: Path, fuse: bool, exact: bool = False) -> dict:
    options = [
        "model.pretrained=None",
        f"data.test.ann_file={DATA / 'test_coco.json'}",
        f"data.test.img_prefix={DATA}/",
        f"data.test.data_cfg.bbox_file={DATA / 'test_coco_det_AP_H_56.json'}",
    ]
    command = [sys.executable, str(Path(__file__).resolve().parent / "_timed_tools_test.py"),
               str(_mmpose_root() / "tools" / "test.py"), str(config), str(checkpoint),
               "--work-dir", str(work_dir), "--cfg-options", *options]
    if fuse:
        command.append("--fuse-conv-bn")
    env = dict(os.environ, RESNEST_BENCH_EXACT="1" if exact else "0")
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"tools/test.py failed ({completed.returncode}) for {config}:\n"
                           f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    line = next(l for l in completed.stdout.splitlines()[::-1] if l.startswith("TIMING "))
    timing = json.loads(line[len("TIMING "):])
    ap_line = next((l for l in completed.stdout.splitlines() if l.startswith("AP:")), "AP: ?")
    timing["ap"] = ap_line.split(":", 1)[1].strip()
    return timing


def _max_keypoint_difference(a: Path, b: Path) -> float:
    """Largest |difference| between matching results of two result_keypoints.json files.

    Each result of ``b`` is matched to the closest result of ``a`` on the same
    image (the files list the same people, possibly in another order).
    """
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    if len(first) != len(second):
        return float("inf")
    worst = 0.0
    for result in second:
        candidates = [r["keypoints"] for r in first if r["image_id"] == result["image_id"]]
        if not candidates:
            return float("inf")
        worst = max(worst, min(max(abs(x - y) for x, y in zip(result["keypoints"], c)) for c in candidates))
    return worst


VARIANTS = {
    "ours": "our config (resnest_plugin.ResNeSt)",
    "mmpose": "MMPose's config (built-in ResNeSt)",
    "ours_exact": "our config, exact mode (fast paths off)",
}


def run(depth: int = 50, size: str = "256x192", reps: int = 2, fuse: bool = False,
        exact: bool = False) -> List[str]:
    """Benchmark ``tools/test.py`` with our config vs MMPose's.

    Args:
        depth: ResNeSt depth (50 or 101).
        size: Input size of the config, ``256x192`` or ``384x288``.
        reps: Runs per configuration (alternating order).
        fuse: Pass ``--fuse-conv-bn`` to all runs.
        exact: Also run our config in exact mode (CPU fast paths off).

    Returns:
        Markdown table lines.
    """
    configs = config_paths(depth, size)
    for path in configs.values():
        if not path.is_file():
            raise FileNotFoundError(f"config {path} not found")
    names = ["ours", "mmpose"] + (["ours_exact"] if exact else [])
    loops: Dict[str, List[float]] = {name: [] for name in names}
    scripts: Dict[str, List[float]] = {name: [] for name in names}
    aps: Dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_tools_test_") as tmp:
        tmp_path = Path(tmp)
        checkpoint = tmp_path / "random.pth"
        save_random_checkpoint(configs["mmpose"], checkpoint)
        for rep in range(reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                work_dir = tmp_path / f"{name}_{rep}"
                config = configs["mmpose" if name == "mmpose" else "ours"]
                timing = _run_once(config, checkpoint, work_dir, fuse, exact=name == "ours_exact")
                loops[name].append(timing["boxes"] / timing["loop_s"])
                scripts[name].append(timing["script_s"])
                aps[name] = timing["ap"]
        differences = {name: _max_keypoint_difference(tmp_path / f"{name}_0" / "result_keypoints.json",
                                                      tmp_path / "mmpose_0" / "result_keypoints.json")
                       for name in names if name != "mmpose"}
    base = statistics.median(loops["mmpose"])
    flag = " --fuse-conv-bn" if fuse else ""
    lines = [
        f"| tools/test.py{flag}, ResNeSt-{depth} {size}, 118 boxes, flip test | img/s (median) | spread "
        f"| script wall s (median) | vs MMPose |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rates = loops[name]
        lines.append(f"| {VARIANTS[name]} | {statistics.median(rates):.2f} | {min(rates):.2f}..{max(rates):.2f} "
                     f"| {statistics.median(scripts[name]):.1f} | {statistics.median(rates) / base:.3f} |")
    lines.append("")
    short = {"ours": "default", "ours_exact": "exact mode"}
    lines.append("Same random checkpoint in every run; largest keypoint difference of our runs to MMPose's: "
                 + ", ".join(f"{short[name]} {diff:.1e} px" for name, diff in differences.items())
                 + f" (AP {aps.get('mmpose')}: random weights).")
    return lines


def main(argv: List[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="tools/test.py images/s: our config vs MMPose's")
    parser.add_argument("--depth", type=int, default=50, choices=(50, 101))
    parser.add_argument("--size", default="256x192", choices=("256x192", "384x288"))
    parser.add_argument("--reps", type=int, default=2, help="runs per config (alternating)")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="pass --fuse-conv-bn to all runs")
    parser.add_argument("--exact", action="store_true", help="also run our config in exact mode")
    args = parser.parse_args(argv)
    print(machine_summary(torch.device("cpu")))
    print()
    print("\n".join(run(args.depth, args.size, args.reps, args.fuse_conv_bn, exact=args.exact)))
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
