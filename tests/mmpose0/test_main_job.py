"""The main job, ``tools/run_demo.py`` (``make demo``), end to end on a tiny schedule.

It trains with MMPose's stock ``tools/train.py`` for one epoch (3
iterations), evaluates with the stock ``tools/test.py`` and draws with
MMPose's visualiser; the artefacts must exist and be sane. To keep the
evaluation short the data root is a copy of the bundled mini COCO whose
detections file keeps the two best boxes per image.
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

from resnest_plugin.tools.ap_table import AP_KEYS

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


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, small_coco: Path):
    """One run of the main job: 1 epoch, output in a temporary folder."""
    out_dir = tmp_path_factory.mktemp("demo")
    result = _run("--epochs", "1", "--out-dir", str(out_dir), "--data-root", str(small_coco))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir, result


@pytest.mark.slow
def test_demo_says_it_is_a_smoke_run(demo_run) -> None:
    out_dir, result = demo_run
    assert "SMOKE-SCALE RUN, NOT THE MODEL-ZOO RESULT" in result.stdout
    assert "SMOKE-SCALE RUN, NOT THE MODEL-ZOO RESULT" in (out_dir / "ap_table.md").read_text()
    # progress of the stock tools is streamed, stage by stage
    assert "Epoch [1][3/3]" in result.stdout and "=== [4/4]" in result.stdout


@pytest.mark.slow
def test_demo_ap_table_has_every_coco_key(demo_run) -> None:
    out_dir, result = demo_run
    table = (out_dir / "ap_table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| run |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == list(AP_KEYS)
    row = next(line for line in table.splitlines() if line.startswith("| epoch_1.pth |"))
    values = [float(c) for c in row.strip("|").split("|")[1:]]
    assert len(values) == len(AP_KEYS) and all(0.0 <= v <= 1.0 for v in values)
    assert row in result.stdout  # the table is also printed


@pytest.mark.slow
def test_demo_loss_curve_is_a_png(demo_run) -> None:
    out_dir, _ = demo_run
    curve = cv2.imread(str(out_dir / "loss_curve.png"))
    assert curve is not None and curve.shape[0] > 200 and curve.shape[1] > 300
    # not a blank canvas: the plot has lines and text
    assert curve.std() > 10


@pytest.mark.slow
def test_demo_skeleton_drawing_is_the_image_with_drawings(demo_run, coco_root: Path) -> None:
    out_dir, _ = demo_run
    drawing = cv2.imread(str(out_dir / f"skeletons_{Path(IMAGE).stem}.png"))
    original = cv2.imread(str(coco_root / IMAGE))
    assert drawing is not None and drawing.shape == original.shape == (429, 640, 3)
    changed = np.any(drawing != original, axis=2).mean()
    assert 0.001 < changed < 0.5, f"{changed:.4f} of the pixels changed"


@pytest.mark.slow
def test_demo_with_a_checkpoint_skips_training(demo_run, small_coco: Path,
                                               tmp_path: Path) -> None:
    trained_dir, _ = demo_run
    result = _run("--checkpoint", str(trained_dir / "train" / "epoch_1.pth"),
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
    result = _run("--checkpoint", str(trained_dir / "train" / "epoch_1.pth"), "--config",
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
    from resnest_plugin.tools.stock_tools import StockToolError, run_stock_script

    script = tmp_path / "tool.py"
    script.write_text("import sys\nprint('step 1')\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    run = run_stock_script(script, [], log_file=tmp_path / "log.txt", check=False)
    assert (run.returncode, run.output) == (3, "step 1\nboom\n")
    assert (tmp_path / "log.txt").read_text() == run.output
    assert "step 1" in capsys.readouterr().out  # streamed while it ran
    with pytest.raises(StockToolError, match=r"tool.py exited with status 3(.|\n)*boom"):
        run_stock_script(script, [], echo=False)


def test_training_log_is_read_across_epochs_and_plotted(tmp_path: Path) -> None:
    from resnest_plugin.tools.training_log import find_log_json, plot_loss_curve, read_train_log

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
