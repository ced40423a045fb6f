"""``python -m resnest_plugin.weights convert IN OUT [--source S]``: convert a checkpoint once.

Reads ``IN`` safely (weights-only), converts it to our backbone names and
saves the bare state dict to ``OUT``, which then loads strictly into
``resnest_plugin.ResNeSt`` and MMPose's built-in ``ResNeSt``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import torch

from .formats import FORMATS, convert, extract_state_dict
from .layout import depth_of, stage_blocks, stem_width
from .safe_loading import read_checkpoint
from .sources import HOST_FREE_SOURCES, CheckpointSources, resolve_checkpoint

__all__ = ["installed_host_sources", "main"]

PROG = "python -m resnest_plugin.weights"


def installed_host_sources() -> CheckpointSources:
    """The sources of the backbone class ``import resnest_plugin`` picked for the installed MMPose.

    The command line has no backbone to take them from, so it asks the
    package, whose choice depends only on the installed ``mmpose``
    (:func:`resnest_plugin.hosts.installed_host`), never on import order.
    Without MMPose: :data:`~resnest_plugin.weights.HOST_FREE_SOURCES`.
    """
    import resnest_plugin

    return getattr(resnest_plugin.ResNeSt, "checkpoint_sources", HOST_FREE_SOURCES)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status 0 (errors raise, naming the bad input).
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("convert", help="convert a ResNeSt checkpoint to MMPose 0.x backbone names")
    command.add_argument("input", help="checkpoint path, http(s) URL or mmcls://NAME")
    command.add_argument("output", help="where to save the converted state dict")
    command.add_argument("--source", choices=FORMATS, default=None, help="key format (default: detect)")
    args = parser.parse_args(argv)

    path = resolve_checkpoint(args.input, installed_host_sources())
    converted = convert(extract_state_dict(read_checkpoint(path), args.input), args.source)
    blocks = stage_blocks(list(converted.state))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted.state, args.output)
    stem = stem_width({key: tuple(value.shape) for key, value in converted.state.items()})
    print(f"{args.input} ({converted.source} names) -> {args.output}: {len(converted.state)} tensors, "
          f"depth {depth_of(blocks)} (blocks per stage {blocks}), stem_channels {stem}, "
          f"{len(converted.ignored)} non-backbone keys dropped")
    return 0
