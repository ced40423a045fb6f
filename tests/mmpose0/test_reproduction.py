"""Reproduction proof: a checkpoint in the released format evaluates identically with our config.

The released COCO checkpoints were written by MMPose's built-in TopDown +
ResNeSt. Here a model is built from MMPose's *own* shipped config
(``mmpose/.mim/configs/.../resnest50_coco_256x192.py``), given random but
non-degenerate weights (fixed seed), saved with mmcv's ``save_checkpoint``
and evaluated by MMPose's stock ``tools/test.py`` twice on the bundled mini
COCO: with MMPose's config and with ours. The per-box keypoint results and
the AP tables must agree. Then ``tools/reproduce.py`` (``make reproduce``)
is exercised offline: its comparison and exit codes, its zoo numbers, and
its errors for missing inputs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmpose.models import build_posenet
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_plugin.hosts.mmpose0.coco_files import CocoFiles, cfg_options, mini_coco
from resnest_plugin.hosts.mmpose0.model_zoo import MODEL_NAMES, zoo_models
from resnest_plugin.coco_metrics import parse_test_output
from resnest_plugin.stock_tools import mmpose_config, run_stock_script, stock_script

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_CONFIG = REPO_ROOT / "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
MMPOSE_CONFIG = "body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/resnest50_coco_256x192.py"
REPRODUCE = REPO_ROOT / "tools" / "reproduce.py"
KEYPOINT_TOLERANCE = 1e-4


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights: MMPose's init leaves BN at identity statistics and the
    head at std 0.001, which gives near-flat heatmaps whose argmax is
    meaningless; random BN statistics/affine and a unit-gain head make every
    box's heatmaps, and hence its keypoints, depend on the whole network."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
        for module in model.keypoint_head.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
    return model.eval()


@pytest.fixture(scope="module")
def released_format_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TopDown checkpoint written by MMPose's own model and config (random weights)."""
    cfg = Config.fromfile(str(mmpose_config(MMPOSE_CONFIG)))
    assert cfg.model.backbone.type == "ResNeSt"  # MMPose's built-in, not ours
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = _randomize(build_posenet(cfg.model), seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "resnest50_coco_256x192_random.pth"
    save_checkpoint(model, str(path), meta=dict(note="random weights, MMPose's own model"))
    return path


def _stock_test(config: Path, checkpoint: Path, files: CocoFiles, work_dir: Path
                ) -> Dict[str, float]:
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(config), str(checkpoint), "--work-dir", str(work_dir),
                            "--out", str(work_dir / "outputs.pkl"), "--cfg-options",
                            *cfg_options(files, splits=("test",)), "data.workers_per_gpu=0"],
                           cwd=REPO_ROOT, echo=False)
    return parse_test_output(run.output)


def _results(work_dir: Path) -> List[dict]:
    return json.loads((work_dir / "result_keypoints.json").read_text())


@pytest.mark.slow
@pytest.mark.matrix
def test_mmpose_config_and_ours_give_identical_results(released_format_checkpoint: Path,
                                                        coco_root: Path, tmp_path: Path) -> None:
    files = mini_coco(coco_root)
    theirs_ap = _stock_test(mmpose_config(MMPOSE_CONFIG), released_format_checkpoint, files,
                            tmp_path / "mmpose")
    ours_ap = _stock_test(OUR_CONFIG, released_format_checkpoint, files, tmp_path / "ours")
    theirs, ours = _results(tmp_path / "mmpose"), _results(tmp_path / "ours")

    assert len(ours) == len(theirs) > 0
    assert [(r["image_id"], r["category_id"]) for r in ours] == \
        [(r["image_id"], r["category_id"]) for r in theirs]
    kpts_ours = np.array([r["keypoints"] for r in ours])
    kpts_theirs = np.array([r["keypoints"] for r in theirs])
    max_diff = np.abs(kpts_ours - kpts_theirs).max()
    assert max_diff <= KEYPOINT_TOLERANCE, f"keypoints differ by up to {max_diff}"
    assert np.abs(np.array([r["score"] for r in ours]) -
                  np.array([r["score"] for r in theirs])).max() <= KEYPOINT_TOLERANCE
    # The weights are not degenerate: predicted joints spread over the boxes.
    xy = kpts_theirs.reshape(len(theirs), 17, 3)[:, :, :2]
    assert np.unique(xy.reshape(-1, 2).round(1), axis=0).shape[0] > 100
    assert ours_ap == theirs_ap
    print(f"\nmax |keypoint difference| = {max_diff:.3g} over {len(ours)} boxes; AP {ours_ap}")


# --- tools/reproduce.py --------------------------------------------------------------------

def test_zoo_numbers_come_from_mmpose_model_index() -> None:
    models = zoo_models()
    assert list(models) == list(MODEL_NAMES)
    assert {name: m.metrics["AP"] for name, m in models.items()} == {
        "resnest50_coco_256x192": 0.721, "resnest50_coco_384x288": 0.737,
        "resnest101_coco_256x192": 0.725, "resnest101_coco_384x288": 0.746}
    assert models["resnest50_coco_256x192"].checkpoint_name == \
        "resnest50_coco_256x192-6e65eece_20210320.pth"
    assert set(models["resnest101_coco_384x288"].metrics) == {"AP", "AP .5", "AP .75", "AR",
                                                              "AR .5"}


def _reproduce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPRODUCE), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_reproduce_names_each_missing_input_and_where_to_get_it(tmp_path: Path) -> None:
    result = _reproduce("--data-root", str(tmp_path / "coco"), "--checkpoint-dir",
                        str(tmp_path / "ckpts"))
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert str(tmp_path / "coco" / "annotations" / "person_keypoints_val2017.json") in err
    assert "COCO_val2017_detections_AP_H_56_person.json not found" in err
    assert "images.cocodataset.org/zips/val2017.zip" in err
    for model in zoo_models().values():  # every checkpoint: its path and its URL
        assert str(tmp_path / "ckpts" / model.checkpoint_name) in err
        assert model.weights_url in err


@pytest.mark.slow
def test_reproduce_exit_status_follows_the_ap_difference(released_format_checkpoint: Path,
                                                         coco_root: Path, tmp_path: Path) -> None:
    files = mini_coco(coco_root)
    # 8 boxes keep the two evaluations short.
    few = tmp_path / "few_boxes.json"
    few.write_text(json.dumps(json.loads(files.bbox_file.read_text())[::15]))
    common = ["--ann-file", str(files.ann_file), "--img-prefix", str(files.img_prefix),
              "--bbox-file", str(few), "--r50-256x192", str(released_format_checkpoint)]

    far = tmp_path / "far.json"
    far.write_text(json.dumps({"resnest50_coco_256x192": {"AP": 0.9}}))
    first = _reproduce(*common, "--expected", str(far), "--work-dir", str(tmp_path / "w1"))
    measured = json.loads((tmp_path / "w1/resnest50_coco_256x192/metrics.json").read_text())
    assert measured["AP"] < 0.5  # random weights
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    assert "resnest50_coco_256x192 |" in first.stdout and "NO (> 0.002)" in first.stdout

    exact = tmp_path / "exact.json"
    exact.write_text(json.dumps({"resnest50_coco_256x192": {"AP": measured["AP"] + 0.0015}}))
    second = _reproduce(*common, "--expected", str(exact), "--work-dir", str(tmp_path / "w2"))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "all APs within 0.002" in second.stdout
    assert (tmp_path / "w2" / "comparison.md").read_text().count("| yes |") == 1


def test_reproduce_names_a_corrupt_annotation_file_before_evaluating(coco_root: Path,
                                                                     tmp_path: Path) -> None:
    files = mini_coco(coco_root)
    corrupt = tmp_path / "person_keypoints_val2017.json"
    corrupt.write_text(files.ann_file.read_text()[:5000])
    checkpoint = tmp_path / "resnest50_coco_256x192-6e65eece_20210320.pth"
    checkpoint.write_bytes(b"never read: the data check fails first")
    result = _reproduce("--ann-file", str(corrupt), "--img-prefix", str(files.img_prefix),
                        "--bbox-file", str(files.bbox_file), "--r50-256x192", str(checkpoint))
    assert result.returncode == 2, result.stderr
    assert f"{corrupt} is not valid JSON" in result.stderr and "line" in result.stderr
