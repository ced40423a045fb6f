"""The main job, ``tools/run_demo.py`` (``make demo``), end to end on a shortened schedule.

The full job overfits the 12 bundled people (AP >= 0.7 on them; measured
by ``make demo`` itself, numbers in the README). Here it runs a shortened
schedule with the stock ``tools/train.py`` / ``tools/test.py`` and MMPose's
visualiser: the loss must fall, ``metrics.json`` must hold every field, the
pictures must exist and be sane. To keep the detector-box evaluation short
the data root is a copy of the bundled mini COCO whose detections file keeps
the two best boxes per image.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from resnest_plugin.coco_metrics import COCO_KEYPOINT_STATS

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_DEMO = REPO_ROOT / "tools" / "run_demo.py"
IMAGE = "000000196141.jpg"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_DEMO), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_coco(tmp_path_factory: pytest.TempPathFactory, coco_root: Path) -> Path:
    """The mini COCO with the 2 highest-scoring detector boxes per image (8 boxes)."""
    root = tmp_path_factory.mktemp("coco")
    for item in coco_root.iterdir():
        shutil.copyfile(item, root / item.name)
    by_image: Dict[int, List[dict]] = defaultdict(list)
    for det in json.loads((coco_root / "test_coco_det_AP_H_56.json").read_text()):
        by_image[det["image_id"]].append(det)
    kept = [det for dets in by_image.values()
            for det in sorted(dets, key=lambda d: d["score"], reverse=True)[:2]]
    (root / "test_coco_det_AP_H_56.json").write_text(json.dumps(kept))
    return root


ITERATIONS = 12  # enough for the loss to fall measurably at full batch, lr 2e-3
EPOCHS = 6  # evaluations every 6 iterations: 2 passes over the 12 people per epoch


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, small_coco: Path):
    """One run of the main job on a shortened schedule, output in a temporary folder."""
    out_dir = tmp_path_factory.mktemp("demo")
    result = _run("--iterations", str(ITERATIONS), "--eval-interval", "6", "--out-dir",
                  str(out_dir), "--data-root", str(small_coco))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir, result


@pytest.mark.slow
def test_demo_says_what_it_is_and_prints_every_deviation(demo_run) -> None:
    out_dir, result = demo_run
    assert "OVERFITTING RUN: A PIPELINE CHECK, NOT GENERALISATION" in result.stdout
    assert "OVERFITTING RUN" in (out_dir / "ap_table.md").read_text()
    # every --cfg-options item is printed with its reason
    assert "data.train.dataset.pipeline.3.flip_prob=0" in result.stdout
    assert "# augmentation off" in result.stdout
    # progress: the stock tools' own log lines, stage headers with the elapsed time
    assert f"Epoch [{EPOCHS}][2/2]" in result.stdout
    assert "=== [6/6]" in result.stdout and "(elapsed " in result.stdout


@pytest.mark.slow
def test_demo_metrics_file_has_every_field_and_the_loss_falls(demo_run) -> None:
    out_dir, _ = demo_run
    metrics = json.loads((out_dir / "metrics.json").read_text())
    for key in ("ap_gt_boxes", "ap_gt_boxes_start", "ap_detector_boxes", "loss_first", "loss_last",
                "train_seconds", "eval_seconds", "iterations", "input_size", "config",
                "train_cfg_options", "acc_pose_first", "acc_pose_last", "ap_during_training"):
        assert key in metrics, key
    assert metrics["iterations"] == ITERATIONS and metrics["input_size"] == [96, 128]
    assert metrics["loss_last"] < 0.8 * metrics["loss_first"], metrics
    assert metrics["acc_pose_last"] > metrics["acc_pose_first"], metrics
    for key in ("ap_gt_boxes", "ap_gt_boxes_start", "ap_detector_boxes"):
        assert 0.0 <= metrics[key] <= 1.0
    assert [m["iteration"] for m in metrics["ap_during_training"]] == [0, 6, 12]
    assert "data.samples_per_gpu=12" in metrics["train_cfg_options"]
    assert metrics["train_seconds"] > 0 and metrics["eval_seconds"] > 0


@pytest.mark.slow
def test_demo_ap_table_has_every_coco_key(demo_run) -> None:
    out_dir, result = demo_run
    table = (out_dir / "ap_table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| run |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == list(COCO_KEYPOINT_STATS)
    rows = [line for line in table.splitlines() if line.startswith("| before training")
            or line.startswith(f"| after {ITERATIONS} iterations")]
    assert len(rows) == 3
    for row in rows:
        values = [float(c) for c in row.strip("|").split("|")[1:]]
        assert len(values) == len(COCO_KEYPOINT_STATS) and all(0.0 <= v <= 1.0 for v in values)
        assert row in result.stdout  # the table is also printed


@pytest.mark.slow
def test_demo_loss_curve_is_a_png(demo_run) -> None:
    out_dir, _ = demo_run
    curve = cv2.imread(str(out_dir / "loss_curve.png"))
    assert curve is not None and curve.shape[0] > 200 and curve.shape[1] > 300
    # not a blank canvas: the plot has lines and text
    assert curve.std() > 10


@pytest.mark.slow
def test_demo_pictures_are_the_training_image_with_drawings(demo_run, coco_root: Path) -> None:
    out_dir, _ = demo_run
    original = cv2.imread(str(coco_root / IMAGE))
    drawing = cv2.imread(str(out_dir / f"skeletons_{Path(IMAGE).stem}.png"))
    assert drawing is not None and drawing.shape == original.shape == (429, 640, 3)
    changed = np.any(drawing != original, axis=2).mean()
    assert 0.001 < changed < 0.5, f"{changed:.4f} of the pixels changed"
    pair = cv2.imread(str(out_dir / f"ground_truth_vs_prediction_{Path(IMAGE).stem}.png"))
    assert pair is not None and pair.shape == (429, 1280, 3)
    for half in (pair[:, :640], pair[:, 640:]):
        assert 0.001 < np.any(half != original, axis=2).mean() < 0.5


@pytest.mark.slow
def test_demo_with_a_checkpoint_skips_training(demo_run, small_coco: Path,
                                               tmp_path: Path) -> None:
    trained_dir, _ = demo_run
    result = _run("--checkpoint", str(trained_dir / "train" / f"epoch_{EPOCHS}.pth"),
                  "--out-dir", str(tmp_path), "--data-root", str(small_coco))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tools/train.py" not in result.stdout and "=== [2/2]" in result.stdout
    assert (tmp_path / "ap_table.md").is_file() and not (tmp_path / "loss_curve.png").exists()
    assert (tmp_path / f"skeletons_{Path(IMAGE).stem}.png").is_file()


@pytest.mark.slow
def test_demo_refuses_a_checkpoint_of_another_depth(demo_run, small_coco: Path,
                                                    tmp_path: Path) -> None:
    trained_dir, _ = demo_run
    r101 = REPO_ROOT / "configs/top_down/resnest/coco/resnest101_coco_256x192.py"
    result = _run("--checkpoint", str(trained_dir / "train" / f"epoch_{EPOCHS}.pth"), "--config",
                  str(r101), "--out-dir", str(tmp_path), "--data-root", str(small_coco))
    assert result.returncode == 2
    assert "missing keys" in result.stderr and "backbone.layer3.6." in result.stderr


def test_demo_rejects_a_missing_checkpoint(tmp_path: Path) -> None:
    result = _run("--checkpoint", str(tmp_path / "nope.pth"), "--out-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"--checkpoint {tmp_path / 'nope.pth'} does not exist" in result.stderr


# --- the job's building blocks, fast -------------------------------------------------------

def test_run_stock_script_keeps_output_and_names_the_failure(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    from resnest_plugin.stock_tools import StockToolError, run_stock_script

    script = tmp_path / "tool.py"
    script.write_text("import sys\nprint('step 1')\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    run = run_stock_script(script, [], log_file=tmp_path / "log.txt", check=False)
    assert (run.returncode, run.output) == (3, "step 1\nboom\n")
    assert (tmp_path / "log.txt").read_text() == run.output
    assert "step 1" in capsys.readouterr().out  # streamed while it ran
    with pytest.raises(StockToolError, match=r"tool.py exited with status 3(.|\n)*boom"):
        run_stock_script(script, [], echo=False)


def test_training_log_is_read_across_epochs_and_plotted(tmp_path: Path) -> None:
    from resnest_plugin.hosts.mmpose0.demo.training_log import find_log_json, plot_loss_curve, read_train_log

    lines = [{"env_info": "...", "seed": 0}]
    for epoch in (1, 2):
        for it in (1, 2, 3):
            lines.append({"mode": "train", "epoch": epoch, "iter": it, "lr": 1e-3,
                          "loss": 0.01 / (3 * epoch + it), "acc_pose": 0.1 * it})
    log = tmp_path / "20260101_000000.log.json"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    points = read_train_log(find_log_json(tmp_path))
    assert [p.step for p in points] == [1, 2, 3, 4, 5, 6]
    assert points[3].epoch == 2 and points[3].values["loss"] == pytest.approx(0.01 / 7)
    png = plot_loss_curve(points, tmp_path / "curve.png", title="t")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[2] == 3
    with pytest.raises(FileNotFoundError, match="no \\*.log.json"):
        find_log_json(tmp_path / "nothing")


def test_training_log_reads_evaluations_and_marks_them(tmp_path: Path) -> None:
    from resnest_plugin.hosts.mmpose0.demo.training_log import plot_loss_curve, read_train_log, read_val_log

    lines = [{"env_info": "...", "seed": 0}]
    for epoch in range(1, 7):
        lines.append({"mode": "train", "epoch": epoch, "iter": 1, "lr": 1e-3,
                      "loss": 0.01 / epoch ** 3, "acc_pose": 0.1 * epoch})
        if epoch % 3 == 0:
            lines.append({"mode": "val", "epoch": epoch, "iter": 1, "lr": 1e-3, "AP": 0.1 * epoch})
    log = tmp_path / "20260101_000000.log.json"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert read_val_log(log) == [(3, pytest.approx(0.3)), (6, pytest.approx(0.6))]
    assert read_val_log(log, metric="AR") == []
    marked = plot_loss_curve(read_train_log(log), tmp_path / "marked.png", title="t",
                             ap_marks=[(0, 0.0), *read_val_log(log)])
    plain = plot_loss_curve(read_train_log(log), tmp_path / "plain.png", title="t")
    assert not np.array_equal(cv2.imread(str(marked)), cv2.imread(str(plain)))


def test_demo_regime_options_turn_augmentation_off_in_the_shipped_config() -> None:
    """The pipeline indices of the options must name the transforms they switch off."""
    from mmcv import Config, DictAction  # noqa: F401  (DictAction: the stock tools' parser)

    from resnest_plugin.hosts.mmpose0.config_options import load_config
    from resnest_plugin.hosts.mmpose0.demo.regime import DemoRegime, options_text

    regime = DemoRegime()
    assert (regime.repeat, regime.epochs) == (10, 12)
    cfg = Config.fromfile(str(REPO_ROOT / "configs/demo/resnest50_coco_overfit_mini.py"))
    assert cfg.data.train.type == "RepeatDataset"
    types = [step["type"] for step in cfg.data.train.dataset.pipeline]
    assert types[2:6] == ["TopDownRandomShiftBboxCenter", "TopDownRandomFlip",
                          "TopDownHalfBodyTransform", "TopDownGetRandomScaleRotation"]
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    items = [option.item for option in regime.train_options()]
    cfg.merge_from_dict(parser.parse_args(["--cfg-options", *items]).cfg_options)
    pipeline = cfg.data.train.dataset.pipeline
    assert pipeline[2]["prob"] == 0 and pipeline[3]["flip_prob"] == 0
    assert pipeline[4]["prob_half_body"] == 0
    assert pipeline[5]["rot_factor"] == 0 and pipeline[5]["scale_factor"] == 0
    assert cfg.data.train.dataset.data_cfg.image_size == [96, 128]
    assert cfg.data.train.dataset.data_cfg.heatmap_size == [24, 32]
    assert cfg.data.val.data_cfg.image_size == cfg.data.test.data_cfg.image_size == [96, 128]
    assert cfg.data.samples_per_gpu == 12 and cfg.data.shuffle is False
    assert cfg.total_epochs * cfg.data.train.times == regime.iterations == 120
    assert cfg.evaluation.interval * cfg.data.train.times == regime.eval_interval
    assert cfg.model.pretrained is None and cfg.evaluation.save_best is None
    assert cfg.model.test_cfg.flip_test is False
    # MMPose's inference API (the drawings) reads the top-level data_cfg, not data.test's.
    drawing = load_config(REPO_ROOT / "configs/demo/resnest50_coco_overfit_mini.py",
                          [option.item for option in regime.inference_options()])
    assert drawing.data_cfg.image_size == [96, 128] and drawing.data_cfg.heatmap_size == [24, 32]
    text = options_text(regime.train_options())
    assert all(f"{item}  " in text or f"{item} " in text for item in items)
    assert all("# " in line for line in text.splitlines())


@pytest.mark.parametrize("kwargs,match", [
    (dict(iterations=0), "iterations 0"),
    (dict(people=1), "batch of one"),
    (dict(input_size=(100, 128)), r"input_size \(100, 128\)"),
    (dict(eval_interval=0), "eval_interval 0"),
])
def test_demo_regime_names_a_bad_value(kwargs: dict, match: str) -> None:
    from resnest_plugin.hosts.mmpose0.demo.regime import DemoRegime

    with pytest.raises(ValueError, match=match):
        DemoRegime(**kwargs)


def test_ground_truth_people_are_the_annotated_ones(coco_root: Path) -> None:
    from resnest_plugin.hosts.mmpose0.demo.skeletons import ground_truth_people

    people = ground_truth_people(coco_root / "test_coco.json", IMAGE)
    assert len(people) == 4
    for person in people:
        assert person["keypoints"].shape == (17, 3) and person["bbox"][4] == 1.0
        assert set(np.unique(person["keypoints"][:, 2])) <= {0.0, 1.0}
        assert person["keypoints"][:, 2].sum() > 0
    with pytest.raises(ValueError, match="not in"):
        ground_truth_people(coco_root / "test_coco.json", "missing.jpg")
