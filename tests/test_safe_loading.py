"""Weights-only reading of the core loader, on both hosts and every supported torch (1.13 to 2.15).

The same crafted files on every torch: what MMPose training writes (numpy scalars in
``meta``, under numpy 1's and numpy 2's module paths) loads; a pickle that needs any
other global is refused with :class:`UnsafeCheckpointError` naming it, in the zip and
the legacy format. torch >= 2.5 reads them with its scoped allow-list, older torch
through the restricted pickle module; both routes run here on every torch. No conftest
fixtures: the support-matrix rows run this file with ``pytest --noconftest``.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from resnest_plugin import torch_compat
from resnest_plugin.models import ResNeSt
from resnest_plugin.weights import (UnsafeCheckpointError, load_pretrained, numpy_checkpoint_globals,
                                    read_checkpoint)
from resnest_plugin.weights import safe_loading

NUMPY_SCALAR_PATHS = {"numpy1": b"cnumpy.core.multiarray\nscalar\n", "numpy2": b"cnumpy._core.multiarray\nscalar\n"}
Meta = Dict[str, Any]


def _meta() -> Meta:
    """What a training run writes into ``meta`` (``best_score`` of ``save_best='AP'``): plain data."""
    return dict(epoch=210, hook_msgs=dict(best_score=np.float64(0.7213)),
                extra=dict(ar=np.float32(0.77), count=np.int64(3), flag=np.bool_(True)))


def _save(obj: object, path: Path, zip_format: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def _rewrite_pickle(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in the checkpoint's pickle (``data.pkl`` of a zip file, or the legacy file)."""
    if not zipfile.is_zipfile(path):
        path.write_bytes(path.read_bytes().replace(old, new))
        return
    with zipfile.ZipFile(path) as source:
        records = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name, payload in records:
            target.writestr(name, payload.replace(old, new) if name.endswith("data.pkl") else payload)


def _pickle_bytes(path: Path) -> bytes:
    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    with zipfile.ZipFile(path) as source:
        return b"".join(source.read(name) for name in source.namelist() if name.endswith("data.pkl"))


@pytest.fixture(params=["torch-route", "restricted-route", "torch-readers-route"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way :func:`read_checkpoint` can read, forced where this torch would take another.

    ``torch-route``: what this torch takes by itself (its scoped allow-list on >= 2.5, the
    restricted module before); ``restricted-route``: the restricted pickle module through
    ``torch.load``; ``torch-readers-route``: through torch's zip/legacy readers (torch 1.13's).
    """
    if request.param != "torch-route":
        monkeypatch.setattr(torch_compat, "safe_globals_context", lambda entries: None)
    if request.param == "restricted-route":
        monkeypatch.setattr(torch_compat, "_load_honours", [torch_compat._probe_load_honours_pickle_module()])
    if request.param == "torch-readers-route":
        monkeypatch.setattr(torch_compat, "_load_honours", [False])
    return request.param


def test_reading_a_checkpoint_keeps_the_process_wide_safe_globals(tmp_path: Path) -> None:
    """torch's safe_globals context removes its entries on exit: the plugin's loader must not
    take away what a host's compat fix allowed for MMPose's own torch.load calls."""
    path = _save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "c.pth", zip_format=True)
    if not hasattr(torch.serialization, "get_safe_globals"):  # torch < 2.5: nothing process-wide to keep
        assert torch_compat.safe_globals_context(numpy_checkpoint_globals()) is None
        assert read_checkpoint(path)["state_dict"]["w"].shape == (1,)
        assert safe_loading._restricted, "torch < 2.5 reads through the restricted pickle module"
        return
    assert torch_compat.add_safe_globals(numpy_checkpoint_globals())
    before = set(map(str, torch.serialization.get_safe_globals()))
    assert read_checkpoint(path)["state_dict"]["w"].shape == (1,)
    assert set(map(str, torch.serialization.get_safe_globals())) == before


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("written_as", ["this-numpy", "numpy1", "numpy2"])
def test_numpy_scalars_in_meta_load(written_as: str, zip_format: bool, route: str, tmp_path: Path) -> None:
    """numpy 1 pickles the scalar constructor as numpy.core.multiarray.scalar, numpy 2 as
    numpy._core.multiarray.scalar: files of either load under either."""
    path = _save({"state_dict": {"w": torch.ones(2, 3)}, "meta": _meta()}, tmp_path / "best.pth", zip_format)
    if written_as != "this-numpy":
        for old in NUMPY_SCALAR_PATHS.values():
            _rewrite_pickle(path, old, NUMPY_SCALAR_PATHS[written_as])
        assert NUMPY_SCALAR_PATHS[written_as] in _pickle_bytes(path)
    loaded = read_checkpoint(path)
    best = loaded["meta"]["hook_msgs"]["best_score"]
    assert type(best) is np.float64 and best == np.float64(0.7213)
    assert loaded["meta"]["extra"]["count"] == 3 and bool(loaded["meta"]["extra"]["flag"]) is True
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2, 3))


def test_model_checkpoint_with_meta_loads_into_the_model(route: str, tmp_path: Path) -> None:
    path = _save({"state_dict": ResNeSt(depth=50).state_dict(), "meta": _meta()}, tmp_path / "best.pth", True)
    assert load_pretrained(ResNeSt(depth=50), str(path)).is_clean


class Payload:
    """An arbitrary class: weights-only reading must refuse to import it."""

    def __init__(self) -> None:
        self.value = 1


def _run_payload(marker: str) -> None:
    Path(marker).touch()


class Exploit:
    """A pickle that would call ``_run_payload`` (create ``marker``) when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (_run_payload, (str(self.marker),))


class SystemCall:
    """A pickle that would run ``os.system("touch marker")`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


PAYLOADS: Dict[str, Callable[[Path], Any]] = {
    "class": lambda marker: Payload(),
    "reduce": Exploit,
    "os.system": SystemCall,
}
REFUSED_NAME = {"class": "Payload", "reduce": "_run_payload", "os.system": "system"}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_arbitrary_pickle_is_refused(kind: str, zip_format: bool, route: str, tmp_path: Path) -> None:
    marker = tmp_path / "code_was_run"
    path = _save({"state_dict": {"w": torch.zeros(1)}, "meta": {"x": PAYLOADS[kind](marker)}},
                 tmp_path / "evil.pth", zip_format)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_pretrained(ResNeSt(depth=50), str(path))
    message = str(error.value)
    assert str(path) in message and "arbitrary code" in message and "re-save its state dict" in message
    assert REFUSED_NAME[kind] in message, message
    assert not marker.exists(), "unpickling ran code"


@pytest.mark.parametrize("torch_says, named", [
    ("Weights only load failed. ... Unsupported global: GLOBAL posix.system was not an allowed global "
     "by default.", "posix.system"),  # torch >= 2.4
    ("Weights only load failed. ... WeightsUnpickler error: Unsupported class test_x.Payload", "test_x.Payload"),
    ("Can only build Tensor, parameter or dict objects, but got <class 'test_x.Payload'>", "test_x.Payload"),
    ("Unsupported global: GLOBAL posix.system is not allow-listed", "posix.system"),  # restricted module
    ("Weights only load failed. ... Unsupported operand 110", ""),  # a damaged file, no global
])
def test_refusals_are_read_in_every_torch_wording(torch_says: str, named: str) -> None:
    assert safe_loading._refused_globals(torch_says) == named


def test_a_file_that_is_no_checkpoint_is_a_value_error(route: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as error:
        read_checkpoint(garbage)
    assert not isinstance(error.value, UnsafeCheckpointError) and str(garbage) in str(error.value)
