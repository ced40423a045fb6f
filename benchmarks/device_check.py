"""One prepared GPU check of the host-free ResNeSt core: speed, memory and numerics against timm.

What it measures, in one process, with interleaved repetitions (A B C, B C A,
C A B: drift of the machine hits every variant alike, so the ratios hold):

* ``forward``: backbone forward img/s (eval, no grad) of ResNeSt-50 and -101
  at 256x192 (batch 64) and 384x288 (batch 32), for three implementations:
  ``default`` (our :class:`resnest_plugin.models.ResNeSt` as built),
  ``exact`` (ours switched to MMPose's arithmetic op for op,
  :func:`use_exact_mode`) and ``timm`` (``resnest50d`` / ``resnest101e``,
  random weights), each in the modes ``fp32``, ``amp_bf16``, ``amp_fp16``
  (``torch.autocast``), ``channels_last``, ``channels_last_amp_bf16`` and
  ``compile`` (``torch.compile``, fp32; by default for ResNeSt-50 256x192
  only, compilation is the slow part).
* ``train``: training-step img/s (forward, backward, SGD step, train-mode BN)
  of the same models in ``fp32``, ``amp_bf16`` and ``channels_last_amp_bf16``.
* ``memory``: peak memory (``torch.cuda.max_memory_allocated``, reset before
  each measured step) of a training step of ours with and without
  ``with_cp=True``, and of timm's model for reference.
* ``correctness``: default vs exact forward in fp32 (max abs difference over
  the feature scale, the max abs of the exact output; passes at <= 1e-5),
  AMP bf16 / fp16 vs fp32 and channels_last vs NCHW relative errors, and the
  input and weight gradients of default vs exact (and channels_last vs NCHW)
  in fp32 (BN in eval mode). The weights are the model tests' random ones
  (``tests/model_helpers.py``), and the fp32 references run with TF32 off
  and deterministic cuDNN, so what is compared is the code path, not TF32
  or atomics. (The throughput rows keep torch's defaults: cuDNN may use TF32
  in "fp32"; the JSON records the switches.)

It needs only the core, torch and timm (no mmcv, no MMPose), so it runs on a
bare GPU machine. It writes ``device_check.json`` (every figure, written
again after each measurement, so a timeout leaves the finished ones) and
``device_check.md`` (tables with the ratios default/exact and default/timm)
into ``--out``. A time budget (``--budget-s``, 480 s) skips what would not
finish, with the reason recorded.

Usage::

    PYTHONUNBUFFERED=1 python3 benchmarks/device_check.py --out $OUT/device_check   # on the GPU
    python3 benchmarks/device_check.py --smoke --out /tmp/device_check               # CPU, seconds

See docs/benchmarks-device.md for running it through the project's device tool.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
# common.py imports torch only at module level; build_backbone("timm") imports timm.
from common import Measurement, _cpu_model, build_backbone, interleaved, parse_size, synchronize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resnest_plugin.models import ResNeSt  # noqa: E402  (the host-free core)

# The model tests' weights (fan-in scaled, BN statistics away from 0/1): activations
# stay O(1) through 50+ blocks, so relative errors are read at a sane scale.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from model_helpers import randomise  # noqa: E402  (imports torch only)

__all__ = ["MODES", "Mode", "main", "use_exact_mode"]

JSON_NAME = "device_check.json"
MD_NAME = "device_check.md"
IMPLS = ("default", "exact", "timm")
TIMM_NAMES = {50: "resnest50d", 101: "resnest101e"}
DEFAULT_BATCH = {"256x192": 64, "384x288": 32}
#: default vs exact in fp32, max abs difference / max abs of the exact output.
EXACT_TOLERANCE = 1e-5
NOT_REACHED = "not reached (the run ended before this measurement)"


@dataclass(frozen=True)
class Mode:
    """How one row runs a model: autocast dtype, memory format, torch.compile.

    Attributes:
        amp: ``torch.autocast`` dtype, or ``None`` for plain fp32.
        channels_last: Model and input in ``torch.channels_last``.
        compiled: Wrap the model in ``torch.compile`` (default settings).
    """

    amp: Optional[torch.dtype] = None
    channels_last: bool = False
    compiled: bool = False


MODES: Dict[str, Mode] = {
    "fp32": Mode(),
    "amp_bf16": Mode(amp=torch.bfloat16),
    "amp_fp16": Mode(amp=torch.float16),
    "channels_last": Mode(channels_last=True),
    "channels_last_amp_bf16": Mode(amp=torch.bfloat16, channels_last=True),
    "compile": Mode(compiled=True),
}
FORWARD_MODES = tuple(MODES)
TRAIN_MODES = ("fp32", "amp_bf16", "channels_last_amp_bf16")


def use_exact_mode(model: nn.Module) -> nn.Module:
    """Switch every core ResNeSt inside ``model`` to MMPose's arithmetic op for op.

    The one place that knows the model's switches (they may be renamed).
    Both are CPU-only today: on CUDA the default path already is the exact one.

    Args:
        model: A model containing :class:`resnest_plugin.models.ResNeSt` modules.

    Returns:
        ``model``, changed in place.
    """
    for module in model.modules():
        if isinstance(module, ResNeSt):
            module.fast_inference = False
            module.cpu_channels_last = False
    return model


# --- the models ------------------------------------------------------------------------

def build_model(impl: str, depth: int, with_cp: bool = False) -> nn.Module:
    """One implementation at one depth, random weights (seeded by the depth), on the CPU, in eval mode.

    Args:
        impl: ``default``, ``exact`` or ``timm``.
        depth: 50 or 101.
        with_cp: Gradient checkpointing of our bottlenecks (not for ``timm``).

    Returns:
        The backbone; it returns the last stage's features.
    """
    torch.manual_seed(depth)
    if impl == "timm":
        return build_backbone("timm", depth, with_cp=with_cp).eval()
    # stem_channels=64: the width of MMPose's built-in and of the released COCO
    # checkpoints (timm's resnest101e has a 128-wide stem: a little more work).
    model = ResNeSt(depth=depth, stem_channels=64, with_cp=with_cp).eval()
    return use_exact_mode(model) if impl == "exact" else model


def build_models(depth: int) -> Dict[str, nn.Module]:
    """The three implementations at one depth (:func:`build_model`), ``exact`` with ``default``'s weights.

    Args:
        depth: 50 or 101.

    Returns:
        ``default``, ``exact`` and ``timm``, on the CPU, in eval mode.
    """
    ours = build_model("default", depth)
    return {"default": ours, "exact": use_exact_mode(copy.deepcopy(ours)), "timm": build_model("timm", depth)}


def last_output(out: Any) -> torch.Tensor:
    """The last stage's features of a backbone's output.

    Args:
        out: A tensor, or a tuple / list of stage outputs.

    Returns:
        The (last) tensor.
    """
    return out[-1] if isinstance(out, (tuple, list)) else out


def amp_context(mode: Mode, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the mode's dtype, or a no-op for fp32.

    Args:
        mode: The row's mode.
        device: Device (the autocast device type).

    Returns:
        The context manager.
    """
    if mode.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=mode.amp)


def autocast_refusal(mode: Mode, device: torch.device) -> Optional[str]:
    """Why this torch's ``torch.autocast`` refuses the mode's dtype on ``device``, or ``None``.

    torch 1.13's CPU autocast takes bfloat16 only ("Currently, AutocastCPU only
    support Bfloat16 as the autocast_cpu_dtype"); asked of torch by entering
    the context once.

    Args:
        mode: The row's mode.
        device: Device (the autocast device type).

    Returns:
        ``None`` for fp32 or a supported dtype, else the reason (for ``skipped``).
    """
    if mode.amp is None:
        return None
    try:
        with torch.autocast(device.type, dtype=mode.amp):
            pass
    except RuntimeError as error:
        return f"this torch's autocast on {device.type} refuses {mode.amp}: {error}"
    return None


def place(model: nn.Module, mode: Mode, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` in the mode's memory format (compiled if asked).

    Args:
        model: CPU model (left untouched: ``Module.to`` converts in place).
        mode: The row's mode.
        device: Target device.

    Returns:
        The placed copy.
    """
    placed = copy.deepcopy(model).to(device)
    if mode.channels_last:
        placed = placed.to(memory_format=torch.channels_last)
    return torch.compile(placed) if mode.compiled else placed


def make_input(batch: int, size: str, mode: Mode, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A random image batch in the mode's memory format (drawn on the CPU: the same on every device).

    Args:
        batch: Images.
        size: ``HxW``.
        mode: The row's mode (memory format).
        device: Target device.
        seed: Seed of the draw.

    Returns:
        ``(batch, 3, H, W)`` float32.
    """
    height, width = parse_size(size)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, height, width, generator=generator).to(device)
    return images.contiguous(memory_format=torch.channels_last) if mode.channels_last else images


def forward_runner(model: nn.Module, images: torch.Tensor, mode: Mode,
                   device: torch.device) -> Callable[[], int]:
    """One timed unit of the forward rows: a no-grad forward under the mode's autocast.

    Args:
        model: The backbone, in eval mode, on ``device``.
        images: The input batch.
        mode: The row's mode (autocast).
        device: Device (autocast type).

    Returns:
        The unit; it returns the number of images it processed.
    """
    def run() -> int:
        """One no-grad forward; returns the batch size."""
        with torch.no_grad(), amp_context(mode, device):
            model(images)
        return images.shape[0]

    return run


def train_runner(model: nn.Module, images: torch.Tensor, mode: Mode,
                 device: torch.device) -> Callable[[], int]:
    """One training step (forward, mean-square loss, backward, SGD step) as a runner.

    Gradients are released (``set_to_none``) at the start of each step, as
    MMPose's optimizer wrapper does; the loss is taken in fp32.

    Args:
        model: The backbone, in training mode, on ``device``.
        images: The input batch.
        mode: ``amp`` and memory format of the step.
        device: Device (autocast type).

    Returns:
        The step; it returns the number of images it processed.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> int:
        """One training step; returns the batch size."""
        optimizer.zero_grad(set_to_none=True)
        with amp_context(mode, device):
            out = last_output(model(images))
        out.float().square().mean().backward()
        optimizer.step()
        return images.shape[0]

    return step


def release(device: torch.device) -> None:
    """Free what the last measurement left (models, autotuning workspaces) before the next.

    Args:
        device: Device whose cached blocks go back to the driver (CUDA only).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- the report --------------------------------------------------------------------------

def rate_entry(measurement: Optional[Measurement] = None) -> Dict[str, Any]:
    """JSON of one implementation's throughput.

    Args:
        measurement: The timed repetitions, or ``None`` for the unmeasured entry.

    Returns:
        ``img_per_s`` (median), ``rates`` (every repetition) and ``spread_pct``.
    """
    if measurement is None:
        return {"img_per_s": None, "rates": [], "spread_pct": None}
    return {"img_per_s": measurement.median, "rates": measurement.rates,
            "spread_pct": measurement.spread_pct}


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """A ratio of two figures that may be unmeasured.

    Args:
        numerator: Figure, or ``None``.
        denominator: Figure, or ``None`` (0 counts as missing).

    Returns:
        ``numerator / denominator``, or ``None`` when either is missing.
    """
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> Tuple[float, float, float]:
    """Max abs difference, the feature scale (max abs of ``expected``) and their ratio.

    Args:
        actual: Tensor to check (any float dtype; compared in fp32).
        expected: Reference tensor.

    Returns:
        ``(max_abs_diff, scale, max_abs_diff / scale)``.
    """
    expected = expected.detach().float()
    diff = (actual.detach().float() - expected).abs().max().item()
    scale = expected.abs().max().item()
    return diff, scale, diff / scale if scale else float("inf")


class Report:
    """The JSON document, prefilled with every field, rewritten after each measurement.

    Args:
        out: Folder for ``device_check.json`` and ``device_check.md``
            (``None``: print the tables at the end only).
        start: ``time.perf_counter()`` at the start of the run.
    """

    def __init__(self, out: Optional[Path], start: float) -> None:
        self.out = out
        self.start = start
        self.data: Dict[str, Any] = {}
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        """Seconds since the start of the run."""
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        """Print a progress line with the elapsed seconds (flushed: the device tool shows the tail).

        Args:
            message: The line.
        """
        print(f"[{self.elapsed():6.1f} s] {message}", flush=True)

    def save(self) -> None:
        """Write the JSON and the markdown (through temporary files: a kill leaves whole files)."""
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        if self.out is None:
            return
        for name, text in ((JSON_NAME, json.dumps(self.data, indent=1) + "\n"), (MD_NAME, markdown(self.data))):
            temporary = self.out / f".{name}.tmp"
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.out / name)


def environment(device: torch.device, smoke: bool) -> Dict[str, Any]:
    """Device, library versions and the numerics switches in force for the throughput rows.

    Args:
        device: The device measured.
        smoke: Whether this is the ``--smoke`` run.

    Returns:
        The ``environment`` object of the JSON.
    """
    import numpy
    import timm

    info: Dict[str, Any] = {
        "device": str(device), "device_type": device.type, "smoke": smoke,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": timm.__version__, "numpy": numpy.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        # torch's defaults: cuDNN convolutions may use TF32 in "fp32", matmuls not.
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "capability": None, "multiprocessors": None, "total_memory_bytes": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    total_memory_bytes=props.total_memory)
    return info


def prefill(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """The whole document with every row and figure present, unmeasured (``None``).

    Rows that cannot run here carry their reason in ``skipped`` already;
    the others say :data:`NOT_REACHED` until measured.

    Args:
        args: Options (what to measure).
        device: The device measured.

    Returns:
        The JSON document.
    """
    cpu_reason = "needs CUDA: this run is on the CPU (--smoke)" if device.type != "cuda" else None
    forward, train, memory = [], [], []
    for depth in args.depths:
        for size in args.sizes:
            base = dict(model=f"ResNeSt-{depth}", depth=depth, size=size, batch=args.batch_of[size],
                        timm_model=TIMM_NAMES[depth])
            for mode in args.modes:
                skipped = NOT_REACHED
                if autocast_refusal(MODES[mode], device):
                    skipped = autocast_refusal(MODES[mode], device)
                elif MODES[mode].compiled and device.type != "cuda":
                    skipped = ("torch.compile skipped on the CPU (--smoke): minutes of C++ "
                               "compilation on a small machine")
                elif MODES[mode].compiled and not args.compile_all and (depth, size) != args.compile_first:
                    skipped = (f"torch.compile only for ResNeSt-{args.compile_first[0]} "
                               f"{args.compile_first[1]} (--compile-all for every row)")
                row = dict(base, mode=mode, skipped=skipped, error=None,
                           default_over_exact=None, default_over_timm=None,
                           **{impl: rate_entry() for impl in IMPLS})
                if MODES[mode].compiled:
                    row["compile_s"] = {impl: None for impl in IMPLS}
                forward.append(row)
            for mode in args.train_modes:
                train.append(dict(base, batch=args.train_batch_of[size], mode=mode,
                                  skipped=autocast_refusal(MODES[mode], device) or NOT_REACHED,
                                  error=None, default_over_exact=None, default_over_timm=None,
                                  **{impl: rate_entry() for impl in IMPLS}))
    for depth in args.memory_depths:
        size = args.sizes[0]
        memory.append(dict(model=f"ResNeSt-{depth}", depth=depth, size=size, batch=args.train_batch_of[size],
                           mode="fp32", skipped=cpu_reason or NOT_REACHED, error=None,
                           without_cp={"memory_bytes": None, "resident_bytes": None},
                           with_cp={"memory_bytes": None, "resident_bytes": None},
                           timm={"memory_bytes": None, "resident_bytes": None},
                           with_cp_over_without=None, default_over_timm=None))
    amp = {name: {impl: None for impl in IMPLS} for name in ("amp_bf16", "amp_fp16")}
    correctness = {
        "model": f"ResNeSt-{args.check_depth}", "depth": args.check_depth, "size": args.sizes[0],
        "batch": args.check_batch, "skipped": NOT_REACHED, "error": None,
        "reference": ("fp32 NCHW with TF32 off and deterministic cuDNN; weights and BN statistics from "
                      "tests/model_helpers.randomise; gradients with BN in eval mode"),
        "default_vs_exact_fp32": {"max_abs_diff": None, "feature_scale": None, "rel_diff": None,
                                  "tolerance": EXACT_TOLERANCE, "passed": None},
        "amp_vs_fp32_rel_error": amp,
        "channels_last_vs_nchw_rel_error": {impl: None for impl in IMPLS},
        "grad_default_vs_exact_fp32": {"input_rel_diff": None, "weights_rel_diff": None,
                                       "weights_worst_param": None, "weights_worst_param_rel_diff": None},
        "grad_channels_last_vs_nchw_fp32": {"input_rel_diff": None, "weights_rel_diff": None,
                                            "weights_worst_param": None, "weights_worst_param_rel_diff": None},
    }
    settings = {key: getattr(args, key) for key in (
        "depths", "sizes", "modes", "train_modes", "memory_depths", "reps", "min_seconds", "warmup",
        "train_warmup", "budget_s", "compile_all", "compile_need_s", "check_depth", "check_batch")}
    settings.update(batch=args.batch_of, train_batch=args.train_batch_of)
    return {"schema": 1, "status": "running", "started_at": datetime.now(timezone.utc).isoformat(),
            "elapsed_s": 0.0, "environment": environment(device, args.smoke), "settings": settings,
            "forward": forward, "train": train, "memory": memory, "correctness": correctness,
            "errors": []}


def _fmt(value: Optional[float], spec: str = ".1f") -> str:
    """A figure for the tables.

    Args:
        value: The figure, or ``None``.
        spec: Format specification.

    Returns:
        The formatted figure, ``-`` when unmeasured.
    """
    return "-" if value is None else format(value, spec)


def markdown(data: Dict[str, Any]) -> str:
    """The tables of ``device_check.md``: img/s per row with default/exact and default/timm.

    Args:
        data: The JSON document.

    Returns:
        Markdown text.
    """
    env = data["environment"]
    lines = ["# resnest_plugin device check", "",
             f"{env['device_name']} ({env['device']}); torch {env['torch']}, CUDA {env['cuda']}, "
             f"cuDNN {env['cudnn']}, timm {env['timm']}; status: {data['status']}, "
             f"{data['elapsed_s']:.0f} s. img/s: median of {data['settings']['reps']} interleaved "
             f"repetitions of >= {data['settings']['min_seconds']} s.", ""]
    for section, title in (("forward", "Forward (eval, no grad)"),
                           ("train", "Training step (forward, backward, SGD, train-mode BN)")):
        lines += [f"## {title}", "",
                  "| model | input | batch | mode | default img/s | exact img/s | timm img/s | "
                  "default/exact | default/timm | note |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in data[section]:
            note = row["error"] or row["skipped"] or ""
            if "compile_s" in row and row["compile_s"]["default"] is not None:
                note = "compile s: " + ", ".join(f"{k} {_fmt(v, '.0f')}" for k, v in row["compile_s"].items())
            lines.append(
                f"| {row['model']} | {row['size']} | {row['batch']} | {row['mode']} | "
                f"{_fmt(row['default']['img_per_s'])} | {_fmt(row['exact']['img_per_s'])} | "
                f"{_fmt(row['timm']['img_per_s'])} ({row['timm_model']}) | "
                f"{_fmt(row['default_over_exact'], '.3f')} | {_fmt(row['default_over_timm'], '.3f')} | {note} |")
        lines.append("")
    lines += ["## Peak memory of a training step (torch.cuda.max_memory_allocated)", "",
              "| model | input | batch | without with_cp MiB | with_cp MiB | with/without | timm MiB | "
              "default/timm | note |", "|---|---|---|---|---|---|---|---|---|"]
    for row in data["memory"]:
        mib = [None if row[key]["memory_bytes"] is None else row[key]["memory_bytes"] / 2 ** 20
               for key in ("without_cp", "with_cp", "timm")]
        lines.append(f"| {row['model']} | {row['size']} | {row['batch']} | {_fmt(mib[0], '.0f')} | "
                     f"{_fmt(mib[1], '.0f')} | {_fmt(row['with_cp_over_without'], '.3f')} | {_fmt(mib[2], '.0f')} | "
                     f"{_fmt(row['default_over_timm'], '.3f')} | {row['error'] or row['skipped'] or ''} |")
    check = data["correctness"]
    exact = check["default_vs_exact_fp32"]
    verdict = {True: "pass", False: "FAIL", None: "not measured"}[exact["passed"]]
    lines += ["", f"## Correctness ({check['model']}, {check['size']}, batch {check['batch']})", "",
              f"Reference: {check['reference']}. {check['error'] or check['skipped'] or ''}", "",
              f"default vs exact, fp32: max abs diff / feature scale = {_fmt(exact['rel_diff'], '.2e')} "
              f"(tolerance {exact['tolerance']:g}: {verdict}).", "",
              "| relative error vs fp32 NCHW | default | exact | timm |", "|---|---|---|---|"]
    for name, errors in list(check["amp_vs_fp32_rel_error"].items()) + [
            ("channels_last", check["channels_last_vs_nchw_rel_error"])]:
        lines.append(f"| {name} | " + " | ".join(_fmt(errors[impl], ".2e") for impl in IMPLS) + " |")
    lines += ["", "| gradients, fp32 (relative) | input | weights | worst tensor |", "|---|---|---|---|"]
    for name in ("grad_default_vs_exact_fp32", "grad_channels_last_vs_nchw_fp32"):
        grads = check[name]
        lines.append(f"| {name} | {_fmt(grads['input_rel_diff'], '.2e')} | {_fmt(grads['weights_rel_diff'], '.2e')} "
                     f"| {grads['weights_worst_param']}: {_fmt(grads['weights_worst_param_rel_diff'], '.2e')} |")
    if data["errors"]:
        lines += ["", "## Errors", ""] + [f"- {error}" for error in data["errors"]]
    return "\n".join(lines) + "\n"


# --- the sections --------------------------------------------------------------------------

@contextlib.contextmanager
def reference_numerics(device: torch.device) -> Iterator[None]:
    """TF32 off and deterministic cuDNN for the correctness figures; restored afterwards.

    Args:
        device: Only a CUDA device changes anything.

    Yields:
        Nothing; the settings hold inside the ``with`` block.
    """
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def gradients(model: nn.Module, images: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Input and weight gradients of a mean-square loss, BN in eval mode (fp32).

    Eval-mode BN: train-mode BN over a small batch divides by the spread of a
    few pooled values and amplifies float32 rounding ~1000x (see
    tests/test_performance_paths.py), which would hide what the code paths do.
    With autograd on, ours runs its plain path (the training code: on the CPU
    channels_last inside, the radix-2 autograd Function).

    Args:
        model: The backbone on the images' device, in eval mode.
        images: The input batch (not changed).

    Returns:
        The input's gradient and parameter name -> gradient.
    """
    model.zero_grad(set_to_none=True)
    images = images.detach().clone().requires_grad_(True)
    last_output(model(images)).float().square().mean().backward()
    weights = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return images.grad.detach().clone(), weights


def compare_gradients(a: Tuple[torch.Tensor, Dict[str, torch.Tensor]],
                      b: Tuple[torch.Tensor, Dict[str, torch.Tensor]]) -> Dict[str, Any]:
    """Relative differences of two :func:`gradients` results.

    Args:
        a: The gradients to check.
        b: The reference gradients (same parameter names).

    Returns:
        ``input_rel_diff``; ``weights_rel_diff`` (the worst difference over
        the largest weight gradient of all); ``weights_worst_param`` and
        ``weights_worst_param_rel_diff`` (the tensor whose difference over
        its own largest gradient, floored at 1e-6 of the largest of all, is
        worst).
    """
    per_param = {name: relative_error(a[1][name], grad)[:2] for name, grad in b[1].items()}
    largest = max(scale for _, scale in per_param.values())
    # Each tensor against its own scale, floored at 1e-6 of the largest (as the model
    # tests do): a gradient that is (almost) zero would make any rounding look huge.
    own = {name: diff / max(scale, 1e-6 * largest) for name, (diff, scale) in per_param.items()}
    worst = max(own, key=own.__getitem__)
    return {"input_rel_diff": relative_error(a[0], b[0])[2],
            "weights_rel_diff": max(diff for diff, _ in per_param.values()) / largest,
            "weights_worst_param": worst, "weights_worst_param_rel_diff": own[worst]}


def run_correctness(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    """Fill ``correctness``: default vs exact, AMP vs fp32, channels_last vs NCHW, gradients.

    Args:
        args: Options (depth, batch, size of the check).
        device: Device.
        report: The report to fill.
    """
    check = report.data["correctness"]
    size, batch = args.sizes[0], args.check_batch
    nchw, cl = MODES["fp32"], MODES["channels_last"]
    with reference_numerics(device):
        cpu_models = build_models(args.check_depth)
        randomise(cpu_models["default"], seed=1)
        randomise(cpu_models["timm"], seed=2)
        cpu_models["exact"].load_state_dict(cpu_models["default"].state_dict())
        images = make_input(batch, size, nchw, device)
        outputs: Dict[str, torch.Tensor] = {}
        grads: Dict[str, Tuple[torch.Tensor, Dict[str, torch.Tensor]]] = {}
        for impl in IMPLS:
            model = place(cpu_models[impl], nchw, device)
            with torch.no_grad():
                outputs[impl] = last_output(model(images)).float()
                for amp_name in ("amp_bf16", "amp_fp16"):
                    if autocast_refusal(MODES[amp_name], device):
                        continue  # stays None; the forward rows of that mode say why
                    with amp_context(MODES[amp_name], device):
                        amp_out = last_output(model(images))
                    check["amp_vs_fp32_rel_error"][amp_name][impl] = relative_error(amp_out, outputs[impl])[2]
            # channels_last runs other code in ours on every device (pool-first attention,
            # the radix-2 autograd Function in training): checked against NCHW here.
            model_cl = place(cpu_models[impl], cl, device)
            with torch.no_grad():
                out_cl = last_output(model_cl(images.contiguous(memory_format=torch.channels_last)))
            check["channels_last_vs_nchw_rel_error"][impl] = relative_error(out_cl, outputs[impl])[2]
            if impl != "timm":
                grads[impl] = gradients(model, images)
            if impl == "default":
                grads["channels_last"] = gradients(model_cl, images.contiguous(memory_format=torch.channels_last))
            del model, model_cl
            report.log(f"correctness {impl} done")
        # Both against exact NCHW: MMPose's arithmetic, the reference of the default path.
        check["grad_default_vs_exact_fp32"] = compare_gradients(grads["default"], grads["exact"])
        check["grad_channels_last_vs_nchw_fp32"] = compare_gradients(grads["channels_last"], grads["exact"])
        diff, scale, rel = relative_error(outputs["default"], outputs["exact"])
        check["default_vs_exact_fp32"].update(max_abs_diff=diff, feature_scale=scale, rel_diff=rel,
                                              passed=bool(rel <= EXACT_TOLERANCE))
    check["skipped"] = None


def _fill_rates(row: Dict[str, Any], results: Dict[str, Measurement]) -> None:
    """Put a row's measurements and its two ratios into the row.

    Args:
        row: A row of ``forward`` or ``train``.
        results: Implementation -> :class:`Measurement`.
    """
    for impl, measurement in results.items():
        row[impl] = rate_entry(measurement)
    row["default_over_exact"] = ratio(row["default"]["img_per_s"], row["exact"]["img_per_s"])
    row["default_over_timm"] = ratio(row["default"]["img_per_s"], row["timm"]["img_per_s"])
    row["skipped"] = None


def measure_row(row: Dict[str, Any], models: Dict[str, nn.Module], section: str, args: argparse.Namespace,
                device: torch.device, report: Report) -> Dict[str, Measurement]:
    """Time one row's three implementations, interleaved.

    A function of its own so that the row's device copies die with its frame.

    Args:
        row: The row of ``forward`` or ``train`` (its ``compile_s`` is filled here).
        models: ``default``, ``exact`` and ``timm`` on the CPU (copied, not changed).
        section: ``forward`` or ``train``.
        args: Options (repetitions, seconds, warm-up).
        device: Device.
        report: For the progress lines.

    Returns:
        Implementation -> :class:`Measurement`.
    """
    mode = MODES[row["mode"]]
    runners: Dict[str, Callable[[], int]] = {}
    for impl in IMPLS:
        model = place(models[impl], mode, device)
        images = make_input(row["batch"], row["size"], mode, device)
        if section == "train":
            runners[impl] = train_runner(model.train(), images, mode, device)
        else:
            runners[impl] = forward_runner(model, images, mode, device)
        if mode.compiled:  # the first call compiles: timed apart, not in the img/s
            started = time.perf_counter()
            runners[impl]()
            synchronize(device)
            row["compile_s"][impl] = time.perf_counter() - started
            report.log(f"{section} {row['model']} {row['size']} compile {impl}: {row['compile_s'][impl]:.1f} s")
    warmup = args.train_warmup if section == "train" else args.warmup
    return interleaved(runners, args.reps, device, warmup=warmup, min_seconds=args.min_seconds)


def budget_spent(report: Report, args: argparse.Namespace, need: float = 0.0) -> Optional[str]:
    """Why the next measurement is skipped for time, or ``None`` while the budget lasts.

    Args:
        report: The run's report (elapsed time).
        args: Options (``budget_s``).
        need: Seconds the measurement needs at least (the compile rows).

    Returns:
        The reason to record, or ``None``.
    """
    if report.elapsed() + need <= args.budget_s:
        return None
    reason = f"time budget: {report.elapsed():.0f} s of --budget-s {args.budget_s:.0f} spent"
    return reason + (f" (the compile rows need ~{need:.0f} s)" if need else "")


def error_text(error: BaseException) -> str:
    """An exception as one line for the JSON.

    Args:
        error: The exception.

    Returns:
        ``Type: first line of the message``, at most 500 characters.
    """
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def run_throughput(args: argparse.Namespace, device: torch.device, report: Report, section: str,
                   compiled: bool) -> None:
    """Time the rows of ``forward`` or ``train`` (the compiled rows apart: they run last).

    Args:
        args: Options.
        device: Device.
        report: The report to fill and save after every row.
        section: ``forward`` or ``train``.
        compiled: Run only the ``compile`` rows (``True``) or only the eager ones.
    """
    cache: Dict[int, Dict[str, nn.Module]] = {}
    for row in report.data[section]:
        if row["skipped"] != NOT_REACHED or MODES[row["mode"]].compiled != compiled:
            continue
        row["skipped"] = budget_spent(report, args, args.compile_need_s if compiled else 0.0) or NOT_REACHED
        if row["skipped"] != NOT_REACHED:
            report.save()
            continue
        if row["depth"] not in cache:  # one set of CPU models per depth, copied per row
            cache = {row["depth"]: build_models(row["depth"])}
        try:
            _fill_rates(row, measure_row(row, cache[row["depth"]], section, args, device, report))
        except Exception as error:  # noqa: BLE001  (one row failing must not lose the others)
            row["skipped"], row["error"] = None, error_text(error)
            report.data["errors"].append(f"{section} {row['model']} {row['size']} {row['mode']}: {row['error']}")
        release(device)
        figures = ", ".join(f"{impl} {_fmt(row[impl]['img_per_s'])}" for impl in IMPLS)
        report.log(f"{section} {row['model']} {row['size']} b{row['batch']} {row['mode']}: "
                   f"{row['error'] or figures + ' img/s'}")
        report.save()


def peak_step_memory(model: nn.Module, images: torch.Tensor, device: torch.device) -> Tuple[int, int]:
    """Peak allocated bytes of one fp32 training step, and the bytes resident before it.

    One untimed step first (SGD's momentum buffers, cuDNN's algorithm choice),
    then the peak statistics are reset and one step is measured.

    Args:
        model: The backbone on ``device`` (put in training mode here).
        images: The input batch.
        device: A CUDA device.

    Returns:
        ``(peak_bytes, resident_bytes)``.
    """
    step = train_runner(model.train(), images, MODES["fp32"], device)
    step()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    step()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device), resident


def run_memory(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    """Fill ``memory``: ours with and without ``with_cp``, and timm's model, one at a time.

    Args:
        args: Options (budget).
        device: A CUDA device.
        report: The report to fill and save after every row.
    """
    for row in report.data["memory"]:
        if row["skipped"] != NOT_REACHED:
            continue
        row["skipped"] = budget_spent(report, args) or NOT_REACHED
        if row["skipped"] != NOT_REACHED:
            continue
        try:
            images = make_input(row["batch"], row["size"], MODES["fp32"], device)
            variants = (("without_cp", False, "default"), ("with_cp", True, "default"), ("timm", False, "timm"))
            for key, with_cp, impl in variants:
                release(device)  # each variant alone on the device
                model = build_model(impl, row["depth"], with_cp=with_cp).to(device)
                peak, resident = peak_step_memory(model, images, device)
                row[key] = {"memory_bytes": peak, "resident_bytes": resident}
                del model
            row["with_cp_over_without"] = ratio(row["with_cp"]["memory_bytes"], row["without_cp"]["memory_bytes"])
            row["default_over_timm"] = ratio(row["without_cp"]["memory_bytes"], row["timm"]["memory_bytes"])
            row["skipped"] = None
        except Exception as error:  # noqa: BLE001
            row["skipped"], row["error"] = None, error_text(error)
            report.data["errors"].append(f"memory {row['model']}: {row['error']}")
        release(device)
        report.log(f"memory {row['model']}: without {row['without_cp']['memory_bytes']}, "
                   f"with_cp {row['with_cp']['memory_bytes']}, timm {row['timm']['memory_bytes']} bytes")
        report.save()


# --- main ------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Options; ``--smoke`` replaces the sizes, depths and repetitions with a tiny CPU run.

    Args:
        argv: Command line without the program name (``None``: ``sys.argv``).

    Returns:
        The options, with ``batch_of`` / ``train_batch_of`` (size -> batch)
        and ``compile_first`` (the ``(depth, size)`` compiled by default) added.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for {JSON_NAME} and {MD_NAME} (default: print the tables only)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, ResNeSt-50, batch 2 at 64x48, one repetition: checks the script, not the speed")
    parser.add_argument("--depths", nargs="+", type=int, choices=(50, 101), default=[50, 101])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_BATCH), help="inputs HxW")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch of every size (default: 64 at 256x192, 32 at 384x288)")
    parser.add_argument("--modes", nargs="+", choices=FORWARD_MODES, default=list(FORWARD_MODES))
    parser.add_argument("--train-modes", nargs="+", choices=[m for m in MODES if not MODES[m].compiled],
                        default=list(TRAIN_MODES))
    parser.add_argument("--memory-depths", nargs="*", type=int, choices=(50, 101), default=None,
                        help="depths of the with_cp memory rows (default: --depths)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per measurement")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="minimum length of one repetition")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed forward calls per variant (cuDNN autotuning on the first)")
    parser.add_argument("--train-warmup", type=int, default=2, help="untimed training steps per variant")
    parser.add_argument("--compile-all", action="store_true",
                        help="torch.compile rows for every depth and size (default: the first of each only)")
    parser.add_argument("--compile-need-s", type=float, default=150.0,
                        help="skip the compile rows when less than this is left of the budget")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock budget: later measurements are skipped (with the reason) past it")
    parser.add_argument("--check-depth", type=int, choices=(50, 101), default=50)
    parser.add_argument("--check-batch", type=int, default=8, help="batch of the correctness figures")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="leave torch.backends.cudnn.benchmark off for the throughput rows")
    args = parser.parse_args(argv)
    if args.smoke:
        args.depths, args.sizes, args.batch, args.check_batch = [50], ["64x48"], 2, 2
        args.reps, args.min_seconds, args.warmup, args.train_warmup = 1, 0.0, 1, 1
    for size in args.sizes:
        try:
            parse_size(size)
        except ValueError as error:
            parser.error(str(error))
    args.memory_depths = args.depths if args.memory_depths is None else args.memory_depths
    args.batch_of = {size: args.batch or DEFAULT_BATCH.get(size, 32) for size in args.sizes}
    args.train_batch_of = dict(args.batch_of)
    args.compile_first = (args.depths[0], args.sizes[0])
    return args


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise, so that ``main``'s ``finally`` records the status.

    ``timeout`` sends SIGTERM before SIGKILL; the figures are saved already.

    Args:
        signum: The signal.
        frame: The interrupted frame (unused).

    Raises:
        KeyboardInterrupt: Always.
    """
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every section and write the report.

    Args:
        argv: Command line without the program name (``None``: ``sys.argv``).

    Returns:
        The exit status: 0 when the run completed (even with failed rows or a
        failed default-vs-exact check: both are recorded), 2 without a CUDA
        device unless ``--smoke``, 1 when interrupted.
    """
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(f"device_check: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
              f"built for CUDA {torch.version.cuda}). Run it on the GPU machine, or add --smoke for the "
              "short CPU run.", file=sys.stderr, flush=True)
        return 2
    device = torch.device("cpu") if args.smoke else torch.device("cuda", 0)
    if device.type == "cuda":
        # cuDNN's algorithm search: the fastest setting for fixed input sizes (MMPose's
        # configs leave it off; --no-cudnn-benchmark measures that). Recorded in the JSON.
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    report = Report(args.out, time.perf_counter())
    report.data = prefill(args, device)
    report.save()
    env = report.data["environment"]
    report.log(f"device check on {env['device_name']}: torch {env['torch']}, CUDA {env['cuda']}, "
               f"cuDNN {env['cudnn']}, timm {env['timm']}")
    status = 0
    try:
        # Most telling first: numerics, then eager speed, memory, and the slow compile rows last.
        steps: List[Tuple[str, Callable[[], None]]] = [
            ("correctness", lambda: run_correctness(args, device, report)),
            ("forward", lambda: run_throughput(args, device, report, "forward", compiled=False)),
            ("train", lambda: run_throughput(args, device, report, "train", compiled=False)),
            ("memory", lambda: run_memory(args, device, report)),
            ("compile", lambda: run_throughput(args, device, report, "forward", compiled=True)),
        ]
        for name, step in steps:
            if name == "memory" and device.type != "cuda":
                continue  # rows prefilled as skipped
            try:
                step()
            except Exception as error:  # noqa: BLE001  (a section failing must not lose the others)
                message = f"{name}: {error_text(error)}"
                report.data["errors"].append(message)
                if name == "correctness":
                    report.data["correctness"].update(skipped=None, error=message)
                report.log(f"section failed: {message}")
            report.save()
        report.data["status"] = "complete"
    except KeyboardInterrupt as interrupt:
        report.data["status"] = f"interrupted ({interrupt}) after {report.elapsed():.0f} s"
        status = 1
    finally:
        if report.data["status"] == "running":
            report.data["status"] = f"failed after {report.elapsed():.0f} s"
        report.save()
        report.log(f"status: {report.data['status']}; "
                   f"default vs exact: {report.data['correctness']['default_vs_exact_fp32']['passed']}")
        if args.out is None:
            print(markdown(report.data), flush=True)
        else:
            report.log(f"wrote {args.out / JSON_NAME} and {args.out / MD_NAME}")
    return status


if __name__ == "__main__":
    sys.exit(main())
