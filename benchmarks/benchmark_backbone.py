"""Speed and memory of resnest_plugin's ResNeSt against MMPose's, timm's and torchvision's.

One run, one process, interleaved repetitions; prints markdown tables with
ratios. Sections (``--sections``):

* ``forward``: backbone forward throughput (eval, fp32, no grad) of every
  implementation on two paths:
  - *default*: what ``tools/test.py`` does without flags (NCHW input, BN
    layers as trained);
  - *best*: each implementation at its best: Conv+BN fused with
    ``mmcv.cnn.fuse_conv_bn`` (as ``tools/test.py --fuse-conv-bn``), model
    and input in ``channels_last``, and ``torch.compile`` with ``--compile``.
  GMAC/s = MACs per image (counted once with hooks) x images/s.
* ``train``: training step (forward, backward, Adam step) throughput.
* ``memory``: peak memory of a training step with and without ``with_cp``
  (each in a fresh process, see ``train_memory.py``), and whether the
  gradients are equal.
* ``onnx``: full TopDown model (our backbone + MMPose's heatmap head)
  exported to ONNX (opset 17), onnxruntime vs PyTorch on CPU.
* ``tools``: MMPose's ``tools/test.py`` end to end on the mini COCO, our
  config vs MMPose's (``benchmark_tools_test.py``).

Usage::

    .venv/bin/python benchmarks/benchmark_backbone.py            # full run (make bench)
    .venv/bin/python benchmarks/benchmark_backbone.py --quick    # R50 256x192 only, short
    .venv/bin/python benchmarks/benchmark_backbone.py --sections forward --depths 50 --reps 7
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from resnest_plugin.torch_compat import onnx_export_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    IMPLEMENTATIONS, build_backbone, count_macs, display_name, interleaved, machine_summary,
    make_training_step, parse_size, set_mode)

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("forward", "train", "memory", "onnx", "tools")

__all__ = ["main"]


# --- forward ------------------------------------------------------------------------

# Paths of the forward table. "exact" exists for our backbone only: its CPU
# fast paths switched off (MMPose's arithmetic op for op, bit-identical).
PATH_LABELS = {
    "default": "default",
    "exact": "exact (fast_inference=False, cpu_channels_last=False)",
    "best": "best: fuse_conv_bn + channels_last",
    "compiled": "best + torch.compile",
}


def prepare(model: nn.Module, path: str, device: torch.device) -> nn.Module:
    """Put a freshly built backbone on one of the benchmarked paths.

    Args:
        model: The backbone.
        path: ``default`` (eval, as built: what ``tools/test.py`` runs),
            ``exact`` (ours with its CPU fast paths off), ``best`` (Conv+BN
            fused by ``mmcv.cnn.fuse_conv_bn`` as ``tools/test.py
            --fuse-conv-bn`` does, model in ``channels_last``), ``compiled``
            (``best`` + ``torch.compile``, default inductor settings).
        device: Target device.

    Returns:
        The prepared model.
    """
    from mmcv.cnn import fuse_conv_bn

    model = set_mode(model.to(device), False)
    if path == "exact":
        from resnest_plugin.models import ResNeSt

        # On the backbone itself: on MMPose 1.x it sits inside common._LastFeature.
        for module in model.modules():
            if isinstance(module, ResNeSt):
                module.fast_inference = False
                module.cpu_channels_last = False
    if path in ("best", "compiled"):
        model = fuse_conv_bn(model).to(memory_format=torch.channels_last)
    if path == "compiled":
        model = torch.compile(model)
    return model


def _forward_runner(model: nn.Module, images: torch.Tensor) -> Callable[[], int]:
    def run() -> int:
        with torch.no_grad():
            model(images)
        return images.shape[0]

    return run


def bench_forward(args: argparse.Namespace, device: torch.device, summary: dict) -> List[str]:
    """Forward throughput table (default, exact, best, compiled paths)."""
    lines = ["### Backbone forward (eval, fp32, no grad)", "",
             f"batch {args.batch}; img/s: median and min..max of {args.reps} interleaved repetitions "
             f"(each >= {args.min_seconds:.1f} s); GMAC/s = MACs per image x img/s; last column: ratio to "
             "MMPose's built-in on the same path (the `exact` row: to MMPose's default).",
             "", "| model | input | path | img/s | spread | GMAC/img | GMAC/s | vs MMPose |",
             "|---|---|---|---|---|---|---|---|"]
    for depth_index, depth in enumerate(args.depths):
        for size_index, size in enumerate(args.sizes):
            height, width = parse_size(size)
            paths = list(args.paths)
            # torch.compile costs ~1 min per model on 2 cores: first depth/size only.
            if args.compile and depth_index == 0 and size_index == 0:
                paths.append("compiled")
            runners: Dict[str, Callable[[], int]] = {}
            macs: Dict[str, int] = {}
            for impl in args.impls:
                base = build_backbone(impl, depth)
                macs[impl] = count_macs(set_mode(base, False), (1, 3, height, width))
                for path in paths:
                    if path == "exact" and impl != "ours":
                        continue
                    model = prepare(copy.deepcopy(base), path, device)
                    images = torch.randn(args.batch, 3, height, width, device=device)
                    if path in ("best", "compiled"):
                        images = images.contiguous(memory_format=torch.channels_last)
                    runners[f"{impl}/{path}"] = _forward_runner(model, images)
                del base
            compile_start = time.perf_counter()
            for name, runner in runners.items():
                if name.endswith("/compiled"):
                    runner()  # compilation, timed apart
            compile_s = time.perf_counter() - compile_start
            results = interleaved(runners, args.reps, device, warmup=1, min_seconds=args.min_seconds)
            for path in paths:
                reference = results.get(f"mmpose/{'default' if path == 'exact' else path}")
                for impl in args.impls:
                    m = results.get(f"{impl}/{path}")
                    if m is None:
                        continue
                    ratio = f"{m.median / reference.median:.3f}" if reference else "-"
                    gmacs = macs[impl] / 1e9
                    lines.append(f"| {display_name(impl, depth)} | {size} | {PATH_LABELS[path]} | {m.median:.2f} | "
                                 f"{m.spread} | {gmacs:.2f} | {gmacs * m.median:.1f} | {ratio} |")
                    summary.setdefault("forward", {})[f"{impl}/{depth}/{size}/{path}"] = dict(
                        img_s=m.median, rates=m.rates, gmac=gmacs)
            if "compiled" in paths:
                summary["compile_s"] = compile_s
            print(f"  forward ResNeSt-{depth} {size} done", file=sys.stderr, flush=True)
    if "compile_s" in summary:
        lines += ["", f"torch.compile: {summary['compile_s']:.0f} s of compilation for the "
                      f"{len(args.impls)} compiled models (not in the img/s)."]
    return lines


# --- train ----------------------------------------------------------------------------

def bench_train(args: argparse.Namespace, device: torch.device, summary: dict) -> List[str]:
    """Training-step throughput table."""
    size = args.sizes[0]
    height, width = parse_size(size)
    lines = [f"### Training step, ResNeSt-{'/'.join(map(str, args.train_depths))} (forward + backward + Adam, fp32, "
             "train-mode BN)", "",
             f"batch {args.train_batch}, {size}; {args.train_reps} interleaved repetitions of >= "
             f"{args.train_min_seconds:g} s each.", "",
             "| model | img/s | spread | vs MMPose |", "|---|---|---|---|"]
    for depth in args.train_depths:
        runners = {}
        for impl in args.train_impls:
            torch.manual_seed(0)
            model = set_mode(build_backbone(impl, depth).to(device), True)
            images = torch.randn(args.train_batch, 3, height, width, device=device)
            runners[impl] = make_training_step(model, images)[0]
        # Two warm-up steps: the first also grows the allocator and creates the oneDNN
        # backward primitives; several steps per repetition average out step-to-step noise.
        results = interleaved(runners, args.train_reps, device, warmup=2,
                              min_seconds=args.train_min_seconds)
        reference = results.get("mmpose")
        for impl, m in results.items():
            ratio = f"{m.median / reference.median:.3f}" if reference else "-"
            lines.append(f"| {display_name(impl, depth)} | {m.median:.2f} | {m.spread} | {ratio} |")
            summary.setdefault("train", {})[f"{impl}/{depth}/{size}"] = dict(img_s=m.median, rates=m.rates)
        print(f"  train ResNeSt-{depth} done", file=sys.stderr, flush=True)
    return lines


# --- memory ---------------------------------------------------------------------------

def _gradients_equal(depth: int, size: str, device: torch.device) -> Tuple[float, float]:
    """Max |grad difference| between with_cp=True and False, and max |grad|."""
    height, width = parse_size(size)
    torch.manual_seed(0)
    plain = set_mode(build_backbone("ours", depth).to(device), True)
    checkpointed = set_mode(build_backbone("ours", depth, with_cp=True).to(device), True)
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, height // 2, width // 2, device=device)
    grads = []
    for model in (plain, checkpointed):
        model.zero_grad()
        model(images).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    worst = max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])
    largest = max(g.abs().max().item() for g in grads[0].values())
    return worst, largest


def bench_memory(args: argparse.Namespace, device: torch.device, summary: dict) -> List[str]:
    """Peak training memory with/without with_cp, each in a fresh process."""
    size = args.sizes[0]
    lines = ["### Peak memory of one training step, with_cp (gradient checkpointing)", "",
             f"batch {args.train_batch}, {size}; each measured in a fresh process "
             "(method: benchmarks/train_memory.py).", "",
             "| model | with_cp=False MiB | with_cp=True MiB | ratio |", "|---|---|---|---|"]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    method = ""
    notes = [""]  # printed after the table
    for depth in args.train_depths:
        for impl in ("ours", "mmpose"):
            peaks = []
            for with_cp in (False, True):
                command = [sys.executable, str(Path(__file__).resolve().parent / "train_memory.py"),
                           "--impl", impl, "--depth", str(depth), "--batch", str(args.train_batch),
                           "--size", size, "--device", device.type] + (["--with-cp"] if with_cp else [])
                completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
                if completed.returncode != 0:
                    raise RuntimeError(f"memory worker failed: {' '.join(command)}\n{completed.stderr[-2000:]}")
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                peaks.append(result["peak_mib"])
                method = result["method"]
            lines.append(f"| {display_name(impl, depth)} | {peaks[0]:.0f} | {peaks[1]:.0f} | "
                         f"{peaks[1] / peaks[0]:.3f} |")
            summary.setdefault("memory", {})[f"{impl}/{depth}"] = dict(without=peaks[0], with_cp=peaks[1])
        worst, largest = _gradients_equal(depth, size, device)
        notes.append(f"ResNeSt-{depth} gradients with_cp vs without (batch 2, half size): "
                     f"max |difference| {worst:.2e} (largest gradient {largest:.2e}).")
        summary.setdefault("memory", {})[f"grad_diff/{depth}"] = worst
    return lines + notes + [f"Method: {method}."]


# --- ONNX -------------------------------------------------------------------------------

class _Dummy(nn.Module):
    """Exposes ``TopDown.forward_dummy`` (image -> heatmaps) as ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model.forward_dummy(images)


def bench_onnx(args: argparse.Namespace, device: torch.device, summary: dict) -> List[str]:
    """onnxruntime vs PyTorch on the full TopDown model with our backbone."""
    import onnxruntime
    from mmcv import Config
    from mmpose.models import build_posenet

    size = args.sizes[0]
    height, width = parse_size(size)
    cfg = Config.fromfile(str(REPO / "configs" / "top_down" / "resnest" / "coco" / f"resnest50_coco_{size}.py"))
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = build_posenet(cfg.model)
    model.init_weights()
    wrapped = _Dummy(model).eval()
    images = torch.randn(args.batch, 3, height, width)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topdown_resnest50.onnx"
        torch.onnx.export(wrapped, (images[:1],), str(path), opset_version=17, **onnx_export_options(),
                          input_names=["images"], output_names=["heatmaps"],
                          dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy()}
    with torch.no_grad():
        expected = wrapped(images)
    actual = torch.from_numpy(session.run(None, feed)[0])
    difference = ((actual - expected).abs().max() / expected.abs().max()).item()

    def run_ort() -> int:
        session.run(None, feed)
        return images.shape[0]

    runners = {"pytorch": _forward_runner(wrapped, images), "onnxruntime": run_ort}
    results = interleaved(runners, args.reps, torch.device("cpu"), warmup=1, min_seconds=args.min_seconds)
    base = results["pytorch"].median
    lines = ["### ONNX export of the full TopDown model (our ResNeSt-50 + heatmap head), CPU", "",
             f"batch {args.batch}, {size}; opset 17 (TorchScript exporter); onnxruntime "
             f"{onnxruntime.__version__}, {torch.get_num_threads()} intra-op threads; "
             f"max |heatmap difference| / max |heatmap| = {difference:.1e}.", "",
             "| runtime | img/s | spread | vs PyTorch |", "|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m.median:.2f} | {m.spread} | {m.median / base:.3f} |")
    summary["onnx"] = dict(pytorch=base, onnxruntime=results["onnxruntime"].median, max_diff=difference)
    return lines


# --- summary ----------------------------------------------------------------------------

def _ratio(summary: dict, section: str, a: str, b: str) -> Optional[float]:
    table = summary.get(section, {})
    if a in table and b in table:
        return table[a]["img_s"] / table[b]["img_s"]
    return None


def targets(summary: dict, args: argparse.Namespace) -> List[str]:
    """The target ratios of issue 5, from the measured numbers."""
    lines = ["### Targets", ""]
    if args.quick:
        lines += ["Quick run (few, single-step repetitions): indicative only; the README's numbers come from a "
                  "full `make bench`.", ""]
    lines += ["| target | measured | goal | met |", "|---|---|---|---|"]

    def row(label: str, value: Optional[float], goal: float, fmt: str = "{:.3f}", lower: bool = False) -> None:
        if value is None:
            return
        met = value <= goal if lower else value >= goal
        lines.append(f"| {label} | {fmt.format(value)} | {'<=' if lower else '>='} {goal} | "
                     f"{'yes' if met else 'NO'} |")

    forward = summary.get("forward", {})

    def best_of(impl: str, key: str) -> Optional[dict]:
        """The faster of the eager best path and the compiled one (when measured)."""
        options = [forward[f"{impl}/{key}/{path}"] for path in ("best", "compiled")
                   if f"{impl}/{key}/{path}" in forward]
        return max(options, key=lambda entry: entry["img_s"]) if options else None

    for depth in args.depths:
        for size in args.sizes:
            key = f"{depth}/{size}"
            row(f"default forward R{depth} {size}: ours / MMPose",
                _ratio(summary, "forward", f"ours/{key}/default", f"mmpose/{key}/default"), 1.25)
            row(f"default forward R{depth} {size}: ours / timm",
                _ratio(summary, "forward", f"ours/{key}/default", f"timm/{key}/default"), 1.0)
            row(f"best forward R{depth} {size} (eager): ours / MMPose",
                _ratio(summary, "forward", f"ours/{key}/best", f"mmpose/{key}/best"), 1.15)
            ours, mmpose, tv = best_of("ours", key), best_of("mmpose", key), best_of("torchvision", key)
            if f"mmpose/{key}/compiled" in forward and ours and mmpose:
                row(f"best forward R{depth} {size} (incl. compile): ours / MMPose",
                    ours["img_s"] / mmpose["img_s"], 1.15)
            if ours and tv:
                row(f"best forward R{depth} {size}: GMAC/s ours / torchvision ResNet-{depth}",
                    ours["img_s"] * ours["gmac"] / (tv["img_s"] * tv["gmac"]), 0.85)
    size = args.sizes[0]
    for depth in args.train_depths:
        row(f"training step R{depth} {size}: ours / MMPose",
            _ratio(summary, "train", f"ours/{depth}/{size}", f"mmpose/{depth}/{size}"), 1.15)
        memory = summary.get("memory", {}).get(f"ours/{depth}")
        if memory:
            row(f"with_cp peak training memory R{depth}: with / without",
                memory["with_cp"] / memory["without"], 0.6, lower=True)
    if "tools" in summary:
        row("tools/test.py img/s: our config / MMPose's", summary["tools"], 1.1)
    return lines


# --- main -----------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` overrides the defaults for a short run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="R50 256x192 only, fewer repetitions, no tools/test.py run (~3.5 min on 2 cores)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                        help="sections to run (default: all)")
    parser.add_argument("--impls", nargs="+", choices=sorted(IMPLEMENTATIONS),
                        default=["ours", "mmpose", "timm", "torchvision"])
    parser.add_argument("--depths", nargs="+", type=int, choices=(50, 101), default=None)
    parser.add_argument("--sizes", nargs="+", choices=("256x192", "384x288"), default=None)
    parser.add_argument("--paths", nargs="+", choices=("default", "exact", "best"),
                        default=["default", "exact", "best"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=None, help="forward repetitions per variant")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="minimum length of one timed repetition")
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--train-reps", type=int, default=None)
    parser.add_argument("--train-min-seconds", type=float, default=None,
                        help="minimum length of one timed training repetition (default 6 s, --quick 0)")
    parser.add_argument("--train-depths", nargs="+", type=int, choices=(50, 101), default=None)
    parser.add_argument("--train-impls", nargs="+", choices=sorted(IMPLEMENTATIONS), default=None)
    parser.add_argument("--tools-reps", type=int, default=2, help="tools/test.py runs per config")
    parser.add_argument("--compile", action="store_true",
                        help="add best + torch.compile rows (first depth and size only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--in-process", action="store_true",
                        help="run every section in this process (default: each in a fresh one)")
    parser.add_argument("--child-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    from resnest_plugin.hosts import installed_host

    # The onnx and tools sections build MMPose 0.x TopDown models / run its tools.
    host_sections = list(SECTIONS) if installed_host() == "mmpose0" else ["forward", "train", "memory"]
    if args.sections and set(args.sections) - set(host_sections):
        parser.error(f"sections {sorted(set(args.sections) - set(host_sections))} need the MMPose "
                     f"0.x stack; on this one: {host_sections}")
    args.sections = args.sections or [s for s in host_sections if not quick or s != "tools"]
    args.depths = args.depths or ([50] if quick else [50, 101])
    args.sizes = args.sizes or (["256x192"] if quick else ["256x192", "384x288"])
    args.reps = args.reps or 3
    args.min_seconds = args.min_seconds if args.min_seconds is not None else 0.0
    args.train_batch = args.train_batch or 16  # the batch of the targets, also when quick
    args.train_reps = args.train_reps or (3 if quick else 5)
    if args.train_min_seconds is None:
        args.train_min_seconds = 0.0 if quick else 6.0
    args.train_depths = args.train_depths or ([50] if quick else [50, 101])
    args.train_impls = args.train_impls or (["ours", "mmpose"] if quick else ["ours", "mmpose", "timm",
                                                                               "torchvision"])
    if args.device != "cpu" and "onnx" in args.sections:
        args.sections.remove("onnx")  # onnxruntime CPU vs PyTorch CPU only
    return args


# Options that select what a child process runs; the parent sets them itself.
_UNIT_OPTIONS = ("--sections", "--train-depths", "--json", "--child-json")


def _child_argv(argv: List[str]) -> List[str]:
    """``argv`` without the options in :data:`_UNIT_OPTIONS` (and their values)."""
    kept, skipping = [], False
    for token in argv:
        if token.startswith("--"):
            skipping = token.split("=")[0] in _UNIT_OPTIONS
        if not skipping:
            kept.append(token)
    return kept


def _units(args: argparse.Namespace) -> List[List[str]]:
    """The isolated runs: one per section, and one per depth for the training step."""
    units = []
    for section in args.sections:
        if section == "train":
            units += [["--sections", "train", "--train-depths", str(depth)] for depth in args.train_depths]
        else:
            units.append(["--sections", section])
    return units


def run_isolated(argv: List[str], unit: List[str]) -> Tuple[List[str], dict]:
    """Run one unit of the benchmark in a fresh Python process.

    A fresh process per section (and per depth of the training step): the
    allocator state, the oneDNN primitive cache and the models of one section
    do not slow down the next (measured: the training-step ratio of a run
    after the forward section's 48 models was 0.03 lower than in a fresh
    process), and each unit is timed the way a user runs it, in a process that
    does only that.

    Args:
        argv: This run's command line, without :data:`_UNIT_OPTIONS`.
        unit: The options that select the unit.

    Returns:
        The unit's printed lines and its raw numbers.
    """
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        command = [sys.executable, str(Path(__file__).resolve()), *argv, *unit, "--in-process",
                   "--child-json", str(summary_path)]
        completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"benchmark unit failed (exit {completed.returncode}): {' '.join(command)}\n"
                               f"{completed.stdout[-2000:]}")
        return completed.stdout.splitlines(), json.loads(summary_path.read_text())


def _merge(summary: dict, part: dict) -> None:
    """Add one unit's raw numbers to ``summary`` (per-section dicts are merged, not replaced)."""
    for section, entries in part.items():
        if isinstance(entries, dict):
            summary.setdefault(section, {}).update(entries)
        else:
            summary[section] = entries


def main(argv: Optional[List[str]] = None) -> None:
    """Run the selected sections and print the tables."""
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import resnest_plugin  # noqa: F401  (registers the backbone, applies compat)

    start = time.perf_counter()
    summary: dict = {}
    if args.child_json is None:
        print("## resnest_plugin benchmark\n")
        print(machine_summary(device))
        print()
    if not args.in_process:
        for unit in _units(args):
            lines, part = run_isolated(_child_argv(raw_argv), unit)
            _merge(summary, part)
            print("\n".join(lines), flush=True)
        _finish(summary, args, start)
        return
    steps = {"forward": bench_forward, "train": bench_train, "memory": bench_memory}
    if device.type == "cpu":
        steps["onnx"] = bench_onnx
    for section in args.sections:
        if section == "tools":
            from benchmark_tools_test import VARIANTS
            from benchmark_tools_test import run as run_tools

            lines = run_tools(depth=50, size=args.sizes[0], reps=args.tools_reps)
            for line in lines:
                if line.startswith(f"| {VARIANTS['ours']} "):
                    summary["tools"] = float(line.split("|")[-2])
            lines = ["### MMPose tools/test.py end to end", ""] + lines
        elif section in steps:
            lines = steps[section](args, device, summary)
        else:
            continue
        print("\n".join(lines) + "\n", flush=True)
    if args.child_json is not None:
        args.child_json.write_text(json.dumps(summary))
        return
    _finish(summary, args, start)


def _finish(summary: dict, args: argparse.Namespace, start: float) -> None:
    """Print the targets table and the run's length and load; write ``--json``."""
    print("\n".join(targets(summary, args)))
    load = os.getloadavg()
    busy = load[1] > 0.5 * (os.cpu_count() or 1) + 1.0  # +1: this benchmark's own load
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average at end: "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
          + (" -- other processes were running: absolute img/s are low and noisy; the ratios of "
             "interleaved repetitions stay comparable." if busy else "."))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
