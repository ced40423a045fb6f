"""The main job (``make demo``): train, evaluate and draw ResNeSt-50 with MMPose's stock tools.

On the bundled mini COCO (4 val2017 images, 12 annotated people,
118 detector boxes; ``tests/data/coco``), on CPU, in a few minutes:

1. train our ResNeSt-50 256x192 config from random initialisation with
   MMPose's unmodified ``tools/train.py`` (no ImageNet weights are
   reachable offline: ``model.pretrained=None``);
2. evaluate the last checkpoint with MMPose's unmodified ``tools/test.py``
   (detector boxes, flip test, COCO keypoint AP by xtcocotools);
3. plot the training loss from mmcv's JSON log;
4. draw the predicted skeletons on a bundled image with MMPose's own
   ``inference_top_down_pose_model`` + ``vis_pose_result``.

Everything lands in one folder (default ``outputs/demo``): ``ap_table.md``,
``loss_curve.png``, ``skeletons_<image>.png``, plus the tools' work dirs.

This is a smoke-scale run: it proves that the plugin's backbone trains and
evaluates inside MMPose's stock tools, not the model-zoo accuracy (0.721 AP
needs ImageNet weights and 210 epochs on COCO train2017); an AP near 0 is
the expected result. With ``--checkpoint`` (e.g. a released model) the
training is skipped and that checkpoint is evaluated and drawn instead.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from resnest_plugin.tools.ap_table import format_ap_table, parse_test_output
from resnest_plugin.tools.checkpoint_check import check_checkpoint
from resnest_plugin.tools.coco_files import CocoFiles, cfg_options, content_problems, mini_coco
from resnest_plugin.tools.skeletons import detector_boxes, draw_skeletons
from resnest_plugin.tools.stock_tools import run_stock_script, stock_script
from resnest_plugin.tools.training_log import find_log_json, plot_loss_curve, read_train_log

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
DEFAULT_IMAGE = "000000196141.jpg"  # 4 annotated people, 6 detector boxes scoring >= 0.5
# 12 training instances / 4 per batch = 3 iterations per epoch, no partial
# batch: ResNeSt's split attention has BatchNorm after global pooling, so a
# training batch of 1 fails (ResNeSt#35) and mmpose keeps the last batch.
BATCH = 4
# ~1.3-6 s per iteration of 4 crops on 2 cores (docs/STACK.md; ~4 s measured
# here when the cores were free): 15 epochs = 45 iterations is 1-4.5 min of
# training, plus ~1.5 min of flip-test evaluation.
DEFAULT_EPOCHS = 15

SMOKE_NOTE = (
    "SMOKE-SCALE RUN, NOT THE MODEL-ZOO RESULT. ResNeSt-50 256x192 trained from random "
    "initialisation (no ImageNet weights offline) for {epochs} epochs ({iters} iterations of "
    f"{BATCH} crops) on the 12 annotated people of the 4 bundled COCO val2017 images, then "
    "evaluated on the same 4 images with their 118 detector boxes and flip test. It shows that "
    "the plugin trains and evaluates inside MMPose's stock tools; an AP near 0 is expected. "
    "The published 0.721 AP needs ImageNet-pretrained weights and 210 epochs on COCO "
    "train2017 (see `make reproduce` to check released checkpoints on COCO val2017).")
CHECKPOINT_NOTE = (
    "Checkpoint {checkpoint} evaluated on the 4 bundled COCO val2017 images only "
    "(118 detector boxes, flip test). A 4-image AP is not comparable with the published "
    "COCO val2017 numbers: use `make reproduce` for those.")


def _stage(number: int, total: int, text: str) -> None:
    """Print a stage header so a long run shows where it is."""
    print(f"\n=== [{number}/{total}] {text} ===", flush=True)


def train(config: Path, data: CocoFiles, work_dir: Path, epochs: int, seed: int) -> Path:
    """Train with MMPose's stock ``tools/train.py``; return the last checkpoint.

    Args:
        config: Training config.
        data: Dataset files (the train split is used).
        work_dir: ``--work-dir`` of the run.
        epochs: Number of epochs.
        seed: Random seed.

    Returns:
        Path of the checkpoint written after the last epoch.
    """
    options = [
        "model.pretrained=None",
        *cfg_options(data, splits=("train", "val", "test")),
        f"data.samples_per_gpu={BATCH}",
        # Load in the main process: 2 cores, and errors are raised in place.
        "data.workers_per_gpu=0",
        f"total_epochs={epochs}",
        # lr 1e-3 and a 10-iteration warm-up instead of the recipe's 500:
        # a few dozen iterations must move the weights (STACK.md: lr 1e-3
        # reaches acc_pose ~0.2 in 240 iterations).
        "optimizer.lr=1e-3",
        "lr_config.warmup_iters=10",
        f"lr_config.step=[{epochs + 1}]",
        "log_config.interval=1",
        # Save the last epoch only (each checkpoint is ~0.3 GB with Adam state).
        f"checkpoint_config.interval={epochs}",
    ]
    run_stock_script(stock_script("tools/train.py"),
                     [str(config), "--work-dir", str(work_dir), "--seed", str(seed),
                      "--no-validate", "--cfg-options", *options],
                     cwd=REPO_ROOT, log_file=work_dir.parent / "train_output.txt")
    checkpoint = work_dir / f"epoch_{epochs}.pth"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"tools/train.py finished but wrote no {checkpoint}")
    return checkpoint


def evaluate(config: Path, checkpoint: Path, data: CocoFiles, work_dir: Path) -> Dict[str, float]:
    """Evaluate with MMPose's stock ``tools/test.py``; return the COCO metrics.

    Args:
        config: Test config.
        checkpoint: Weights to evaluate.
        data: Dataset files (the test split is used).
        work_dir: ``--work-dir`` (``result_keypoints.json`` is kept there).

    Returns:
        The ten COCO keypoint statistics.
    """
    options = [*cfg_options(data, splits=("test",)), "data.workers_per_gpu=0"]
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(config), str(checkpoint), "--work-dir", str(work_dir),
                            "--out", str(work_dir / "outputs.pkl"), "--cfg-options", *options],
                           cwd=REPO_ROOT, log_file=work_dir.parent / "test_output.txt")
    return parse_test_output(run.output)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "outputs" / "demo",
                        help="folder for everything the job writes (default: outputs/demo)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"training epochs, 3 iterations each (default {DEFAULT_EPOCHS})")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="skip training; evaluate and draw this checkpoint (e.g. a released "
                             "resnest50_coco_256x192-6e65eece_20210320.pth)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="pose config (default: our ResNeSt-50 256x192); pick the one "
                             "matching --checkpoint")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "tests" / "data" / "coco",
                        help="mini COCO folder (flat layout as in tests/data/coco)")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help=f"image of the data root to draw (default {DEFAULT_IMAGE})")
    parser.add_argument("--kpt-thr", type=float, default=None,
                        help="keypoint score threshold for drawing (default 0.3 with "
                             "--checkpoint, 0.0 for the smoke run so every prediction shows)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: expected a positive number of epochs")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} does not exist: expected a checkpoint "
                     "file (.pth)")
    if not args.config.is_file():
        parser.error(f"--config {args.config} does not exist")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the job; return the exit status."""
    args = parse_args(argv)
    data = mini_coco(args.data_root)
    problems = data.missing() or content_problems(data)
    if problems:
        print("error: the mini COCO is incomplete or unreadable:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = args.config.resolve()
    timings: List[str] = []
    total = 2 if args.checkpoint else 4
    stage = 0

    if args.checkpoint is None:
        iters = args.epochs * 3
        note = SMOKE_NOTE.format(epochs=args.epochs, iters=iters)
        print(note, flush=True)
        stage += 1
        _stage(stage, total, f"training {config.name} for {args.epochs} epochs ({iters} "
                             "iterations) with MMPose's tools/train.py")
        train_dir = out_dir / "train"
        shutil.rmtree(train_dir, ignore_errors=True)  # a stale log.json would be plotted
        start = time.perf_counter()
        checkpoint = train(config, data, train_dir, args.epochs, args.seed)
        timings.append(f"training ({iters} iterations): {time.perf_counter() - start:.0f} s")
        kpt_thr = 0.0 if args.kpt_thr is None else args.kpt_thr
    else:
        checkpoint = args.checkpoint.resolve()
        note = CHECKPOINT_NOTE.format(checkpoint=checkpoint)
        print(note, flush=True)
        report = check_checkpoint(config, checkpoint)
        if not report.ok:
            print(f"error: {report.summary()}\nPick the config that matches the checkpoint "
                  "with --config.", file=sys.stderr)
            return 2
        kpt_thr = 0.3 if args.kpt_thr is None else args.kpt_thr

    stage += 1
    _stage(stage, total, f"evaluating {checkpoint.name} with MMPose's tools/test.py "
                         "(118 detector boxes, flip test)")
    start = time.perf_counter()
    metrics = evaluate(config, checkpoint, data, out_dir / "test")
    timings.append(f"evaluation (tools/test.py): {time.perf_counter() - start:.0f} s")

    artefacts = []
    if args.checkpoint is None:
        stage += 1
        _stage(stage, total, "plotting the training loss from mmcv's JSON log")
        points = read_train_log(find_log_json(out_dir / "train"))
        curve = plot_loss_curve(points, out_dir / "loss_curve.png",
                                title=f"{config.stem}: smoke run from scratch, mini COCO")
        artefacts.append(f"training-loss curve: {curve}")

    stage += 1
    _stage(stage, total, f"drawing predicted skeletons on {args.image} with MMPose's visualiser")
    start = time.perf_counter()
    boxes = detector_boxes(data.bbox_file, data.ann_file, args.image, min_score=0.5)
    drawing, poses = draw_skeletons(config, checkpoint, data.img_prefix / args.image, boxes,
                                    out_dir / f"skeletons_{Path(args.image).stem}.png",
                                    kpt_thr=kpt_thr)
    timings.append(f"drawing ({len(poses)} people): {time.perf_counter() - start:.0f} s")
    artefacts.append(f"skeleton drawing ({len(poses)} detector boxes, keypoints scoring >= "
                     f"{kpt_thr}): {drawing}")

    table = format_ap_table({checkpoint.name: metrics},
                            title=f"COCO keypoint metrics of {config.stem} on the bundled mini "
                                  "COCO (tools/test.py)")
    ap_file = out_dir / "ap_table.md"
    ap_file.write_text(f"# resnest_plugin demo\n\n{note}\n\n{table}\nTimings (this machine):\n\n"
                       + "".join(f"- {t}\n" for t in timings), encoding="utf-8")
    artefacts.insert(0, f"AP table: {ap_file}")
    print("\n" + table)
    print(note)
    print("\nTimings: " + "; ".join(timings))
    print("Artefacts:\n  " + "\n  ".join(artefacts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
