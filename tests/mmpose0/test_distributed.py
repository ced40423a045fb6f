"""The distributed code path on CPU: gloo, 2 processes, our backbone under (MM)DDP.

Oracle: a single process on the joint batch. With BatchNorm frozen
(``norm_eval=True``: running statistics, the same for every split of the
batch) the gradient DDP averages over 2 ranks, each on half the batch, is
the gradient of the joint-batch mean loss.

MMPose's own distributed training (``tools/dist_train.sh``, ``torchrun``)
is GPU-only: mmcv's ``init_dist('pytorch')`` calls
``torch.cuda.set_device(rank % torch.cuda.device_count())`` and
``train_model`` moves the model to CUDA; so is SyncBN (torch's
``SyncBatchNorm`` refuses CPU tensors). What can run here is the launcher
hand-off (``--local-rank`` vs ``LOCAL_RANK``, open-mmlab/mim#122) and the
config switch to SyncBN.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmcv import Config
from mmpose.models import build_backbone, build_posenet
from torch import nn

import resnest_plugin  # noqa: F401  (registers resnest_plugin.ResNeSt, applies compat)
from tools_helpers import REPO_ROOT, stock_tool

CONFIG = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco" / "resnest50_coco_256x192.py"
WORLD_SIZE = 2
PER_RANK = 2


def _batch() -> Dict[str, torch.Tensor]:
    """The joint batch: 4 images and heatmap targets at 96x64 (HxW)."""
    generator = torch.Generator().manual_seed(1)
    n = WORLD_SIZE * PER_RANK
    return dict(img=torch.randn(n, 3, 96, 64, generator=generator),
                target=torch.rand(n, 17, 24, 16, generator=generator),
                target_weight=torch.ones(n, 17, 1))


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    model = build_backbone(dict(type="resnest_plugin.ResNeSt", depth=50, norm_eval=True))
    model.train()  # norm_eval keeps every BatchNorm in eval mode
    return model


def _pose_model() -> nn.Module:
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained = None
    cfg.model.backbone.norm_eval = True
    torch.manual_seed(0)
    model = build_posenet(cfg.model)
    model.train()
    # The head's deconv BatchNorms too: batch statistics of a half batch are
    # not those of the joint batch (SyncBN would make them so, on GPUs).
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def _grads(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: gradients of DDP(backbone) and MMDDP(TopDown).train_step on its half batch."""
    from mmcv.parallel import MMDistributedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE)
    try:
        part = {k: v[rank * PER_RANK:(rank + 1) * PER_RANK] for k, v in _batch().items()}
        backbone = _backbone()
        ddp = DistributedDataParallel(backbone)
        _mean(ddp(part["img"])).backward()

        pose = _pose_model()
        mmddp = MMDistributedDataParallel(pose)
        outputs = mmddp.train_step(dict(part, img_metas=[{}] * PER_RANK), None)
        outputs["loss"].backward()
        torch.save(dict(backbone=_grads(backbone), pose=_grads(pose),
                        loss=outputs["loss"].detach()), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _mean(features: object) -> torch.Tensor:
    """Mean of the backbone output (a tensor, or a tuple of stage outputs)."""
    if isinstance(features, (tuple, list)):
        return sum(f.mean() for f in features)
    return features.mean()


def _assert_grads_close(actual: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor],
                        where: str) -> None:
    """Every gradient equal up to float32 summation order (relative to its own scale)."""
    assert actual.keys() == expected.keys(), f"{where}: different parameters with gradients"
    for name, grad in expected.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(actual[name], grad, rtol=1e-3, atol=1e-3 * scale + 1e-12,
                                   msg=lambda m, n=name: f"{where}, {n}: {m}")


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_joint_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]

    batch = _batch()
    backbone = _backbone()
    _mean(backbone(batch["img"])).backward()
    reference = _grads(backbone)
    for rank, result in enumerate(ranks):
        _assert_grads_close(result["backbone"], reference, f"backbone, rank {rank}")

    pose = _pose_model()
    losses = pose(**batch, img_metas=[{}] * len(batch["img"]), return_loss=True)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    reference = _grads(pose)
    # JointsMSELoss is a mean over the batch: mean of the 2 half-batch losses == joint loss.
    joint_loss = torch.stack([r["loss"] for r in ranks]).mean()
    torch.testing.assert_close(joint_loss, sum(v for k, v in losses.items() if "loss" in k).detach())
    for rank, result in enumerate(ranks):
        _assert_grads_close(result["pose"], reference, f"pose, rank {rank}")


def test_syncbn_override_builds_checkpoint_compatible_model() -> None:
    """``--cfg-options model.backbone.norm_cfg.type=SyncBN``: same keys, SyncBatchNorm layers."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained = None
    plain = build_posenet(cfg.model)
    cfg.merge_from_dict({"model.backbone.norm_cfg.type": "SyncBN"})
    synced = build_posenet(cfg.model)
    norms = [m for m in synced.backbone.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms), {type(m) for m in norms}
    assert {k: v.shape for k, v in synced.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}


def _launch(launcher: list, tmp_path: Path) -> subprocess.CompletedProcess:
    """Start MMPose's stock train.py with one rank through ``launcher`` (a launcher module)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [*launcher, "--nproc_per_node=1", "--master_port=29533", str(stock_tool("train.py")),
           str(CONFIG), "--launcher", "pytorch", *_train_args(tmp_path)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def _train_args(tmp_path: Path) -> list:
    return ["--work-dir", str(tmp_path / "work"),
            "--cfg-options", "model.pretrained=None", "dist_params.backend=gloo"]


def _assert_reached_init_dist(proc: subprocess.CompletedProcess) -> None:
    """train.py parsed its arguments, loaded the config and started the process group.

    Without GPUs it then stops inside mmcv's GPU-only ``init_dist``
    (``rank % torch.cuda.device_count()``); with one it gets as far as
    reading the (absent) full COCO annotations.
    """
    assert "unrecognized arguments" not in proc.stderr, proc.stderr[-2000:]
    if torch.cuda.is_available():
        assert "person_keypoints_train2017.json" in proc.stderr, proc.stderr[-2000:]
    else:
        assert "init_dist(args.launcher, **cfg.dist_params)" in proc.stderr, proc.stderr[-2000:]
        assert "ZeroDivisionError" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_torch_distributed_launch_breaks_stock_train(tmp_path: Path) -> None:
    # What MMPose's tools/dist_train.sh and `mim train --launcher pytorch` run (mim#122).
    proc = _launch([sys.executable, "-m", "torch.distributed.launch"], tmp_path)
    assert proc.returncode != 0
    assert "unrecognized arguments: --local-rank=0" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_hands_over_to_stock_train(tmp_path: Path) -> None:
    """torchrun sets LOCAL_RANK and passes no flag."""
    _assert_reached_init_dist(_launch([sys.executable, "-m", "torch.distributed.run"], tmp_path))


@pytest.mark.slow
def test_shipped_dist_train_sh_hands_over_to_stock_train(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, PORT="29534")
    proc = subprocess.run(["bash", str(REPO_ROOT / "tools" / "dist_train.sh"), str(CONFIG), "1",
                           *_train_args(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    _assert_reached_init_dist(proc)


def test_dist_scripts_name_their_usage() -> None:
    for script, usage in (("dist_train.sh", "CONFIG GPUS"), ("dist_test.sh", "CONFIG CHECKPOINT GPUS")):
        proc = subprocess.run(["bash", str(REPO_ROOT / "tools" / script)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and usage in proc.stderr, (script, proc.stderr)
