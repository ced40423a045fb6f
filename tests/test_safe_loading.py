"""Weights-only reading of the core loader, on both hosts: what loads, what is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resnest_plugin.models import ResNeSt
from resnest_plugin.weights import (UnsafeCheckpointError, load_pretrained, numpy_checkpoint_globals,
                                    read_checkpoint)

from checkpoint_helpers import save


def test_reading_a_checkpoint_keeps_the_process_wide_safe_globals(tmp_path: Path) -> None:
    """torch's safe_globals context removes its entries on exit: the plugin's loader must not
    take away what a host's compat fix allowed for MMPose's own torch.load calls."""
    torch.serialization.add_safe_globals(numpy_checkpoint_globals())
    before = set(map(str, torch.serialization.get_safe_globals()))
    path = tmp_path / "c.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    read_checkpoint(path)
    assert set(map(str, torch.serialization.get_safe_globals())) == before


def test_numpy_scalars_in_meta_load(tmp_path: Path) -> None:
    """What a training run writes into ``meta`` (``best_score`` of ``save_best='AP'``): plain data."""
    meta = dict(epoch=210, hook_msgs=dict(best_score=np.float64(0.7213)),
                extra=dict(ar=np.float32(0.77), count=np.int64(3), flag=np.bool_(True)))
    path = save({"state_dict": ResNeSt(depth=50).state_dict(), "meta": meta}, tmp_path / "best.pth")
    loaded = read_checkpoint(path)
    assert type(loaded["meta"]["hook_msgs"]["best_score"]) is np.float64
    assert loaded["meta"]["extra"]["count"] == 3
    assert load_pretrained(ResNeSt(depth=50), path).is_clean


class Payload:
    """An arbitrary class: weights_only must refuse to import it."""

    def __init__(self) -> None:
        self.value = 1


def _run_payload(marker: str) -> None:
    Path(marker).touch()


class Exploit:
    """A pickle that would call ``_run_payload`` (create ``marker``) when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_run_payload, (str(self.marker),))


@pytest.mark.parametrize("kind", ["class", "reduce"])
def test_arbitrary_pickle_is_refused(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "code_was_run"
    payload = Payload() if kind == "class" else Exploit(marker)
    path = save({"state_dict": ResNeSt(depth=50).state_dict(), "meta": {"x": payload}},
                tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError) as error:
        load_pretrained(ResNeSt(depth=50), path)
    message = str(error.value)
    assert str(path) in message and "arbitrary code" in message and "re-save its state dict" in message
    assert ("Payload" if kind == "class" else "_run_payload") in message, message
    assert not marker.exists(), "unpickling ran code"
