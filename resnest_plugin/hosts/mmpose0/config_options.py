"""Load an MMPose 0.x config with ``--cfg-options`` items, parsed exactly as the stock tools do."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

__all__ = ["load_config"]


def load_config(config: Path, cfg_options: Sequence[str] = ()) -> Any:
    """``Config.fromfile(config)`` merged with ``key=value`` items.

    The items go through mmcv's ``DictAction`` and ``merge_from_dict``, as in
    MMPose's ``tools/train.py`` / ``tools/test.py``, so ``None``, ``False``,
    lists and pipeline indices mean what they mean there.

    Args:
        config: An MMPose 0.x config file.
        cfg_options: ``key=value`` strings.

    Returns:
        The merged ``mmcv.Config``.
    """
    from mmcv import Config, DictAction

    cfg = Config.fromfile(str(config))
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument("--cfg-options", nargs="+", action=DictAction)
        cfg.merge_from_dict(parser.parse_args(["--cfg-options", *cfg_options]).cfg_options)
    return cfg
