"""Smoke check of the environment: the stack imports and one compiled op runs.

For the MMPose 0.x stack (``--stack mmpose0``, the default) or the 1.x stack
(``--stack mmpose1``): imports mmpose, mmdet, ``mmcv.ops`` (and mmengine on
1.x) and ``resnest_plugin``, checks the pinned versions, runs
``mmcv.ops.nms`` on a hand-made CPU case, and checks that the plugin picked
the matching host. Exits non-zero with a message naming what is wrong.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List

#: Pinned versions per stack (the constraints files are the source; these are checked).
EXPECTED: Dict[str, Dict[str, str]] = {
    "mmpose0": {"mmcv": "1.7.0", "mmpose": "0.29.0", "mmdet": "2.28.2"},
    "mmpose1": {"mmcv": "2.1.0", "mmpose": "1.3.2", "mmdet": "3.3.0", "mmengine": "0.10.7"},
}


def _check_version(module: object, expected: str) -> None:
    found = getattr(module, "__version__", "?")
    if found != expected:
        raise RuntimeError(f"{module.__name__} {found} found, expected {expected}")  # type: ignore[attr-defined]


def run_checks(stack: str) -> List[str]:
    """Run every check of ``stack`` and return a human-readable line per result.

    Args:
        stack: ``"mmpose0"`` or ``"mmpose1"``.

    Returns:
        One line per passed check.

    Raises:
        RuntimeError: naming the first check that failed.
    """
    import importlib

    import numpy as np
    import torch

    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"numpy {np.__version__} found, expected < 2 (xtcocotools wheel ABI)")
    versions = EXPECTED[stack]
    mmcv = importlib.import_module("mmcv")
    _check_version(mmcv, versions["mmcv"])
    try:
        from mmcv.ops import nms
    except (ImportError, OSError) as err:
        raise RuntimeError(f"mmcv.ops is not compiled ({err}); rerun `make setup"
                           f"{' STACK=mmpose1' if stack == 'mmpose1' else ''}`") from err
    for name in ("mmengine", "mmdet", "mmpose"):
        if name in versions:
            _check_version(importlib.import_module(name), versions[name])
    if stack == "mmpose1":
        importlib.import_module("mmpose.models")  # imports mmcv.ops and mmdet.utils (1.3.x)
    import resnest_plugin
    from resnest_plugin.hosts import installed_host

    if installed_host() != stack:
        raise RuntimeError(f"resnest_plugin sees host {installed_host()!r}, expected {stack!r}")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"mmcv.ops.nms kept {keep.tolist()}, expected [0, 2]")
    return [
        f"torch {torch.__version__}, numpy {np.__version__}",
        ", ".join(f"{name} {version}" for name, version in versions.items()) + " (mmcv ops compiled)",
        f"resnest_plugin {resnest_plugin.__version__} (host {stack})",
        "mmcv.ops.nms on CPU: kept [0, 2] as expected",
    ]


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=sorted(EXPECTED), default="mmpose0",
                        help="which MMPose generation's stack to check (default mmpose0)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args()
    try:
        lines = run_checks(args.stack)
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
