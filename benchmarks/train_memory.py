"""Peak memory of one training step, measured in a fresh process.

Run by ``benchmark_backbone.py`` once per (implementation, ``with_cp``), each
in its own interpreter so that no other model or earlier allocation is in
the picture. Prints one JSON line.

Method on CPU (there is no allocator statistics API for CPU tensors, and
tracemalloc does not see torch's allocations):

* ``MALLOC_MMAP_THRESHOLD_`` (set by the parent before this process starts)
  fixes glibc's mmap threshold at 64 KiB, so every tensor buffer larger than
  that is its own ``mmap`` and is returned to the OS on free. The resident
  set size (RSS) then follows the live tensors instead of glibc's retained
  heap. (Without it, glibc raises the threshold dynamically and keeps freed
  buffers, and RSS overstates the live memory.)
* Model, optimizer and input are built and one untimed step is run (Adam's
  state exists from then on); gradients are released (``set_to_none``).
* ``/proc/self/clear_refs`` ← ``5`` resets the kernel's RSS high-water mark
  (``VmHWM``, Linux >= 4.0); the baseline is ``VmRSS`` at that moment.
* One training step (forward, backward, Adam step) runs; the result is
  ``VmHWM - baseline``: the activations kept for backward, the gradients and
  the temporaries at the worst moment of the step.

On CUDA the same step is measured with ``torch.cuda.max_memory_allocated``
minus the allocated memory before the step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_backbone, make_training_step, parse_size, set_mode  # noqa: E402

__all__ = ["main", "measure_step_peak"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure_step_peak(impl: str, depth: int, with_cp: bool, batch: int, size: str, device: str) -> dict:
    """Build a backbone and measure the peak memory of one training step.

    Args:
        impl: Implementation name (see ``common.IMPLEMENTATIONS``).
        depth: 50 or 101.
        with_cp: Gradient checkpointing of each bottleneck.
        batch: Training batch size.
        size: Input size ``HxW``.
        device: ``cpu`` or ``cuda``.

    Returns:
        ``peak_mib`` (step peak above the resting state), ``baseline_mib``
        and the method used.
    """
    height, width = parse_size(size)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = set_mode(build_backbone(impl, depth, with_cp=with_cp).to(dev), True)
    images = torch.randn(batch, 3, height, width, device=dev)
    step, optimizer = make_training_step(model, images)
    step()  # Adam state, oneDNN primitives, allocator: all in place from here on
    optimizer.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        baseline = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        method = "torch.cuda.max_memory_allocated - allocated before the step"
    else:
        baseline = _status_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        step()
        peak = _status_kib("VmHWM") * 1024
        method = ("RSS high-water (VmHWM after clear_refs=5) - RSS before the step, "
                  f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}")
    return dict(impl=impl, depth=depth, with_cp=with_cp, batch=batch, size=size,
                peak_mib=(peak - baseline) / 2**20, baseline_mib=baseline / 2**20, method=method)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure one configuration and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="ours")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--with-cp", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", default="256x192")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    result = measure_step_peak(args.impl, args.depth, args.with_cp, args.batch, args.size, args.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
