"""Write the weights a ``tools/train.py`` run starts from, for an evaluation "before training".

MMPose 0.29's ``tools/train.py`` seeds the RNGs (mmcv's ``set_random_seed(seed)``),
then builds the model from the config (``build_posenet``; ``TopDown``
initialises its weights in its constructor). Doing the same here with the
same config, ``--cfg-options`` and seed gives the run's starting point as a
checkpoint that the stock ``tools/test.py`` can evaluate: the AP at step 0
beside the AP at the end.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config_options import load_config

__all__ = ["write_initial_checkpoint"]


def write_initial_checkpoint(config: Path, cfg_options: Sequence[str], seed: int,
                             out_file: Path) -> Path:
    """Build the model as ``tools/train.py`` does and save its initial weights.

    Args:
        config: The training config.
        cfg_options: The ``--cfg-options`` items of the training run.
        seed: The training run's ``--seed``.
        out_file: Where to write the checkpoint (mmcv format, ``state_dict`` + ``meta``).

    Returns:
        ``out_file``.
    """
    from mmcv.runner import save_checkpoint, set_random_seed
    from mmpose.models import build_posenet

    cfg = load_config(config, cfg_options)
    set_random_seed(seed, deterministic=False)
    model = build_posenet(cfg.model)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, str(out_file), meta=dict(seed=seed, config=cfg.pretty_text, epoch=0))
    return out_file
