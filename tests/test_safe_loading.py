"""Weights-only reading of the core loader, on both hosts."""
from __future__ import annotations

import torch


def test_reading_a_checkpoint_keeps_the_process_wide_safe_globals(tmp_path) -> None:
    """torch's safe_globals context removes its entries on exit: the plugin's loader must not
    take away what a host's compat fix allowed for MMPose's own torch.load calls."""
    from resnest_plugin.models.checkpoint_globals import numpy_checkpoint_globals
    from resnest_plugin.models.weights import read_checkpoint

    torch.serialization.add_safe_globals(numpy_checkpoint_globals())
    before = set(map(str, torch.serialization.get_safe_globals()))
    path = tmp_path / "c.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    read_checkpoint(path)
    assert set(map(str, torch.serialization.get_safe_globals())) == before
