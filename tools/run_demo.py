"""The main job (``make demo``): show ResNeSt-50 learning inside MMPose's stock tools.

On the bundled mini COCO (4 val2017 images, 12 annotated people, 118
detector boxes; ``tests/data/coco``), on CPU, in about ten minutes:

1. write the weights ``tools/train.py`` starts from (same config, options
   and seed) and evaluate them with MMPose's unmodified ``tools/test.py`` on
   the 12 people's ground-truth boxes: the AP before training (~0);
2. train our ResNeSt-50 config from random initialisation with the
   unmodified ``tools/train.py`` in an **overfitting regime** - all 12
   people in one batch, 128x96 input, augmentation off, lr 2e-3
   (:mod:`resnest_plugin.hosts.mmpose0.demo.regime`: every deviation from the
   recipe is a printed ``--cfg-options`` item with its reason) - evaluating
   on the same people every few iterations;
3. evaluate the last checkpoint with ``tools/test.py`` on the ground-truth
   boxes and on the 118 detector boxes with flip test;
4. plot the loss, ``acc_pose`` and the AP marks from mmcv's JSON log;
5. draw the predicted skeletons on a training image with MMPose's own
   ``inference_top_down_pose_model`` + ``vis_pose_result``, and ground truth
   beside prediction for the same people.

This is memorisation, a check of the whole pipeline (data, model, loss,
optimiser, evaluation), not generalisation: the model-zoo AP (0.721) needs
ImageNet weights and 210 epochs on COCO train2017. With ``--checkpoint``
(e.g. a released model) training is skipped and that checkpoint is
evaluated (its config unchanged: detector boxes, flip test) and drawn.

Everything lands in one folder (default ``outputs/demo``): ``metrics.json``,
``ap_table.md``, ``loss_curve.png``, ``skeletons_<image>.png``,
``ground_truth_vs_prediction_<image>.png``, and the tools' work dirs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from resnest_plugin.coco_metrics import format_ap_table, parse_test_output
from resnest_plugin.hosts.mmpose0.checkpoint_check import check_checkpoint
from resnest_plugin.hosts.mmpose0.coco_files import CocoFiles, cfg_options, content_problems, mini_coco
from resnest_plugin.hosts.mmpose0.demo.regime import TRAIN_SET, DemoRegime, Option, options_text
from resnest_plugin.hosts.mmpose0.demo.initial_checkpoint import write_initial_checkpoint
from resnest_plugin.hosts.mmpose0.demo.skeletons import (detector_boxes, draw_side_by_side, draw_skeletons,
                                            ground_truth_people)
from resnest_plugin.stock_tools import run_stock_script, stock_script
from resnest_plugin.hosts.mmpose0.demo.training_log import (find_log_json, plot_loss_curve, read_train_log,
                                               read_val_log)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Our ResNeSt-50 256x192 recipe with the training set in a RepeatDataset (see the file).
DEFAULT_CONFIG = REPO_ROOT / "configs/demo/resnest50_coco_overfit_mini.py"
#: The recipe itself, for ``--checkpoint`` evaluations.
RECIPE_CONFIG = REPO_ROOT / "configs/top_down/resnest/coco/resnest50_coco_256x192.py"
DEFAULT_IMAGE = "000000196141.jpg"  # 4 annotated (training) people, 6 detector boxes >= 0.5

OVERFIT_NOTE = (
    "OVERFITTING RUN: A PIPELINE CHECK, NOT GENERALISATION. ResNeSt-50 trained from random "
    "initialisation (no ImageNet weights offline) on the 12 annotated people of the 4 bundled "
    "COCO val2017 images until it has memorised them, then evaluated on the same people. The "
    "loss falling and the AP climbing show that data, model, loss, optimiser and evaluation "
    "work together inside MMPose's stock tools. The model-zoo AP (0.721) needs ImageNet weights "
    "and 210 epochs on COCO train2017 (see `make reproduce` for released checkpoints).")
CHECKPOINT_NOTE = (
    "Checkpoint {checkpoint} evaluated on the 4 bundled COCO val2017 images only "
    "(118 detector boxes, flip test). A 4-image AP is not comparable with the published "
    "COCO val2017 numbers: use `make reproduce` for those.")


class Stages:
    """Prints ``=== [i/N] ...`` headers with the elapsed time, so a long run shows where it is."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.start = time.perf_counter()

    def next(self, text: str) -> None:
        """Start the next stage."""
        self.number += 1
        elapsed = time.perf_counter() - self.start
        print(f"\n=== [{self.number}/{self.total}] {text} (elapsed {elapsed:.0f} s) ===",
              flush=True)


def _items(options: Sequence[Option]) -> List[str]:
    return [option.item for option in options]


def train(config: Path, data: CocoFiles, work_dir: Path, regime: DemoRegime) -> Path:
    """Train with MMPose's stock ``tools/train.py``; return the last checkpoint.

    Args:
        config: Training config.
        data: Dataset files (train and val: the same people).
        work_dir: ``--work-dir`` of the run.
        regime: The overfitting regime.

    Returns:
        Path of the checkpoint written after the last iteration.
    """
    data_items = cfg_options(data, splits=("train", "val", "test"), train_set=TRAIN_SET)
    options = [*data_items, *_items(regime.train_options())]
    run_stock_script(stock_script("tools/train.py"),
                     [str(config), "--work-dir", str(work_dir), "--seed", str(regime.seed),
                      "--cfg-options", *options],
                     cwd=REPO_ROOT, log_file=work_dir.parent / "train_output.txt")
    checkpoint = work_dir / f"epoch_{regime.epochs}.pth"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"tools/train.py finished but wrote no {checkpoint}")
    return checkpoint


def evaluate(config: Path, checkpoint: Path, data: CocoFiles, work_dir: Path,
             options: Sequence[Option]) -> Dict[str, float]:
    """Evaluate with MMPose's stock ``tools/test.py``; return the COCO metrics.

    Args:
        config: Test config.
        checkpoint: Weights to evaluate.
        data: Dataset files (the test split is used).
        work_dir: ``--work-dir`` (``result_keypoints.json`` is kept there).
        options: ``--cfg-options`` beyond the data paths.

    Returns:
        The ten COCO keypoint statistics.
    """
    items = [*cfg_options(data, splits=("test",)), *_items(options)]
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(config), str(checkpoint), "--work-dir", str(work_dir),
                            "--out", str(work_dir / "outputs.pkl"), "--cfg-options", *items],
                           cwd=REPO_ROOT, log_file=work_dir / "test_output.txt")
    return parse_test_output(run.output)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    defaults = DemoRegime()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "outputs" / "demo",
                        help="folder for everything the job writes (default: outputs/demo)")
    parser.add_argument("--iterations", "--epochs", dest="iterations", type=int,
                        default=defaults.iterations,
                        help="training iterations; the 12 people are one batch, so one "
                             f"iteration is one epoch (default {defaults.iterations})")
    parser.add_argument("--eval-interval", type=int, default=defaults.eval_interval,
                        help="evaluate on the training people every N iterations during "
                             f"training (default {defaults.eval_interval})")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help=f"Adam learning rate (default {defaults.lr:g})")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="skip training; evaluate and draw this checkpoint (e.g. a released "
                             "resnest50_coco_256x192-6e65eece_20210320.pth)")
    parser.add_argument("--config", type=Path, default=None,
                        help="pose config (default: configs/demo/resnest50_coco_overfit_mini.py "
                             "for training, our ResNeSt-50 256x192 recipe with --checkpoint); "
                             "pick the one matching --checkpoint")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "tests" / "data" / "coco",
                        help="mini COCO folder (flat layout as in tests/data/coco)")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help=f"image of the data root to draw (default {DEFAULT_IMAGE})")
    parser.add_argument("--kpt-thr", type=float, default=0.3,
                        help="keypoint score threshold for drawing (default 0.3)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"training seed (default {defaults.seed})")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} does not exist: expected a checkpoint "
                     "file (.pth)")
    if args.config is None:
        args.config = DEFAULT_CONFIG if args.checkpoint is None else RECIPE_CONFIG
    if not args.config.is_file():
        parser.error(f"--config {args.config} does not exist")
    try:
        args.regime = DemoRegime(iterations=args.iterations, lr=args.lr, seed=args.seed,
                                 eval_interval=min(args.eval_interval, args.iterations))
    except ValueError as err:
        parser.error(str(err))
    return args


def _write_outputs(out_dir: Path, note: str, rows: Dict[str, Dict[str, float]], title: str,
                   timings: Dict[str, float], metrics: Dict[str, Any]) -> str:
    table = format_ap_table(rows, title=title)
    (out_dir / "ap_table.md").write_text(
        f"# resnest_plugin demo\n\n{note}\n\n{table}\nTimings (this machine):\n\n"
        + "".join(f"- {name}: {seconds:.0f} s\n" for name, seconds in timings.items()),
        encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return table


def run_checkpoint(args: argparse.Namespace, data: CocoFiles, out_dir: Path) -> int:
    """``--checkpoint``: evaluate (detector boxes, flip test) and draw a given checkpoint."""
    config, checkpoint = args.config.resolve(), args.checkpoint.resolve()
    note = CHECKPOINT_NOTE.format(checkpoint=checkpoint)
    print(note, flush=True)
    report = check_checkpoint(config, checkpoint)
    if not report.is_clean:
        print(f"error: {report.summary()}\nPick the config that matches the checkpoint "
              "with --config.", file=sys.stderr)
        return 2
    stages = Stages(2)
    stages.next(f"evaluating {checkpoint.name} with MMPose's tools/test.py (118 detector boxes, "
                "flip test)")
    start = time.perf_counter()
    detector = evaluate(config, checkpoint, data, out_dir / "test_detector_boxes",
                        [Option("data.workers_per_gpu", "0", "load in the main process")])
    timings = {"evaluation (tools/test.py)": time.perf_counter() - start}
    stages.next(f"drawing predicted skeletons on {args.image} with MMPose's visualiser")
    boxes = detector_boxes(data.bbox_file, data.ann_file, args.image, min_score=0.5)
    drawing, poses = draw_skeletons(config, checkpoint, data.img_prefix / args.image, boxes,
                                    out_dir / f"skeletons_{Path(args.image).stem}.png",
                                    kpt_thr=args.kpt_thr)
    metrics = {"checkpoint": str(checkpoint), "config": str(config),
               "ap_detector_boxes": detector["AP"], "detector_boxes": detector,
               "eval_seconds": timings["evaluation (tools/test.py)"]}
    table = _write_outputs(out_dir, note, {checkpoint.name: detector},
                           f"COCO keypoint metrics of {config.stem} on the bundled mini COCO "
                           "(tools/test.py)", timings, metrics)
    print("\n" + table + f"\nSkeleton drawing ({len(poses)} detector boxes): {drawing}")
    return 0


def run_overfit(args: argparse.Namespace, data: CocoFiles, out_dir: Path) -> int:
    """The main job: initial AP, overfitting training, final APs, pictures, metrics.json."""
    regime: DemoRegime = args.regime
    config = args.config.resolve()
    print(OVERFIT_NOTE, flush=True)
    train_options = regime.train_options()
    print(f"\nDeviations from {config.name}, passed as --cfg-options to MMPose's stock "
          f"tools/train.py (besides the data paths):\n{options_text(train_options)}", flush=True)
    gt_options = regime.test_options(gt_boxes=True, flip_test=False)
    detector_options = regime.test_options(gt_boxes=False, flip_test=True)
    stages = Stages(6)
    timings: Dict[str, float] = {}

    stages.next("evaluating the initial weights (what tools/train.py starts from) on the "
                "training people's ground-truth boxes with tools/test.py")
    start = time.perf_counter()
    initial = write_initial_checkpoint(
        config, [*cfg_options(data, splits=("train", "val", "test"), train_set=TRAIN_SET),
                 *_items(train_options)],
        regime.seed, out_dir / "initial" / "initial_weights.pth")
    start_metrics = evaluate(config, initial, data, out_dir / "initial", gt_options)
    timings["initial evaluation"] = time.perf_counter() - start
    print(f"AP before training (ground-truth boxes): {start_metrics['AP']:.3f}", flush=True)

    stages.next(f"training {config.name} for {regime.iterations} iterations (batch of "
                f"{regime.people}, {regime.input_size[1]}x{regime.input_size[0]}) with MMPose's "
                f"tools/train.py; AP on the training people every {regime.eval_interval}")
    train_dir = out_dir / "train"
    shutil.rmtree(train_dir, ignore_errors=True)  # a stale log.json would be plotted
    start = time.perf_counter()
    checkpoint = train(config, data, train_dir, regime)
    train_key = "training (tools/train.py, incl. in-training evaluations)"
    timings[train_key] = time.perf_counter() - start
    log_json = find_log_json(train_dir)
    points = read_train_log(log_json)
    marks = [(0, start_metrics["AP"]),
             *((epoch * regime.repeat, value) for epoch, value in read_val_log(log_json))]
    iteration_seconds = sum(p.values.get("time", 0.0) for p in points)

    stages.next(f"evaluating {checkpoint.name} on the training people's ground-truth boxes "
                "with tools/test.py")
    start = time.perf_counter()
    gt_metrics = evaluate(config, checkpoint, data, out_dir / "test_gt_boxes", gt_options)
    timings["evaluation, ground-truth boxes"] = time.perf_counter() - start

    stages.next(f"evaluating {checkpoint.name} on the 118 detector boxes with flip test "
                "with tools/test.py")
    start = time.perf_counter()
    detector_metrics = evaluate(config, checkpoint, data, out_dir / "test_detector_boxes",
                                detector_options)
    timings["evaluation, detector boxes + flip test"] = time.perf_counter() - start

    stages.next("plotting loss, acc_pose and AP from mmcv's JSON log")
    curve = plot_loss_curve(points, out_dir / "loss_curve.png",
                            title=f"{config.stem}: overfitting the 12 bundled people "
                                  f"({regime.input_size[1]}x{regime.input_size[0]})",
                            ap_marks=marks, ap_label="AP, training people (GT boxes)")

    stages.next(f"drawing skeletons on the training image {args.image} with MMPose's visualiser")
    start = time.perf_counter()
    people = ground_truth_people(data.ann_file, args.image)
    image = data.img_prefix / args.image
    drawing, poses = draw_skeletons(config, checkpoint, image,
                                    [{"bbox": person["bbox"]} for person in people],
                                    out_dir / f"skeletons_{Path(args.image).stem}.png",
                                    kpt_thr=args.kpt_thr,
                                    cfg_options=_items(regime.inference_options()))
    side_by_side = draw_side_by_side(config, image, people, poses,
                                     out_dir / f"ground_truth_vs_prediction_{image.stem}.png",
                                     kpt_thr=args.kpt_thr)
    timings["drawing"] = time.perf_counter() - start

    losses = [p.values["loss"] for p in points]
    accuracies = [p.values["acc_pose"] for p in points if "acc_pose" in p.values]
    metrics = {
        "ap_gt_boxes": gt_metrics["AP"],
        "ap_gt_boxes_start": start_metrics["AP"],
        "ap_detector_boxes": detector_metrics["AP"],
        "ap_during_training": [{"iteration": step, "ap_gt_boxes": value} for step, value in marks],
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "acc_pose_first": accuracies[0] if accuracies else None,
        "acc_pose_last": accuracies[-1] if accuracies else None,
        "train_seconds": timings[train_key],
        "train_iteration_seconds": iteration_seconds,
        "eval_seconds": timings["evaluation, ground-truth boxes"]
                        + timings["evaluation, detector boxes + flip test"],
        "iterations": regime.iterations,
        "batch_size": regime.people,
        "input_size": list(regime.input_size),
        "lr": regime.lr,
        "seed": regime.seed,
        "config": str(config.relative_to(REPO_ROOT) if config.is_relative_to(REPO_ROOT)
                      else config),
        "train_cfg_options": _items(train_options),
        "test_cfg_options_gt_boxes": _items(gt_options),
        "test_cfg_options_detector_boxes": _items(detector_options),
        "gt_boxes": gt_metrics,
        "gt_boxes_start": start_metrics,
        "detector_boxes": detector_metrics,
        "timings_seconds": timings,
    }
    rows = {"before training, ground-truth boxes": start_metrics,
            f"after {regime.iterations} iterations, ground-truth boxes": gt_metrics,
            f"after {regime.iterations} iterations, 118 detector boxes + flip": detector_metrics}
    table = _write_outputs(out_dir, OVERFIT_NOTE, rows,
                           f"COCO keypoint metrics of {config.stem} (overfitting regime) on the "
                           "12 bundled training people (tools/test.py)", timings, metrics)
    print("\n" + table)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[-1] / losses[0]:.1%} of the first); "
          f"acc_pose {metrics['acc_pose_first']} -> {metrics['acc_pose_last']}")
    print(f"AP on the training people (ground-truth boxes): {start_metrics['AP']:.3f} before, "
          f"{gt_metrics['AP']:.3f} after; with the 118 detector boxes and flip test: "
          f"{detector_metrics['AP']:.3f}")
    print("Timings: " + "; ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print("Artefacts:\n  " + "\n  ".join(str(p) for p in (
        out_dir / "metrics.json", out_dir / "ap_table.md", curve, drawing, side_by_side)))
    print(OVERFIT_NOTE)
    return 0


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
    if args.checkpoint is not None:
        return run_checkpoint(args, data, out_dir)
    return run_overfit(args, data, out_dir)


if __name__ == "__main__":
    sys.exit(main())
