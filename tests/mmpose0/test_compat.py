"""resnest_plugin.hosts.mmpose0.compat: each version-gated fix of mmcv 1.7 on modern torch, with its failure.

Every fix is shown twice: the unpatched code fails the way the cited issue
reports, and the patched code works. Oracles: mmcv's own save_checkpoint /
load_checkpoint / EpochBasedRunner.resume / MMDataParallel /
MMDistributedDataParallel, run on CPU.
"""
from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List

import mmcv
import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmcv.parallel import DataContainer, MMDataParallel, MMDistributedDataParallel
from mmcv.parallel import _functions as mmcv_functions
from mmcv.runner import EpochBasedRunner, load_checkpoint, save_checkpoint
from torch import nn
from torch.nn.parallel import _functions as torch_functions

from resnest_plugin.hosts.mmpose0 import compat

ALL_PATCHES = ("numpy-scalars-in-checkpoints", "scatter-stream-device", "ddp-replicated-tensor-module")


class _TinyModel(nn.Module):
    """A model with mmcv's train_step API, enough for EpochBasedRunner."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def train_step(self, data: Dict[str, Any], optimizer: Any = None) -> Dict[str, Any]:
        loss = self(data["x"]).sum()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data["x"]))


class _Payload:
    """A class no allow-list names: must never be unpickled by torch.load."""


def _write_mmcv_checkpoint(path: Path, meta: Dict[str, Any]) -> _TinyModel:
    """Save a real mmcv checkpoint (model, Adam state, meta) the way EpochBasedRunner does."""
    model = _TinyModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    model.train_step(dict(x=torch.ones(2, 3)))["loss"].backward()
    optimizer.step()
    save_checkpoint(model, str(path), optimizer=optimizer, meta=meta)
    return model


def _eval_hook_meta() -> Dict[str, Any]:
    """``meta`` as EpochBasedRunner + EvalHook(save_best='AP') write it after epoch 3."""
    return dict(
        epoch=3, iter=18, seed=np.int64(42),
        hook_msgs=dict(last_ckpt="epoch_3.pth", best_ckpt="best_AP_epoch_2.pth",
                       best_score=np.float64(0.725)),
        extra=dict(f32=np.float32(1.5), i32=np.int32(7), flag=np.bool_(True)))


@pytest.fixture
def without_allow_list() -> Iterator[None]:
    """Temporarily remove every user allow-listed global (the unpatched torch.load)."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


@pytest.fixture
def gloo_group(tmp_path: Path) -> Iterator[None]:
    """A one-process gloo process group (what DDP needs to be constructed on CPU)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


# --- the patch table -------------------------------------------------------------------------

def test_all_patches_are_active_on_the_pinned_stack() -> None:
    # torch 2.14 / mmcv-full 1.7.0 (requirements/constraints.txt) have all three bugs.
    assert torch.__version__.startswith("2.14") and mmcv.__version__ == "1.7.0"
    assert compat.applied() == ALL_PATCHES


def test_apply_is_idempotent() -> None:
    stream_fn = mmcv_functions._get_stream
    ddp_forward = MMDistributedDataParallel._run_ddp_forward
    n_safe = len(torch.serialization.get_safe_globals())
    assert compat.apply() == ALL_PATCHES
    assert compat.apply() == ALL_PATCHES
    assert mmcv_functions._get_stream is stream_fn
    assert MMDistributedDataParallel._run_ddp_forward is ddp_forward
    assert len(torch.serialization.get_safe_globals()) == n_safe
    # The replaced function is the patch's, not a wrapper of a wrapper.
    assert compat.original("scatter-stream-device") is torch_functions._get_stream


def test_reapplying_after_state_loss_does_not_wrap_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # What importlib.reload(resnest_plugin.hosts.mmpose0.compat) does: forget what was applied.
    stream_fn = mmcv_functions._get_stream
    ddp_forward = MMDistributedDataParallel._run_ddp_forward
    monkeypatch.setattr(compat, "_applied", [])
    assert compat.apply() == ALL_PATCHES
    assert mmcv_functions._get_stream is stream_fn
    assert MMDistributedDataParallel._run_ddp_forward is ddp_forward
    assert compat.original("scatter-stream-device") is torch_functions._get_stream


def test_every_patch_cites_its_upstream_issue() -> None:
    for patch in compat.PATCHES:
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+", patch.issue), patch


@pytest.mark.parametrize("torch_version, mmcv_version, expected", [
    ("2.14.1+cu130", "1.7.0", set(ALL_PATCHES)),
    ("2.5.1", "1.7.0", {"scatter-stream-device", "ddp-replicated-tensor-module"}),
    ("2.6.0.dev20241112", "1.7.2", {"numpy-scalars-in-checkpoints", "ddp-replicated-tensor-module"}),
    ("2.0.1", "1.7.1", {"ddp-replicated-tensor-module"}),
    ("1.13.1", "1.7.0", set()),
])
def test_version_gates(monkeypatch: pytest.MonkeyPatch, torch_version: str, mmcv_version: str,
                       expected: set) -> None:
    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(mmcv, "__version__", mmcv_version)
    needed = {patch.name for patch in compat.PATCHES if patch.needed()}
    assert needed == expected, f"torch {torch_version}, mmcv {mmcv_version}"


def test_original_names_the_bad_patch_name() -> None:
    with pytest.raises(KeyError, match="no-such-patch"):
        compat.original("no-such-patch")


# --- a. numpy scalars in checkpoint meta (open-mmlab/mmengine#1655) -----------------------------

def test_checkpoint_with_numpy_meta_needs_numpy_globals(tmp_path: Path, without_allow_list: None) -> None:
    path = tmp_path / "epoch_3.pth"
    _write_mmcv_checkpoint(path, _eval_hook_meta())
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert "numpy.core.multiarray.scalar" in unsafe, unsafe
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        load_checkpoint(_TinyModel(), str(path))


def test_load_checkpoint_reads_numpy_meta(tmp_path: Path) -> None:
    path = tmp_path / "epoch_3.pth"
    saved = _write_mmcv_checkpoint(path, _eval_hook_meta())
    model = _TinyModel()
    checkpoint = load_checkpoint(model, str(path))
    best = checkpoint["meta"]["hook_msgs"]["best_score"]
    assert isinstance(best, np.float64) and best == np.float64(0.725)
    assert checkpoint["meta"]["extra"] == dict(f32=1.5, i32=7, flag=True)
    assert checkpoint["meta"]["seed"] == 42
    torch.testing.assert_close(model.state_dict(), saved.state_dict())


def test_runner_resume_reads_numpy_meta(tmp_path: Path) -> None:
    path = tmp_path / "epoch_3.pth"
    saved = _write_mmcv_checkpoint(path, _eval_hook_meta())
    model = _TinyModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    runner = EpochBasedRunner(model, optimizer=optimizer, work_dir=str(tmp_path / "work"),
                              logger=logging.getLogger("test_compat"), max_epochs=5)
    runner.resume(str(path))
    assert (runner.epoch, runner.iter) == (3, 18)
    assert runner.meta["hook_msgs"]["best_score"] == pytest.approx(0.725)
    assert optimizer.state_dict()["state"][0]["step"] == 1  # Adam state restored
    torch.testing.assert_close(model.state_dict(), saved.state_dict())


@pytest.mark.parametrize("payload", [_Payload(), np.array([1, 2], dtype=object), np.zeros(3)],
                         ids=["arbitrary-class", "object-array", "ndarray"])
def test_other_pickled_objects_are_still_refused(tmp_path: Path, payload: Any) -> None:
    path = tmp_path / "evil.pth"
    _write_mmcv_checkpoint(path, dict(epoch=1, iter=1, payload=payload))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(_TinyModel(), str(path))


# --- b. MMDataParallel scatter: int device id vs torch.device (open-mmlab/mmdetection#10720) ---

def test_unpatched_get_stream_fails_on_int_device() -> None:
    # The call mmcv 1.7.0 makes on a GPU machine, reproduced on CPU.
    with pytest.raises(AttributeError, match="'int' object has no attribute 'type'"):
        compat.original("scatter-stream-device")(0)


def test_scatter_passes_torch_device_to_get_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[Any] = []

    def fake_get_stream(device: Any) -> None:
        calls.append(device)
        return None

    # No GPU here: record the stream requests, skip the CUDA copies themselves.
    monkeypatch.setattr(torch_functions, "_get_stream", fake_get_stream)
    monkeypatch.setattr(mmcv_functions, "scatter", lambda input, devices, streams: [input])
    monkeypatch.setattr(mmcv_functions, "synchronize_stream", lambda output, devices, streams: None)
    outputs = mmcv_functions.Scatter.forward([0, 1], torch.zeros(4))
    assert calls == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert all(isinstance(device, torch.device) for device in calls)
    assert len(outputs) == 1


def test_get_stream_wrapper_keeps_torch_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[Any] = []
    monkeypatch.setattr(torch_functions, "_get_stream", lambda device: calls.append(device))
    mmcv_functions._get_stream(torch.device("cuda", 3))
    assert calls == [torch.device("cuda", 3)]


def test_real_get_stream_through_patch_on_cpu() -> None:
    # torch's own _get_stream, reached through the patch: no stream without CUDA.
    if torch.cuda.is_available():
        assert mmcv_functions._get_stream(0) is not None
    else:
        assert mmcv_functions._get_stream(0) is None


def test_mmdataparallel_cpu_train_step_unaffected() -> None:
    # The CPU path of tools/train.py: MMDataParallel without device ids.
    model = MMDataParallel(_TinyModel())
    data = dict(x=DataContainer(torch.ones(2, 3), stack=True))
    out = model.train_step(data, None)
    assert out["num_samples"] == 2 and torch.isfinite(out["loss"])


# --- c. MMDistributedDataParallel._run_ddp_forward (microsoft/Cream#179) -----------------------

def test_unpatched_ddp_forward_fails(gloo_group: None) -> None:
    ddp = MMDistributedDataParallel(_TinyModel())
    with pytest.raises(AttributeError, match="_use_replicated_tensor_module"):
        compat.original("ddp-replicated-tensor-module")(ddp, torch.ones(2, 3))


def test_mmddp_forward_runs(gloo_group: None) -> None:
    torch.manual_seed(0)
    module = _TinyModel()
    ddp = MMDistributedDataParallel(module)
    x = torch.randn(4, 3)
    out = ddp(x)
    torch.testing.assert_close(out, module(x))
    out.sum().backward()  # the reducer is prepared by DDP.forward
    assert module.fc.weight.grad is not None
