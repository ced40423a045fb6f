"""Smoke check of the environment: the stack imports and one compiled op runs.

For one row of the support matrix (``--stack mmpose0``, the default, or
``mmpose0-legacy``, ``mmpose1``, ``mmpose1-torch2.1``, ``mmpose1-newest``):
imports mmpose, mmdet, ``mmcv.ops`` (and mmengine on 1.x) and
``resnest_plugin``, checks the versions the row's constraints file pins
(torch, numpy, the OpenMMLab packages), runs ``mmcv.ops.nms`` on a hand-made
CPU case, and checks that the plugin picked the matching host. Exits non-zero
with a message naming what is wrong.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
#: Packages whose installed version must equal the row's pin.
CHECKED = ("torch", "numpy", "mmcv", "mmcv-full", "mmengine", "mmdet", "mmpose")


def constraints_file(stack: str) -> Path:
    """The constraints file of a row: ``requirements/`` for mmpose0, ``requirements/<stack>/`` otherwise."""
    return REPO / "requirements" / ("" if stack == "mmpose0" else stack) / "constraints.txt"


def pinned_versions(constraints: Path) -> Dict[str, str]:
    """The ``name==version`` pins of :data:`CHECKED` in a constraints file."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", constraints.read_text(), flags=re.M))
    return {name: pins[name] for name in CHECKED if name in pins}


def _check_version(name: str, found: str, expected: str) -> None:
    # torch's PyPI wheels may carry a local tag (2.1.2+cu121): compare the release only.
    if found.split("+")[0] != expected:
        raise RuntimeError(f"{name} {found} found, expected {expected}")


def run_checks(stack: str, constraints: Optional[Path] = None) -> List[str]:
    """Run every check of ``stack`` and return a human-readable line per result.

    Args:
        stack: A row of the support matrix (``mmpose0``, ``mmpose1-newest``, ...).
        constraints: The row's constraints file (default: :func:`constraints_file`).

    Returns:
        One line per passed check.

    Raises:
        RuntimeError: naming the first check that failed.
    """
    import importlib

    import numpy as np
    import torch

    versions = pinned_versions(constraints or constraints_file(stack))
    generation = "mmpose1" if "mmengine" in versions else "mmpose0"
    mmcv_dist = "mmcv" if generation == "mmpose1" else "mmcv-full"
    _check_version("torch", torch.__version__, versions["torch"])
    _check_version("numpy", np.__version__, versions["numpy"])
    mmcv = importlib.import_module("mmcv")
    _check_version(mmcv_dist, mmcv.__version__, versions[mmcv_dist])
    try:
        from mmcv.ops import nms
    except (ImportError, OSError) as err:
        raise RuntimeError(f"mmcv.ops is not compiled ({err}); rerun `make setup"
                           f"{'' if stack == 'mmpose0' else ' STACK=' + stack}`") from err
    for name in ("mmengine", "mmdet", "mmpose"):
        if name in versions:
            _check_version(name, importlib.import_module(name).__version__, versions[name])
    if generation == "mmpose1":
        importlib.import_module("mmpose.models")  # imports mmcv.ops and mmdet.utils (1.3.x)
    import resnest_plugin
    from resnest_plugin.hosts import installed_host

    if installed_host() != generation:
        raise RuntimeError(f"resnest_plugin sees host {installed_host()!r}, expected {generation!r}")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"mmcv.ops.nms kept {keep.tolist()}, expected [0, 2]")
    return [
        f"torch {torch.__version__}, numpy {np.__version__}",
        ", ".join(f"{name} {version}" for name, version in versions.items()) + " (mmcv ops compiled)",
        f"resnest_plugin {resnest_plugin.__version__} (host {generation}, row {stack})",
        "mmcv.ops.nms on CPU: kept [0, 2] as expected",
    ]


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="mmpose0",
                        help="which row of the support matrix to check (default mmpose0)")
    parser.add_argument("--constraints", type=Path, default=None,
                        help="the row's constraints file (default: requirements/[<stack>/]constraints.txt)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args()
    try:
        constraints = args.constraints or constraints_file(args.stack)
        if not constraints.is_file():
            raise RuntimeError(f"no constraints file {constraints} for STACK={args.stack}")
        lines = run_checks(args.stack, constraints)
    except Exception as err:  # noqa: BLE001 - any failure means a broken environment
        if not args.quiet:
            print(f"[smoke] FAILED ({args.stack}): {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        for line in lines:
            print(f"[smoke] ok: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
