"""The ten COCO keypoint statistics: read them from either MMPose's ``tools/test.py``, tabulate, compare.

Both generations print the statistics that xtcocotools' ``COCOeval.summarize()``
computes, under the names MMPose gives them (``stats_names`` of its COCO
evaluation), in two layouts:

* MMPose 0.x ``tools/test.py`` ends with ``for k, v in sorted(results.items()):
  print(f'{k}: {v}')``: one ``AP: 0.721`` line per statistic;
* MMPose 1.x (mmengine's ``Runner.test``) logs one line,
  ``Epoch(test) [n/n]    coco/AP: 0.721000  coco/AP .5: ...``, the
  ``CocoMetric`` prefix ``coco/`` before each name (also the keys of
  ``tools/test.py --out metrics.json``).

:func:`parse_test_output` reads either and returns the bare names of
:data:`COCO_KEYPOINT_STATS`, the one place these names are spelled out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

__all__ = ["COCO_KEYPOINT_STATS", "DEFAULT_TOLERANCE", "MMPOSE1_PREFIX", "Comparison", "all_within",
           "compare", "format_ap_table", "format_comparison", "parse_test_output", "strip_prefix"]

#: Order of xtcocotools' COCOeval.summarize() / MMPose's stats_names.
COCO_KEYPOINT_STATS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)",
                       "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
#: What MMPose 1.x's ``CocoMetric`` puts before each name.
MMPOSE1_PREFIX = "coco/"

_NAME = r"A[PR](?: \.5| \.75| \(M\)| \(L\))?"
_VALUE = r"[-+0-9.eE]+|nan"
_MMPOSE0_LINE = re.compile(rf"^(?P<key>{_NAME}): (?P<value>{_VALUE})\s*$")
_MMPOSE1_ITEM = re.compile(rf"{re.escape(MMPOSE1_PREFIX)}(?P<key>{_NAME}): (?P<value>{_VALUE})")


def strip_prefix(metrics: Mapping[str, float]) -> Dict[str, float]:
    """``{"coco/AP": v, ...}`` (MMPose 1.x, e.g. ``--out metrics.json``) -> ``{"AP": v, ...}``."""
    return {key[len(MMPOSE1_PREFIX):] if key.startswith(MMPOSE1_PREFIX) else key: value
            for key, value in metrics.items()}


def parse_test_output(output: str) -> Dict[str, float]:
    """Return the ten COCO statistics that either generation's ``tools/test.py`` printed.

    Args:
        output: Everything the script printed (stdout and stderr; mmengine
            logs to stdout).

    Returns:
        ``{name: value}`` for each of :data:`COCO_KEYPOINT_STATS`, in that
        order; when the output holds several evaluations, the last one wins.

    Raises:
        ValueError: If the output holds none of the ten statistics, or only
            some; the message names the missing ones and quotes the output's end.
    """
    metrics: Dict[str, float] = {}
    for line in output.splitlines():
        match = _MMPOSE0_LINE.match(line.strip())
        if match:
            metrics[match["key"]] = float(match["value"])
        elif "Epoch(test)" in line:
            metrics.update((m["key"], float(m["value"])) for m in _MMPOSE1_ITEM.finditer(line))
    missing = [key for key in COCO_KEYPOINT_STATS if key not in metrics]
    if missing:
        raise ValueError(f"tools/test.py output lacks the COCO statistics {missing}; expected "
                         f"'AP: 0.721' lines (MMPose 0.x) or an 'Epoch(test) ... coco/AP: 0.721 ...' "
                         f"line (MMPose 1.x) for each of {list(COCO_KEYPOINT_STATS)}. "
                         f"End of the output:\n{output[-1500:]}")
    return {key: metrics[key] for key in COCO_KEYPOINT_STATS}


def format_ap_table(rows: Mapping[str, Mapping[str, float]], *,
                    keys: Iterable[str] = COCO_KEYPOINT_STATS, title: Optional[str] = None) -> str:
    """Format metrics as a markdown table, one row per model/run.

    Args:
        rows: ``{row label: {metric key: value}}``; a missing value prints ``-``.
        keys: The metric columns, in order.
        title: Optional heading line printed above the table.

    Returns:
        The table as markdown text, ending with a newline.
    """
    keys = list(keys)
    lines = [f"{title}\n"] if title else []
    lines.append("| run | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))
    for label, metrics in rows.items():
        cells = [f"{metrics[key]:.3f}" if key in metrics else "-" for key in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The published APs are rounded to 3 decimals; 0.002 leaves room for that
# rounding and for run-to-run nondeterminism of GPU vs CPU kernels, while a
# wrong weight or pre-processing step costs far more than 0.002 AP.
DEFAULT_TOLERANCE = 0.002
# Floating-point slack so that e.g. 0.723 - 0.721 counts as within 0.002.
_EPS = 1e-9


@dataclass(frozen=True)
class Comparison:
    """Measured vs published metrics of one model.

    Attributes:
        name: The model.
        measured: Metrics from ``tools/test.py`` (keys as in :data:`COCO_KEYPOINT_STATS`).
        expected: Published metrics (at least ``AP``).
        tolerance: Largest accepted ``|measured AP - expected AP|``.
    """

    name: str
    measured: Mapping[str, float]
    expected: Mapping[str, float]
    tolerance: float

    @property
    def ap_diff(self) -> float:
        """Measured AP minus published AP."""
        return self.measured["AP"] - self.expected["AP"]

    @property
    def ok(self) -> bool:
        """Whether the AP is within the tolerance."""
        return abs(self.ap_diff) <= self.tolerance + _EPS


def compare(measured: Mapping[str, Mapping[str, float]],
            expected: Mapping[str, Mapping[str, float]],
            tolerance: float = DEFAULT_TOLERANCE) -> List[Comparison]:
    """Pair each measured model with its published metrics.

    Args:
        measured: ``{model: metrics}`` from the evaluations that ran.
        expected: ``{model: metrics}`` published; must cover every measured model.
        tolerance: Largest accepted AP difference (absolute, AP in [0, 1]).

    Returns:
        One :class:`Comparison` per measured model, in its order.

    Raises:
        ValueError: If ``tolerance`` is negative, or a model has no
            published ``AP``, or a measurement has no ``AP``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance {tolerance} is negative: expected an AP difference >= 0")
    comparisons = []
    for name, metrics in measured.items():
        if "AP" not in expected.get(name, {}):
            raise ValueError(f"no published AP for model {name!r}: expected one of "
                             f"{sorted(expected)}")
        if "AP" not in metrics:
            raise ValueError(f"measured metrics of {name!r} lack 'AP': got {sorted(metrics)}")
        comparisons.append(Comparison(name, metrics, expected[name], tolerance))
    return comparisons


def all_within(comparisons: Iterable[Comparison]) -> bool:
    """Whether every comparison is within its tolerance (``False`` for none)."""
    comparisons = list(comparisons)
    return bool(comparisons) and all(c.ok for c in comparisons)


def format_comparison(comparisons: Iterable[Comparison],
                      keys: Iterable[str] = ("AP", "AP .5", "AP .75", "AR", "AR .5")) -> str:
    """Format measured beside published metrics as a markdown table.

    Each metric column shows ``ours / published``; ``dAP`` is ours minus
    published, and the last column says whether it is within tolerance.

    Args:
        comparisons: Output of :func:`compare`.
        keys: Metric columns.

    Returns:
        Markdown text ending with a newline.
    """
    keys = list(keys)
    lines = ["| model | " + " | ".join(f"{k} (ours / zoo)" for k in keys) + " | dAP | within |",
             "|---|" + "---:|" * len(keys) + "---:|:---:|"]
    for comp in comparisons:
        cells = []
        for key in keys:
            ours = f"{comp.measured[key]:.3f}" if key in comp.measured else "-"
            zoo = f"{comp.expected[key]:.3f}" if key in comp.expected else "-"
            cells.append(f"{ours} / {zoo}")
        verdict = "yes" if comp.ok else f"NO (> {comp.tolerance})"
        lines.append(f"| {comp.name} | " + " | ".join(cells) +
                     f" | {comp.ap_diff:+.4f} | {verdict} |")
    return "\n".join(lines) + "\n"
