"""Deploy benchmark: the exported ONNX file (fp32, INT8) against the PyTorch paths, and INT8 accuracy.

Speed (CPU, one process, interleaved repetitions as in ``benchmarks/common.py``),
for each workload (ResNeSt-50/101 at 256x192 and 384x288, the shipped
configs of the installed MMPose generation) and batch size:

* ``mmpose``: MMPose's built-in ``ResNeSt`` + the config's head, PyTorch, eval, no autograd;
* ``ours``: the config's model as MMPose builds it (our registered backbone, its
  default fused inference path), PyTorch;
* ``ort_fp32`` / ``ort_int8``: the exported file (keypoints variant, flip test
  off: the same one network pass as the PyTorch rows, plus the in-graph
  decoding) in onnxruntime, fp32 and ``--int8``;
* ``runner_fp32`` / ``runner_int8`` at batch 1: ``PoseEstimator`` end to end
  (one box of a bundled image: crop, network, decode, back to image pixels).

Weights are the configs' initial ones (speed does not depend on them); the INT8
file is calibrated on the bundled people as ``export --int8`` does.

Accuracy (``--accuracy-config`` + ``--accuracy-checkpoint``): the fp32 and
INT8 files of a trained checkpoint, flip test as the config says, evaluated by
the runner on the bundled mini COCO with ground-truth and detector boxes: AP
of each, mean OKS of the INT8 keypoints against the fp32 ones, pixel error
per keypoint.

Results: ``benchmarks/results/deploy_<stack>.json`` and ``.md``. Usage::

    .venv/bin/python benchmarks/deploy_benchmark.py --accuracy-config CONFIG --accuracy-checkpoint CKPT
    .venv/bin/python benchmarks/deploy_benchmark.py --smoke --out-dir /tmp/bench
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, machine_summary  # noqa: E402

from resnest_plugin.deploy import contract  # noqa: E402
from resnest_plugin.deploy.calibration import BUNDLED_COCO  # noqa: E402
from resnest_plugin.deploy.export import export_onnx, exportable_model  # noqa: E402
from resnest_plugin.deploy.graph import ExportableModel, HeatmapNetwork  # noqa: E402
from resnest_plugin.deploy.quantize import quantize_export  # noqa: E402
from resnest_plugin.hosts import installed_host  # noqa: E402

PATHS = ("mmpose", "ours", "ort_fp32", "ort_int8")
RUNNER_IMAGE = "000000196141.jpg"


def config_for(host: str, depth: int, size: str) -> Path:
    """The shipped config of ``depth`` at ``size`` (``"HxW"``) for the installed host."""
    if host == "mmpose0":
        return REPO_ROOT / "configs/top_down/resnest/coco" / f"resnest{depth}_coco_{size}.py"
    (path,) = sorted((REPO_ROOT / "configs/body_2d_keypoint/topdown_heatmap/coco").glob(
        f"td-hm_resnest{depth}_*_coco-{size}.py"))
    return path


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _crops(batch: int, size: Tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(batch)
    return rng.integers(0, 256, (batch, size[1], size[0], 3), dtype=np.uint8)


def export_pair(model: ExportableModel, folder: Path, config: Path, flip: Optional[bool]) -> Tuple[Path, Path]:
    """fp32 and INT8 keypoints files of ``model`` in ``folder``."""
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    export_onnx(model, fp32, variant="keypoints", flip_test=flip, config=config)
    quantize_export(fp32, int8)
    return fp32, int8


def bench_workload(model: ExportableModel, mmpose_network: torch.nn.Module, files: Tuple[Path, Path],
                   batches: Sequence[int], args: argparse.Namespace) -> Dict[str, Any]:
    """Images/s of every path at every batch size, and of the runner at batch 1."""
    from resnest_plugin.deploy.runtime import PoseEstimator
    import cv2

    sessions = {"ort_fp32": _session(files[0], args.threads), "ort_int8": _session(files[1], args.threads)}
    graph = model.pose_graph("keypoints", flip_test=False)
    out: Dict[str, Any] = {}
    for batch in batches:
        crops = _crops(batch, model.input_size)
        with torch.no_grad():
            images = graph.preprocess(torch.from_numpy(crops))
        runners = {
            "mmpose": lambda: (mmpose_network(images), batch)[1],
            "ours": lambda: (model.network(images), batch)[1],
        }
        for name, session in sessions.items():
            runners[name] = (lambda s=session: (s.run(None, {contract.INPUT_NAME: crops}), batch)[1])
        with torch.no_grad():
            measured = interleaved(runners, args.reps, torch.device("cpu"), warmup=1,
                                   min_seconds=args.min_seconds)
        out[f"batch{batch}"] = {name: {"median": m.median, "spread": m.spread} for name, m in measured.items()}
    image = cv2.imread(str(BUNDLED_COCO / RUNNER_IMAGE))
    box = np.array([[100.0, 50.0, 300.0, 400.0]], dtype=np.float32)
    estimators = {f"runner_{p}": PoseEstimator(path, intra_op_num_threads=args.threads)
                  for p, path in zip(("fp32", "int8"), files)}
    runners = {name: (lambda e=e: (e(image, box), 1)[1]) for name, e in estimators.items()}
    measured = interleaved(runners, args.reps, torch.device("cpu"), warmup=1, min_seconds=args.min_seconds)
    out["runner_batch1"] = {name: {"median": m.median, "spread": m.spread} for name, m in measured.items()}
    return out


def _oks(a: np.ndarray, b: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO's OKS of keypoints ``a`` against ``b`` (all K counted), object area ``area``."""
    variances = (2 * sigmas) ** 2
    d2 = ((a - b) ** 2).sum(-1)
    return float(np.exp(-d2 / variances / (area + np.spacing(1)) / 2).mean())


def accuracy(config: Path, checkpoint: Path, folder: Path, threads: int,
             size: Optional[str] = None) -> Dict[str, Any]:
    """fp32 vs INT8 of a trained checkpoint on the bundled mini COCO (GT and detector boxes).

    ``size`` (``"HxW"``) replaces the config's input size (the network is fully
    convolutional: e.g. ``make demo``'s 128x96 checkpoint with its 256x192 config).
    """
    from resnest_plugin.deploy.checkpoint import file_sha256
    from resnest_plugin.deploy.evaluate import evaluate_coco
    from resnest_plugin.deploy.runtime import PoseEstimator

    model = exportable_model(config, checkpoint)
    if size is not None:
        height, width = (int(v) for v in size.split("x"))
        model = dataclasses.replace(model, input_size=(width, height), heatmap_size=(width // 4, height // 4))
    fp32, int8 = folder / "acc_fp32.onnx", folder / "acc_int8.onnx"
    export_onnx(model, fp32, config=config, checkpoint_sha256=file_sha256(checkpoint))
    quantize_export(fp32, int8)
    sigmas = np.array(model.sigmas)
    result: Dict[str, Any] = {"config": config.name, "input_size": list(model.input_size),
                              "flip_test": model.flip.enabled}
    for boxes, det in (("gt", None), ("det", BUNDLED_COCO / "test_coco_det_AP_H_56.json")):
        runs = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            estimator = PoseEstimator(path, intra_op_num_threads=threads)
            runs[name] = evaluate_coco(estimator, BUNDLED_COCO / "test_coco.json", BUNDLED_COCO, det)
        ref = np.array([p["keypoints"] for p in runs["fp32"].persons])[..., :2]
        got = np.array([p["keypoints"] for p in runs["int8"].persons])[..., :2]
        scale = np.array([p["scale"] for p in runs["fp32"].persons])
        # The box area (the padded crop scale over 1.25 squared): COCO's OKS normalises by the object's area.
        areas = np.prod(scale * (200.0 if installed_host() == "mmpose0" else 1.0), axis=1) / 1.25 ** 2
        oks = [_oks(g, r, a, sigmas) for g, r, a in zip(got, ref, areas)]
        error = np.linalg.norm(got - ref, axis=-1)
        # Detector boxes include false positives (no person, or a fragment): their heatmaps are
        # flat in fp32 too and the arg-max wanders; report the confident boxes apart.
        confident = np.array([p["box_score"] >= 0.5 for p in runs["fp32"].persons])
        result[boxes] = {
            "persons": len(ref), "ap_fp32": runs["fp32"].stats["AP"], "ap_int8": runs["int8"].stats["AP"],
            "ap_change": runs["int8"].stats["AP"] - runs["fp32"].stats["AP"],
            "mean_oks": float(np.mean(oks)), "min_oks": float(np.min(oks)),
            "confident_boxes": int(confident.sum()),
            "mean_oks_confident": float(np.mean(np.array(oks)[confident])),
            "pixel_error_mean": error.mean(axis=0).round(3).tolist(),
            "pixel_error_median_all": float(np.median(error)), "pixel_error_max": float(error.max()),
            "input_pixels_per_heatmap_pixel": model.input_size[0] / model.heatmap_size[0],
        }
    return result


def _table(results: Dict[str, Any]) -> List[str]:
    lines = ["| model | input | batch | MMPose built-in | ours (PyTorch) | ORT fp32 | ORT INT8 | "
             "fp32 / ours | INT8 / ours |", "|---|---|---|---|---|---|---|---|---|"]
    for workload, data in results["workloads"].items():
        depth, size = workload.split("@")
        for key, rates in data.items():
            if not key.startswith("batch"):
                continue
            r = {name: rates[name]["median"] for name in PATHS}
            lines.append(f"| ResNeSt-{depth} | {size} | {key[5:]} | {r['mmpose']:.2f} | {r['ours']:.2f} | "
                         f"{r['ort_fp32']:.2f} | {r['ort_int8']:.2f} | **{r['ort_fp32'] / r['ours']:.2f}** | "
                         f"**{r['ort_int8'] / r['ours']:.2f}** |")
    lines += ["", "End to end, `PoseEstimator` on one box of a bundled image (crop + network + decode + "
              "inverse transform), persons/s:", "", "| model | input | runner fp32 | runner INT8 |",
              "|---|---|---|---|"]
    for workload, data in results["workloads"].items():
        depth, size = workload.split("@")
        r = data["runner_batch1"]
        lines.append(f"| ResNeSt-{depth} | {size} | {r['runner_fp32']['median']:.2f} | "
                     f"{r['runner_int8']['median']:.2f} |")
    return lines


def _accuracy_lines(acc: Dict[str, Any]) -> List[str]:
    lines = [f"INT8 against fp32, `{acc['config']}` at {acc['input_size'][0]}x{acc['input_size'][1]} (W x H), "
             f"flip test {'on' if acc['flip_test'] else 'off'}, bundled mini COCO:", "",
             "| boxes | persons | AP fp32 | AP INT8 | AP change | mean OKS | mean OKS, box score >= 0.5 | "
             "min OKS | median px error | max px error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for boxes in ("gt", "det"):
        a = acc[boxes]
        lines.append(f"| {boxes} | {a['persons']} | {a['ap_fp32']:.3f} | {a['ap_int8']:.3f} | "
                     f"{a['ap_change']:+.3f} | {a['mean_oks']:.4f} | "
                     f"{a['mean_oks_confident']:.4f} ({a['confident_boxes']}) | {a['min_oks']:.3f} | "
                     f"{a['pixel_error_median_all']:.2f} | {a['pixel_error_max']:.2f} |")
    lines += ["", "Mean pixel error per keypoint, detector boxes, image pixels (COCO order, nose first): " +
              ", ".join(f"{e:.2f}" for e in acc["det"]["pixel_error_mean"])]
    return lines


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", nargs="+", type=int, choices=(50, 101), default=[50, 101])
    parser.add_argument("--sizes", nargs="+", choices=("256x192", "384x288"), default=["256x192", "384x288"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and onnxruntime intra-op threads (default 1: on a shared 2-core "
                             "machine two threads per process collapsed under load)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--accuracy-config", type=Path, default=None)
    parser.add_argument("--accuracy-checkpoint", type=Path, default=None)
    parser.add_argument("--accuracy-size", default=None,
                        help="HxW input of the accuracy run when it differs from the config's "
                             "(make demo trains at 128x96)")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the accuracy section, added to deploy_<stack>.json/.md (the speed "
                             "tables of an earlier run are kept, and a later speed run keeps it)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--smoke", action="store_true",
                        help="R50 at a 64x64 input, batches 1 and 2, one repetition (tests)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the benchmark; write ``deploy_<stack>.json`` / ``.md`` to ``--out-dir``."""
    args = parse_args(argv)
    if args.smoke:
        args.depths, args.sizes, args.batches, args.reps, args.min_seconds = [50], ["256x192"], [1, 2], 1, 0.0
    torch.set_num_threads(args.threads)
    host = installed_host()
    stem = args.out_dir / f"deploy_{host}"
    results: Dict[str, Any] = {
        "stack": host, "machine": machine_summary(torch.device("cpu")), "threads": args.threads,
        "load_average_start": os.getloadavg(), "smoke": args.smoke, "workloads": {}}
    earlier = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").is_file() else {}
    if args.accuracy_only:
        # The speed tables of an earlier run stay (none yet: the speed run adds them later).
        results = {**results, **{k: v for k, v in earlier.items() if k != "accuracy"}}
        args.depths, args.reps = [], results.get("reps", args.reps)
    elif "accuracy" in earlier and args.accuracy_config is None:
        results["accuracy"] = earlier["accuracy"]  # a speed-only run keeps the accuracy section
    results["reps"] = args.reps
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        for depth in args.depths:
            for size in args.sizes:
                config = config_for(host, depth, size)
                model = exportable_model(config, None)
                if args.smoke:
                    model = dataclasses.replace(model, input_size=(64, 64), heatmap_size=(16, 16))
                # MMPose's built-in backbone, returning its generation's convention (0.x a tensor,
                # 1.x a tuple), which the config's head expects; stem 64 as in the configs.
                from mmpose.models.backbones import ResNeSt as MMPoseResNeSt
                mmpose_network = HeatmapNetwork(MMPoseResNeSt(depth=depth), model.network.head).eval()
                folder = Path(scratch) / f"{depth}_{size}"
                folder.mkdir()
                files = export_pair(model, folder, config, flip=False)
                key = f"{depth}@{'64x64' if args.smoke else size}"
                results["workloads"][key] = bench_workload(model, mmpose_network, files, args.batches, args)
                print(f"{key}: {json.dumps(results['workloads'][key])}", flush=True)
        if args.accuracy_config is not None and args.accuracy_checkpoint is not None:
            results["accuracy"] = accuracy(args.accuracy_config, args.accuracy_checkpoint, Path(scratch),
                                           args.threads, args.accuracy_size)
    if not args.accuracy_only or "seconds" not in results:
        results["load_average_end"] = os.getloadavg()
        results["seconds"] = round(time.time() - started, 1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Deploy benchmark ({host})", "", results["machine"], "",
             f"threads {results['threads']}, load average {results['load_average_start'][0]:.1f} at the start and "
             f"{results['load_average_end'][0]:.1f} at the end (2 cores shared with other jobs); "
             f"{results['seconds']:.0f} s. Images/s, median of {results['reps']} interleaved repetitions.", "",
             *_table(results)]
    if "accuracy" in results:
        lines += ["", *_accuracy_lines(results["accuracy"])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
