"""Check a top-down checkpoint against the model a config builds, before evaluating it.

MMPose 0.29's ``tools/test.py`` (and ``init_pose_model``) load weights
with mmcv's ``load_checkpoint(model, file, map_location='cpu')``, whose
default is ``strict=False``: a checkpoint of the wrong depth (say
ResNeSt-101 weights into the ResNeSt-50 config) prints one long line of
"unexpected key in source state_dict: ..." and the evaluation goes on
with the unmatched layers left at their random initialisation. This
module compares the keys and shapes first and says, in one paragraph,
which model the checkpoint holds and which keys do not fit.

Usage::

    python -m resnest_plugin.hosts.mmpose0.checkpoint_check CONFIG CHECKPOINT
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import torch

from ...weights import CheckpointMismatchError, LoadReport, compare_state_dicts

__all__ = ["CheckpointMismatchError", "LoadReport", "check_checkpoint", "main"]

#: Printed after the report of a checkpoint that does not fit.
STOCK_TOOLS_NOTE = ("MMPose's tools/test.py loads with strict=False: it would print these keys and "
                    "evaluate with the unmatched layers left random.")


def _load_state_dict(checkpoint: Path) -> Dict[str, torch.Tensor]:
    """Load a checkpoint's state dict the way mmcv's ``load_checkpoint`` does."""
    from mmcv.runner import CheckpointLoader

    loaded = CheckpointLoader.load_checkpoint(str(checkpoint), map_location="cpu")
    if not isinstance(loaded, dict):
        raise CheckpointMismatchError(f"{checkpoint} holds a {type(loaded).__name__}: expected a "
                                      "state dict or a dict with a 'state_dict' entry")
    state = loaded.get("state_dict", loaded)
    # mmcv's default revise_keys strips a DataParallel 'module.' prefix.
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def check_checkpoint(config: Path, checkpoint: Path,
                     cfg_options: Optional[Mapping[str, object]] = None) -> LoadReport:
    """Build the config's model and compare the checkpoint with it.

    Args:
        config: A top-down pose config (``custom_imports`` honoured).
        checkpoint: The checkpoint file.
        cfg_options: Overrides merged into the config first, as with ``--cfg-options``.

    Returns:
        The report (:class:`resnest_plugin.weights.LoadReport`, keys as saved,
        blocks counted under ``backbone.``); raises nothing on a mismatch
        (see :func:`main`).

    Raises:
        FileNotFoundError: If the config or the checkpoint does not exist.
    """
    from mmcv import Config
    from mmpose.models import build_posenet

    for what, path in (("config", config), ("checkpoint", checkpoint)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path} does not exist")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    cfg.model.pretrained = None  # as tools/test.py does: nothing is downloaded
    model = build_posenet(cfg.model)
    return compare_state_dicts(str(checkpoint), _load_state_dict(Path(checkpoint)),
                               model.state_dict(), prefix="backbone.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: print the report; exit 1 when the checkpoint does not fit.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="top-down pose config")
    parser.add_argument("checkpoint", type=Path, help="checkpoint to check")
    args = parser.parse_args(argv)
    report = check_checkpoint(args.config, args.checkpoint)
    print(report.summary() if report.is_clean else f"{report.summary()}\n  {STOCK_TOOLS_NOTE}")
    return 0 if report.is_clean else 1


if __name__ == "__main__":
    sys.exit(main())
