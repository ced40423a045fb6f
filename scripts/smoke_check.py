"""Smoke check of the environment: the stack imports and one compiled op runs.

Imports mmpose, mmdet, ``mmcv.ops`` and ``resnest_plugin``, checks the pinned
versions and runs ``mmcv.ops.nms`` on a hand-made CPU case. Exits non-zero
with a message naming what is wrong.
"""
from __future__ import annotations

import argparse
import sys


def run_checks() -> list[str]:
    """Run every check and return a human-readable line per result.

    Returns:
        One line per passed check.

    Raises:
        RuntimeError: naming the first check that failed.
    """
    lines = []
    import numpy as np
    import torch

    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"numpy {np.__version__} found, expected < 2 (xtcocotools wheel ABI)")
    import mmcv

    if mmcv.__version__ != "1.7.0":
        raise RuntimeError(f"mmcv {mmcv.__version__} found, expected 1.7.0")
    try:
        from mmcv.ops import nms
    except (ImportError, OSError) as err:
        raise RuntimeError(f"mmcv.ops is not compiled ({err}); rerun `make setup`") from err
    import mmdet
    import mmpose

    if mmpose.__version__ != "0.29.0":
        raise RuntimeError(f"mmpose {mmpose.__version__} found, expected 0.29.0")
    import resnest_plugin

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"mmcv.ops.nms kept {keep.tolist()}, expected [0, 2]")
    lines.append(f"torch {torch.__version__}, numpy {np.__version__}")
    lines.append(f"mmcv-full {mmcv.__version__} (ops compiled), mmpose {mmpose.__version__}, "
                 f"mmdet {mmdet.__version__}")
    lines.append(f"resnest_plugin {resnest_plugin.__version__}")
    lines.append("mmcv.ops.nms on CPU: kept [0, 2] as expected")
    return lines


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args()
    try:
        lines = run_checks()
    except Exception as err:  # noqa: BLE001 - any failure means a broken environment
        if not args.quiet:
            print(f"[smoke] FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        for line in lines:
            print(f"[smoke] ok: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
