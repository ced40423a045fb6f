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

    python -m resnest_plugin.tools.checkpoint_check CONFIG CHECKPOINT
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..models.weights import CheckpointMismatchError, depth_of, stage_blocks

__all__ = ["CheckpointMismatchError", "CheckpointReport", "stage_blocks", "compare_state_dicts",
           "check_checkpoint", "main"]



@dataclass(frozen=True)
class CheckpointReport:
    """Keys of a checkpoint vs the keys of the model it is meant for.

    Attributes:
        checkpoint: The checkpoint file.
        missing: Model keys absent from the checkpoint (BN
            ``num_batches_tracked`` counters ignored, as mmcv does).
        unexpected: Checkpoint keys the model does not have.
        shape_mismatch: ``(key, checkpoint shape, model shape)`` for keys
            present in both with different shapes.
        checkpoint_blocks: Bottlenecks per backbone stage in the checkpoint.
        model_blocks: Bottlenecks per backbone stage in the model.
    """

    checkpoint: Path
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    checkpoint_blocks: Tuple[int, ...] = ()
    model_blocks: Tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every key matches in name and shape."""
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self, max_keys: int = 8) -> str:
        """Return a readable account of the mismatch ("... matches" when there is none).

        Args:
            max_keys: How many keys of each kind to quote.
        """
        if self.ok:
            return f"{self.checkpoint}: all keys and shapes match the model."
        lines = [f"checkpoint {self.checkpoint} does not fit the model built from the config:"]
        if self.checkpoint_blocks != self.model_blocks:
            lines.append(f"  backbone blocks per stage: checkpoint {self.checkpoint_blocks} "
                         f"({_depth_name(self.checkpoint_blocks)}), config "
                         f"{self.model_blocks} ({_depth_name(self.model_blocks)})")
        for title, keys in (("unexpected keys (in the checkpoint, not in the model)",
                             self.unexpected),
                            ("missing keys (in the model, not in the checkpoint)", self.missing)):
            if keys:
                more = f", ... ({len(keys) - max_keys} more)" if len(keys) > max_keys else ""
                lines.append(f"  {len(keys)} {title}: {', '.join(keys[:max_keys])}{more}")
        if self.shape_mismatch:
            quoted = [f"{k} {tuple(a)} vs model {tuple(b)}"
                      for k, a, b in self.shape_mismatch[:max_keys]]
            more = (f", ... ({len(self.shape_mismatch) - max_keys} more)"
                    if len(self.shape_mismatch) > max_keys else "")
            lines.append(f"  {len(self.shape_mismatch)} shape mismatches: "
                         f"{'; '.join(quoted)}{more}")
        lines.append("  MMPose's tools/test.py loads with strict=False: it would print these "
                     "keys and evaluate with the unmatched layers left random.")
        return "\n".join(lines)


def _depth_name(blocks: Sequence[int]) -> str:
    """Name the ResNeSt depth whose stage table is ``blocks``, if any."""
    depth = depth_of(blocks)
    if depth is not None:
        return f"ResNeSt-{depth}"
    return "no ResNeSt depth" if blocks else "no ResNet-style backbone"


def compare_state_dicts(checkpoint: Path, ckpt_state: Mapping[str, torch.Tensor],
                        model_state: Mapping[str, torch.Tensor]) -> CheckpointReport:
    """Compare a checkpoint's state dict with a model's.

    Args:
        checkpoint: Name of the checkpoint, for the report.
        ckpt_state: The checkpoint's state dict (``module.`` prefixes already removed).
        model_state: ``model.state_dict()``.

    Returns:
        The report.
    """
    # mmcv's load_state_dict ignores missing BN counters; so do we.
    missing = [k for k in model_state if k not in ckpt_state and "num_batches_tracked" not in k]
    unexpected = [k for k in ckpt_state if k not in model_state]
    mismatch = [(k, tuple(ckpt_state[k].shape), tuple(model_state[k].shape))
                for k in ckpt_state
                if k in model_state and tuple(ckpt_state[k].shape) != tuple(model_state[k].shape)]
    return CheckpointReport(Path(checkpoint), missing, unexpected, mismatch,
                            stage_blocks(list(ckpt_state), "backbone."),
                            stage_blocks(list(model_state), "backbone."))


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
                     cfg_options: Optional[Mapping[str, object]] = None) -> CheckpointReport:
    """Build the config's model and compare the checkpoint with it.

    Args:
        config: A top-down pose config (``custom_imports`` honoured).
        checkpoint: The checkpoint file.
        cfg_options: Overrides merged into the config first, as with ``--cfg-options``.

    Returns:
        The report; raises nothing on a mismatch (see :func:`main`).

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
    return compare_state_dicts(Path(checkpoint), _load_state_dict(Path(checkpoint)),
                               model.state_dict())


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
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
