"""Read the JSON training log that mmcv writes, and plot the loss curve.

mmcv 1.x's ``TextLoggerHook`` writes ``<work_dir>/<timestamp>.log.json``:
one JSON object per line, the first one the run's metadata (environment,
config, seed), then one per logging interval with ``mode``, ``epoch``,
``iter`` (the iteration inside the epoch), ``lr`` and the averaged losses
(``heatmap_loss``, ``loss``) and ``acc_pose`` for MMPose's top-down models.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

__all__ = ["TrainPoint", "find_log_json", "read_train_log", "read_val_log", "plot_loss_curve"]


@dataclass(frozen=True)
class TrainPoint:
    """One logged training interval.

    Attributes:
        step: Global iteration number (1-based, counted across epochs).
        epoch: Epoch of the interval (1-based).
        values: The logged scalars (``loss``, ``heatmap_loss``, ``acc_pose``, ``lr`` ...).
    """

    step: int
    epoch: int
    values: Dict[str, float]


def find_log_json(work_dir: Path) -> Path:
    """Return the newest ``*.log.json`` in a training work dir.

    Args:
        work_dir: The ``--work-dir`` given to ``tools/train.py``.

    Raises:
        FileNotFoundError: Naming the folder when it holds no JSON log.
    """
    logs = sorted(Path(work_dir).glob("*.log.json"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise FileNotFoundError(f"no *.log.json in {work_dir}: expected the JSON log that "
                                "mmcv's TextLoggerHook writes during tools/train.py")
    return logs[-1]


def read_train_log(log_json: Path) -> List[TrainPoint]:
    """Return the training intervals of a mmcv JSON log, in order.

    The global step is the iteration inside the epoch plus the number of
    iterations of all earlier epochs (the largest ``iter`` logged in each).

    Args:
        log_json: A ``*.log.json`` file.

    Returns:
        One point per logged training interval.

    Raises:
        ValueError: If a line is not JSON (naming the file and line), or the
            log holds no training interval with a ``loss``.
    """
    entries = []
    with open(log_json, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{log_json}, line {number}: not JSON ({err.msg})") from err
            if entry.get("mode") == "train" and "loss" in entry:
                entries.append(entry)
    if not entries:
        raise ValueError(f"{log_json} holds no training interval with a 'loss': did the run "
                         "log at least once (log_config.interval <= iterations per epoch)?")
    iters_per_epoch: Dict[int, int] = {}
    for entry in entries:
        iters_per_epoch[entry["epoch"]] = max(iters_per_epoch.get(entry["epoch"], 0), entry["iter"])
    points = []
    for entry in entries:
        offset = sum(n for epoch, n in iters_per_epoch.items() if epoch < entry["epoch"])
        values = {k: float(v) for k, v in entry.items()
                  if isinstance(v, (int, float)) and k not in ("epoch", "iter")}
        points.append(TrainPoint(step=offset + entry["iter"], epoch=entry["epoch"], values=values))
    return points


def read_val_log(log_json: Path, metric: str = "AP") -> List[Tuple[int, float]]:
    """Return ``(epoch, value)`` of ``metric`` for each evaluation in a mmcv JSON log.

    mmcv's ``EvalHook`` logs one ``mode == 'val'`` line per evaluation, after
    the epoch it evaluated, with the dataset's metrics (COCO ``AP`` ...).

    Args:
        log_json: A ``*.log.json`` file.
        metric: The logged metric to read.

    Returns:
        One pair per evaluation, in order (empty when the run never evaluated).
    """
    marks = []
    with open(log_json, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("mode") == "val" and metric in entry:
                marks.append((int(entry["epoch"]), float(entry[metric])))
    return marks


def plot_loss_curve(points: List[TrainPoint], out_file: Path, *, title: str,
                    ap_marks: Sequence[Tuple[int, float]] = (), ap_label: str = "AP") -> Path:
    """Plot the training loss (and ``acc_pose`` when logged) against the step, as a PNG.

    Args:
        points: Output of :func:`read_train_log`.
        out_file: Where to write the PNG.
        title: Figure title.
        ap_marks: ``(step, AP)`` evaluations to mark on the accuracy panel
            (step 0 = before training).
        ap_label: Legend text of the AP marks.

    Returns:
        ``out_file``.

    Raises:
        ValueError: If ``points`` is empty.
    """
    if not points:
        raise ValueError("no training points to plot: expected the output of read_train_log")
    import matplotlib

    matplotlib.use("Agg")  # no display on a headless machine
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [p.step for p in points]
    has_acc = all("acc_pose" in p.values for p in points)
    fig, axes = plt.subplots(2 if has_acc else 1, 1, figsize=(7, 6 if has_acc else 3.5),
                             sharex=True, squeeze=False)
    loss_ax = axes[0][0]
    losses = [p.values["loss"] for p in points]
    loss_ax.plot(steps, losses, marker="o", markersize=3, alpha=0.5,
                 label="loss (JointsMSELoss)")
    # A trailing mean shows the trend through the noise of random crops.
    window = max(1, len(losses) // 10)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    loss_ax.plot(steps, smooth, color="tab:red", label=f"mean of the last {window}")
    loss_ax.set_ylabel("training loss")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        loss_ax.set_yscale("log")  # a memorising run falls by orders of magnitude
    loss_ax.set_title(title, fontsize=10)
    loss_ax.grid(alpha=0.3)
    loss_ax.legend()
    if has_acc:
        acc_ax = axes[1][0]
        acc_ax.plot(steps, [p.values["acc_pose"] for p in points], color="tab:green",
                    marker="o", markersize=3, label="acc_pose (PCK on heatmaps)")
        if ap_marks:
            acc_ax.plot([m[0] for m in ap_marks], [m[1] for m in ap_marks], color="tab:purple",
                        marker="D", markersize=6, label=ap_label)
            for step, value in ap_marks:
                acc_ax.annotate(f"{value:.2f}", (step, value), textcoords="offset points",
                                xytext=(0, 6), ha="center", fontsize=8, color="tab:purple")
        acc_ax.set_ylabel("acc_pose / AP")
        acc_ax.set_ylim(0, 1.05)
        acc_ax.grid(alpha=0.3)
        acc_ax.legend()
    axes[-1][0].set_xlabel(f"iteration ({len(points)} logged)")
    # Iterations are whole numbers; without this a short run gets 1.25, 1.5 ...
    axes[-1][0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
