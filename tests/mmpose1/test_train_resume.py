"""Nothing lost on MMPose 1.x: a run killed mid-epoch resumes with ``--resume``; 1.x checkpoints load.

``test_sigkill_mid_epoch_then_resume_finishes`` (slow): MMPose 1.x's stock
``tools/train.py``, our 1.x config, the bundled mini COCO on CPU: 12
people, 2 per batch (the last partial batch dropped, so ResNeSt never sees
a BatchNorm batch of 1), 6 iterations per epoch, 3 epochs. The first run is
killed with SIGKILL in the middle of epoch 2, after epoch 1's checkpoint;
``--resume`` (auto: ``<work_dir>/last_checkpoint``) must continue from it
(epoch, iteration counter, Adam state, message hub) and finish.

The unit tests (default tier) pin the mmengine#1655 fix of
``resnest_plugin.hosts.mmpose1.compat``: a checkpoint written by a real
mmengine ``Runner`` holds ``message_hub`` (``HistoryBuffer`` objects, whose
pickled state names their statistics methods) and ``meta.dataset_meta``
(numpy arrays). A clean interpreter (``python -I``: mmengine, no
resnest_plugin) refuses it with torch's ``weights_only`` default; this
process, with the fix applied, loads it; a crafted pickle naming another
global is still refused.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import numpy as np
import pytest
import torch

import resnest_plugin.hosts.mmpose1  # noqa: F401  (applies the mmengine#1655 fix in this process)
from resnest_plugin.hosts.mmpose1 import compat as mmpose1_compat

from process_helpers import run_until_killed
from tools_helpers import (CONFIG_R50, REPO_ROOT, cfg_options_args, mini_coco_cfg_options,
                                   newest_log, run_stock_tool, stock_tool, tool_env, train_scalars)

ITERS_PER_EPOCH = 6  # 12 annotated people, batch 2, drop_last
EPOCHS = 3


def _drop_checkpoints(folder: Path) -> None:
    """ResNeSt-50 checkpoints with Adam state are ~430 MB each: do not leave them in /tmp."""
    for path in Path(folder).rglob("*.pth"):
        path.unlink()


def _last_checkpoint(work_dir: Path) -> Path:
    return Path((work_dir / "last_checkpoint").read_text().strip())


def _run_until_killed(args: List[str], work_dir: Path, ready: Callable[[str], bool],
                      timeout: float = 600) -> str:
    """Start tools/train.py, SIGKILL it once ``ready(log text)``; return the log."""
    return run_until_killed([sys.executable, str(stock_tool("train.py")), *args], work_dir,
                            lambda: newest_log(work_dir), ready, cwd=REPO_ROOT, env=tool_env(),
                            timeout=timeout, poll=0.2)


def _adam_steps(checkpoint: Dict[str, Any]) -> int:
    return int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])


@pytest.mark.slow
@pytest.mark.matrix
def test_sigkill_mid_epoch_then_resume_finishes(coco_root: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    options = mini_coco_cfg_options(coco_root, max_epochs=EPOCHS, validate=False,
                                    max_keep_ckpts=None)
    args = [str(CONFIG_R50), "--work-dir", str(work_dir), "--no-validate",
            *cfg_options_args(options)]
    try:
        killed_log = _run_until_killed(
            args, work_dir, lambda log: f"Epoch(train) [2][2/{ITERS_PER_EPOCH}]" in log)
        assert "Saving checkpoint at 1 epochs" in killed_log
        assert _last_checkpoint(work_dir) == work_dir / "epoch_1.pth"
        assert not (work_dir / "epoch_2.pth").exists(), "the kill came after epoch 2 ended"
        epoch_1_losses = [r["loss"] for r in train_scalars(work_dir) if r["epoch"] == 1]
        assert len(epoch_1_losses) == ITERS_PER_EPOCH

        resumed = run_stock_tool("train.py", [*args, "--resume"])
        # Without the mmengine#1655 fix: "Weights only load failed ... Unsupported global".
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        log = newest_log(work_dir)
        assert f"Auto resumed from the latest checkpoint {work_dir / 'epoch_1.pth'}" in log
        assert f"resumed epoch: 1, iter: {ITERS_PER_EPOCH}" in log
        assert "Epoch(train) [1][" not in log, "the resumed run repeated epoch 1"
        assert f"Epoch(train) [2][1/{ITERS_PER_EPOCH}]" in log
        assert f"Epoch(train) [{EPOCHS}][{ITERS_PER_EPOCH}/{ITERS_PER_EPOCH}]" in log
        # The resumed run's iteration counter continues at 7, not at 1.
        resumed_iters = [r["iter"] for r in train_scalars(work_dir)][-(EPOCHS - 1) * ITERS_PER_EPOCH:]
        assert resumed_iters == list(range(ITERS_PER_EPOCH + 1, EPOCHS * ITERS_PER_EPOCH + 1))

        assert _last_checkpoint(work_dir) == work_dir / f"epoch_{EPOCHS}.pth"
        final = torch.load(work_dir / f"epoch_{EPOCHS}.pth", map_location="cpu")  # weights_only
        assert (final["meta"]["epoch"], final["meta"]["iter"]) == (EPOCHS, EPOCHS * ITERS_PER_EPOCH)
        # The Adam state came through the kill: 18 steps, not 12.
        assert _adam_steps(final) == EPOCHS * ITERS_PER_EPOCH
        # The message hub came through too: epoch 1's 6 losses restored from
        # epoch_1.pth (the 2 killed iterations of epoch 2 are gone), then 12 new.
        losses = final["message_hub"]["log_scalars"]["train/loss"].data[0]
        assert len(losses) == EPOCHS * ITERS_PER_EPOCH
        # (LogProcessor logs the mean over a window of 50: the running mean here.)
        running_means = [float(np.mean(losses[:k + 1])) for k in range(ITERS_PER_EPOCH)]
        assert running_means == pytest.approx(epoch_1_losses, rel=1e-5)
        assert all(math.isfinite(v) for v in losses)
    finally:
        _drop_checkpoints(tmp_path)


# --------------------------------------------------------------------------- mmengine#1655 fix

# Runs in a clean interpreter (``python -I``): a real mmengine Runner trains a
# toy model for one epoch and saves epoch_1.pth, with a dataset whose metainfo
# holds numpy arrays like MMPose's (sigmas, joint weights); then torch.load
# with its default (weights_only=True since torch 2.6) tries to read it.
_RUNNER_SCRIPT = r"""
import json, sys
import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner

work_dir = sys.argv[1]


class Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        out = self.linear(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == "loss" else out


class Data(torch.utils.data.Dataset):
    metainfo = dict(dataset_name="toy", sigmas=np.array([0.026, 0.025], dtype=np.float32),
                    joint_weights=np.array([1.0, 1.5], dtype=np.float32), flip_indices=[1, 0],
                    num_keypoints=2)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)))


runner = Runner(model=Toy(), work_dir=work_dir, experiment_name="toy", log_level="WARNING",
                train_dataloader=dict(dataset=Data(), batch_size=2, num_workers=0,
                                      sampler=dict(type="DefaultSampler", shuffle=False)),
                optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
                train_cfg=dict(by_epoch=True, max_epochs=1),
                default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1),
                                   logger=dict(type="LoggerHook", interval=1)))
runner.train()
path = f"{work_dir}/epoch_1.pth"
try:
    torch.load(path, map_location="cpu")
    error = None
except Exception as exc:  # noqa: BLE001
    error = f"{type(exc).__name__}: {exc}"
unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
print(json.dumps(dict(path=path, error=error, unsafe=unsafe,
                      plugin=any(m.startswith("resnest_plugin") for m in sys.modules))))
"""


@pytest.fixture(scope="module")
def runner_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """epoch_1.pth of a real mmengine Runner, and what a clean interpreter made of it."""
    work_dir = tmp_path_factory.mktemp("runner")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}
    proc = subprocess.run([sys.executable, "-I", "-c", _RUNNER_SCRIPT, str(work_dir)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield json.loads(proc.stdout.strip().splitlines()[-1])


def test_runner_checkpoint_is_refused_by_a_clean_interpreter(runner_checkpoint) -> None:
    assert runner_checkpoint["plugin"] is False, "the clean interpreter imported resnest_plugin"
    error = runner_checkpoint["error"]
    assert error is not None and error.startswith("UnpicklingError: Weights only load failed"), error
    # What the file names beyond tensors and containers (torch's own list, in
    # the clean interpreter: this process already allow-lists most of them).
    # HistoryBuffer.__getstate__ pickles its statistics methods too (protocol
    # 2: ``getattr(HistoryBuffer, 'min')``, ...): the fix must cover those.
    assert set(runner_checkpoint["unsafe"]) == {
        "mmengine.logging.history_buffer.HistoryBuffer", "builtins.getattr", "numpy.ndarray",
        "numpy.dtype", "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar"}


def test_runner_checkpoint_loads_with_the_weights_only_default_thanks_to_the_fix(
        runner_checkpoint) -> None:
    from mmengine.logging import HistoryBuffer, MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint

    assert "torch-load-mmengine-checkpoints" in mmpose1_compat.applied()
    assert not any(k.startswith("TORCH_FORCE") for k in os.environ), "weights_only default changed"
    path = runner_checkpoint["path"]
    checkpoint = torch.load(path, map_location="cpu")  # torch's default: weights_only=True
    assert (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"]) == (1, 2)
    meta = checkpoint["meta"]["dataset_meta"]
    assert isinstance(meta["sigmas"], np.ndarray) and meta["sigmas"].dtype == np.float32
    np.testing.assert_array_equal(meta["joint_weights"], np.array([1.0, 1.5], dtype=np.float32))
    buffer = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) == 2
    assert buffer.mean() == pytest.approx(float(np.mean(buffer.data[0])))  # statistics restored

    # mmengine's own loader (the call site of mmengine#1655) and the message hub restore.
    loaded = _load_checkpoint(path, map_location="cpu")
    hub = MessageHub.get_instance("test_train_resume")
    hub.load_state_dict(loaded["message_hub"])
    assert hub.get_scalar("train/loss").current() == pytest.approx(float(buffer.current()))


class _RunsACommand:
    """Pickles as ``os.system(<touch marker>)``: what the allow-list must keep out."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _GetsAnAttribute:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: getattr beyond statistics methods."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, "__init__"))


@pytest.mark.parametrize("payload", ["os.system", "getattr"])
def test_crafted_pickles_with_other_globals_are_still_refused(payload: str, tmp_path: Path) -> None:
    from mmengine.runner.checkpoint import _load_checkpoint

    marker = tmp_path / "pwned"
    obj = _RunsACommand(marker) if payload == "os.system" else _GetsAnAttribute()
    path = tmp_path / "crafted.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"x": obj}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu")
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location="cpu")
    assert not marker.exists(), "the crafted pickle ran its command"
