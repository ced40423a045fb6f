"""Shared pieces of the benchmarks: machine facts, models, MAC counting, timing.

Every benchmark here compares implementations *side by side in one process*,
with interleaved repetitions (A B C, B C A, C A B, ...), and reports the
median and the spread (min..max) of the per-repetition throughput. On a
shared 2-core machine the absolute numbers drift with the load; interleaving
makes the drift hit every implementation alike, so the ratios stay meaningful.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "IMPLEMENTATIONS", "Measurement", "build_backbone", "set_mode", "count_macs", "interleaved",
    "machine_summary", "make_training_step", "parse_size", "synchronize",
]

# Input sizes are written HxW, as in the config names (256x192 = 256 high, 192 wide).
SIZES = ("256x192", "384x288")


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``"HxW"`` into ``(H, W)``.

    Args:
        text: Size such as ``"256x192"``.

    Returns:
        ``(height, width)``.

    Raises:
        ValueError: If ``text`` is not two positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"size {text!r} is not of the form HxW, e.g. 256x192")
    return int(parts[0]), int(parts[1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
    return ",".join(flag for flag in wanted if f" {flag}" in flags)


def machine_summary(device: torch.device) -> str:
    """One markdown paragraph describing where the numbers were measured.

    Args:
        device: Device the benchmark runs on.

    Returns:
        Text naming the CPU (model, logical CPUs, ISA), torch's thread count,
        the library versions, the GPU when used, and the load average.
    """
    load = os.getloadavg()
    lines = [
        f"- CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs; {_cpu_flags()}); "
        f"torch threads: {torch.get_num_threads()}",
        f"- torch {torch.__version__} (oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}), "
        f"Python {platform.python_version()}",
        f"- load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)",
    ]
    if device.type == "cuda":
        lines.insert(1, f"- GPU: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return "\n".join(lines)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timing is meaningful."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the implementations ------------------------------------------------------

class _Features(nn.Module):
    """Backbone-only wrapper: returns the last stage's feature map."""

    def __init__(self, body: nn.Module, call: Optional[str] = None) -> None:
        super().__init__()
        self.body = body
        self.call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.call is None:
            return self.body(x)
        return getattr(self.body, self.call)(x)


class _LastFeature(nn.Module):
    """MMPose 1.x backbones return a tuple even for one stage: time the same tensor as on 0.x."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.body(x)
        return out[-1] if isinstance(out, tuple) else out


def _host_output(model: nn.Module) -> nn.Module:
    from resnest_plugin.hosts import installed_host

    return _LastFeature(model) if installed_host() == "mmpose1" else model


def _ours(depth: int, with_cp: bool = False) -> nn.Module:
    import resnest_plugin

    # The class the installed host registers as resnest_plugin.ResNeSt.
    # stem_channels=64: the width of MMPose's built-in and of the released COCO
    # checkpoints, so both implementations compute the same network.
    return _host_output(resnest_plugin.ResNeSt(depth=depth, stem_channels=64, with_cp=with_cp))


def _mmpose(depth: int, with_cp: bool = False) -> nn.Module:
    from mmpose.models.backbones import ResNeSt

    return _host_output(ResNeSt(depth=depth, with_cp=with_cp))


def _timm(depth: int, with_cp: bool = False) -> nn.Module:
    import timm

    if with_cp:
        raise ValueError("timm's resnest has no with_cp option")
    # resnest50d / resnest101e are timm's names of the paper's models (ResNeSt-101
    # has a 128-wide stem there). No weights: the files are not reachable offline.
    name = {50: "resnest50d", 101: "resnest101e"}[depth]
    return _Features(timm.create_model(name, pretrained=False), call="forward_features")


def _torchvision(depth: int, with_cp: bool = False) -> nn.Module:
    import torchvision

    if with_cp:
        raise ValueError("torchvision's ResNet has no with_cp option")
    model = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth](weights=None)
    return nn.Sequential(*list(model.children())[:-2])  # drop avgpool + fc


IMPLEMENTATIONS: Dict[str, Callable[..., nn.Module]] = {
    "ours": _ours,
    "mmpose": _mmpose,
    "timm": _timm,
    "torchvision": _torchvision,
}

DISPLAY_NAMES = {
    "ours": "resnest_plugin ResNeSt-{d}",
    "mmpose": "MMPose {mmpose} built-in ResNeSt-{d}",
    "timm": "timm {timm}",
    "torchvision": "torchvision ResNet-{d}",
}


def display_name(impl: str, depth: int) -> str:
    """Human-readable name of an implementation at a depth."""
    from importlib import metadata

    timm_name = {50: "resnest50d", 101: "resnest101e"}.get(depth, "?")
    return DISPLAY_NAMES[impl].format(d=depth, timm=timm_name, mmpose=metadata.version("mmpose"))


def set_mode(model: nn.Module, training: bool) -> nn.Module:
    """``model.train(training)``, returning the model.

    MMPose 0.29's ResNet-family ``train()`` returns ``None`` instead of the
    module, so ``model.eval()`` cannot be chained for the built-in ResNeSt.
    """
    model.train(training)
    return model


def build_backbone(impl: str, depth: int, with_cp: bool = False) -> nn.Module:
    """Build one implementation's backbone with random weights.

    Args:
        impl: One of :data:`IMPLEMENTATIONS`.
        depth: 50 or 101.
        with_cp: Gradient checkpointing (``ours`` and ``mmpose`` only).

    Returns:
        The backbone, returning the last stage's features.

    Raises:
        ValueError: For an unknown implementation or depth.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; expected one of {sorted(IMPLEMENTATIONS)}")
    if depth not in (50, 101):
        raise ValueError(f"depth {depth} is not benchmarked; expected 50 or 101")
    return IMPLEMENTATIONS[impl](depth, with_cp=with_cp)


# --- MACs -----------------------------------------------------------------------

def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass, per image.

    Counts convolutions (incl. transposed) and linear layers with forward
    hooks, from the actual output shapes: one MAC per weight per output
    position. Pointwise work (BN, ReLU, pooling, softmax) is not counted,
    as in the usual GFLOPs tables (which count 1 MAC as 1 "FLOP").

    Args:
        model: The model, in eval mode.
        input_shape: ``(B, C, H, W)`` of the input.

    Returns:
        MACs per image.
    """
    total = [0]

    def conv_hook(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        weight = module.weight
        if isinstance(module, nn.ConvTranspose2d):
            # Each input position scatters into out_channels/groups x k x k outputs.
            total[0] += inputs[0].numel() * weight.shape[1] * weight.shape[2] * weight.shape[3]
        else:
            total[0] += output.numel() * weight[0].numel()

    def linear_hook(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        total[0] += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        # Autograd on: ResNeSt's fused inference path (taken only without
        # autograd) calls no conv module, so no hook would fire.
        with torch.enable_grad():
            model(torch.zeros(*input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total[0] // input_shape[0]


def make_training_step(model: nn.Module, images: torch.Tensor) -> Tuple[Callable[[], int], torch.optim.Optimizer]:
    """One training step of a backbone as the benchmarks time it.

    Forward, mean-square loss on the last output, backward, Adam step;
    gradients released (``set_to_none``) at the start of each step.

    Args:
        model: The backbone, in training mode.
        images: The input batch.

    Returns:
        The step (returns the number of images it processed) and its optimizer.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> int:
        optimizer.zero_grad(set_to_none=True)
        out = model(images)
        out = out[-1] if isinstance(out, (tuple, list)) else out
        out.float().square().mean().backward()
        optimizer.step()
        return images.shape[0]

    return step, optimizer


# --- timing -------------------------------------------------------------------------

@dataclass
class Measurement:
    """Throughputs of one variant over the repetitions (items per second)."""

    name: str
    rates: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median throughput."""
        return statistics.median(self.rates)

    @property
    def spread(self) -> str:
        """``min..max`` of the throughputs, as text."""
        return f"{min(self.rates):.2f}..{max(self.rates):.2f}"

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent."""
        return 100.0 * (max(self.rates) - min(self.rates)) / self.median


def interleaved(
    runners: Dict[str, Callable[[], int]],
    reps: int,
    device: torch.device,
    warmup: int = 1,
    min_seconds: float = 0.0,
) -> Dict[str, Measurement]:
    """Time several variants with interleaved, rotated repetitions.

    Args:
        runners: Name -> callable doing one unit of work and returning the
            number of items (images) it processed.
        reps: Repetitions per variant.
        device: Device (for synchronisation).
        warmup: Untimed calls per variant before timing (oneDNN primitive
            creation, allocator warm-up, compilation).
        min_seconds: Each timed repetition repeats the callable until at
            least this long has passed (0: one call).

    Returns:
        Name -> :class:`Measurement`.
    """
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    synchronize(device)
    results = {name: Measurement(name) for name in names}
    for rep in range(reps):
        # Rotate the order so that no variant always runs first / after the same one.
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            items = 0
            start = time.perf_counter()
            while True:
                items += runners[name]()
                synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            results[name].rates.append(items / elapsed)
    return results
