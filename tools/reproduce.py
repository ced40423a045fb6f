"""Reproduce the model-zoo COCO val2017 APs of the released ResNeSt checkpoints (``make reproduce``).

For each model it runs MMPose's unmodified ``tools/test.py`` with *our*
config (``configs/top_down/resnest/coco/<name>.py``, backbone
``resnest_plugin.ResNeSt``) on the released checkpoint, then prints the
measured metrics beside the ones MMPose publishes (read from MMPose's own
model index, ``resnest_coco.yml``). Exit status: 0 when every AP is within
``--tolerance`` (0.002) of the published value, 1 when one is not, 2 when
an input is missing or a checkpoint does not fit its config.

You need (https://cocodataset.org/#download and MMPose's COCO data page):

    <data-root>/annotations/person_keypoints_val2017.json
    <data-root>/val2017/*.jpg
    <data-root>/person_detection_results/COCO_val2017_detections_AP_H_56_person.json

and the released checkpoints, either all in one folder (``--checkpoint-dir``,
under their release file names) or one by one (``--r50-256x192 PATH`` ...).

Example::

    make reproduce ARGS="--data-root data/coco --checkpoint-dir checkpoints"
    python tools/reproduce.py --data-root data/coco --r50-256x192 \\
        checkpoints/resnest50_coco_256x192-6e65eece_20210320.pth

A GPU takes minutes per model; on CPU the 104,125 detector boxes of
val2017 with flip test take hours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from resnest_plugin.coco_metrics import (DEFAULT_TOLERANCE, all_within, compare, format_comparison,
                                         parse_test_output)
from resnest_plugin.hosts.mmpose0.checkpoint_check import check_checkpoint
from resnest_plugin.hosts.mmpose0.coco_files import CocoFiles, cfg_options, coco_val2017, content_problems
from resnest_plugin.hosts.mmpose0.model_zoo import MODEL_NAMES, ZooModel, zoo_models
from resnest_plugin.stock_tools import run_stock_script, stock_script

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco"
# Command-line flag of each model's checkpoint.
MODEL_FLAGS = {"resnest50_coco_256x192": "r50_256x192", "resnest50_coco_384x288": "r50_384x288",
               "resnest101_coco_256x192": "r101_256x192",
               "resnest101_coco_384x288": "r101_384x288"}
EXIT_OK, EXIT_AP_DIFFERS, EXIT_BAD_INPUT = 0, 1, 2


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 all APs within tolerance, 1 an AP differs, 2 missing input.")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data" / "coco",
                        help="COCO folder in MMPose's layout (default: data/coco)")
    parser.add_argument("--ann-file", type=Path, default=None,
                        help="override <data-root>/annotations/person_keypoints_val2017.json")
    parser.add_argument("--img-prefix", type=Path, default=None,
                        help="override <data-root>/val2017")
    parser.add_argument("--bbox-file", type=Path, default=None,
                        help="override <data-root>/person_detection_results/"
                             "COCO_val2017_detections_AP_H_56_person.json")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="folder holding the released checkpoints under their release names")
    for name, flag in MODEL_FLAGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=Path, default=None,
                            help=f"checkpoint of {name}")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=None,
                        help="models to evaluate (default: those given a checkpoint path, or "
                             "all four with --checkpoint-dir)")
    parser.add_argument("--expected", type=Path, default=None,
                        help="JSON {model: {metric: value}} replacing the published numbers "
                             "(for checking this script offline)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"largest accepted |AP difference| (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "outputs" / "reproduce",
                        help="where result files and the comparison go (default "
                             "outputs/reproduce)")
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error(f"--tolerance {args.tolerance}: expected a non-negative AP difference")
    return args


def selected_models(args: argparse.Namespace) -> List[str]:
    """Return the models to evaluate: ``--models``, else those with a checkpoint path, else all."""
    if args.models:
        return list(args.models)
    given = [name for name, flag in MODEL_FLAGS.items() if getattr(args, flag) is not None]
    if given and args.checkpoint_dir is None:
        return given
    return list(MODEL_NAMES)


def checkpoint_paths(args: argparse.Namespace, models: Mapping[str, ZooModel]) -> Dict[str, Path]:
    """Return each selected model's checkpoint path (per-model flag first, then the folder)."""
    paths = {}
    for name, model in models.items():
        explicit = getattr(args, MODEL_FLAGS[name])
        if explicit is not None:
            paths[name] = explicit.resolve()
        elif args.checkpoint_dir is not None:
            paths[name] = (args.checkpoint_dir / model.checkpoint_name).resolve()
    return paths


def input_problems(data: CocoFiles, models: Mapping[str, ZooModel],
                   checkpoints: Mapping[str, Path]) -> List[str]:
    """Return one line per missing input, naming the file and where to get it."""
    problems = data.missing()
    for name, model in models.items():
        path = checkpoints.get(name)
        flag = "--" + MODEL_FLAGS[name].replace("_", "-")
        if path is None:
            problems.append(f"no checkpoint for {name}: pass {flag} PATH or --checkpoint-dir "
                            f"DIR holding {model.checkpoint_name} (download: "
                            f"{model.weights_url})")
        elif not path.is_file():
            problems.append(f"checkpoint of {name} not found: {path} (download: "
                            f"{model.weights_url})")
    return problems


def load_expected(path: Optional[Path], models: Mapping[str, ZooModel]
                  ) -> Dict[str, Mapping[str, float]]:
    """Return the reference metrics: MMPose's published ones, or ``--expected``'s."""
    if path is None:
        return {name: model.metrics for name, model in models.items()}
    with open(path, encoding="utf-8") as handle:
        expected = json.load(handle)
    if not isinstance(expected, dict):
        raise ValueError(f"--expected {path} holds a JSON {type(expected).__name__}: expected "
                         "{model: {metric: value}}")
    return expected


def evaluate(name: str, checkpoint: Path, data: CocoFiles, work_dir: Path) -> Dict[str, float]:
    """Run MMPose's ``tools/test.py`` with our config; return and save the metrics.

    Args:
        name: Model (config stem).
        checkpoint: Its checkpoint.
        data: COCO val2017 files.
        work_dir: Where ``result_keypoints.json``, the output and ``metrics.json`` go.

    Returns:
        The ten COCO keypoint statistics.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    run = run_stock_script(stock_script("tools/test.py"),
                           [str(CONFIG_DIR / f"{name}.py"), str(checkpoint),
                            "--work-dir", str(work_dir), "--out", str(work_dir / "outputs.pkl"),
                            "--cfg-options", *cfg_options(data, splits=("test",))],
                           cwd=REPO_ROOT, log_file=work_dir / "test_output.txt")
    metrics = parse_test_output(run.output)
    (work_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    print(f"{name}: AP {metrics['AP']:.4f} in {run.seconds:.0f} s", flush=True)
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the evaluations and the comparison; return the exit status."""
    args = parse_args(argv)
    models = zoo_models(selected_models(args))
    data = coco_val2017(args.data_root, ann_file=args.ann_file, img_prefix=args.img_prefix,
                        bbox_file=args.bbox_file)
    checkpoints = checkpoint_paths(args, models)
    problems = input_problems(data, models, checkpoints)
    if problems:
        print("error: cannot reproduce, inputs are missing:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = content_problems(data)
    if problems:
        print("error: cannot reproduce, inputs are unreadable:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    expected = load_expected(args.expected, models)
    for name, checkpoint in checkpoints.items():
        report = check_checkpoint(CONFIG_DIR / f"{name}.py", checkpoint)
        if not report.is_clean:
            print(f"error: {name}: {report.summary()}", file=sys.stderr)
            return EXIT_BAD_INPUT

    measured = {}
    for index, (name, checkpoint) in enumerate(checkpoints.items(), start=1):
        print(f"\n=== [{index}/{len(checkpoints)}] {name}: tools/test.py on {data.ann_file.name} "
              f"with {checkpoint.name} ===", flush=True)
        measured[name] = evaluate(name, checkpoint, data, args.work_dir.resolve() / name)

    comparisons = compare(measured, expected, args.tolerance)
    table = format_comparison(comparisons)
    verdict = ("all APs within" if all_within(comparisons) else "AP DIFFERS by more than")
    text = (f"COCO keypoint metrics, our configs + MMPose's tools/test.py vs the published "
            f"model-zoo numbers ({verdict} {args.tolerance}):\n\n{table}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "comparison.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return EXIT_OK if all_within(comparisons) else EXIT_AP_DIFFERS


if __name__ == "__main__":
    sys.exit(main())
