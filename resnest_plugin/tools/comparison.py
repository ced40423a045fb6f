"""Compare measured COCO metrics with the published ones and decide pass/fail."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Mapping

__all__ = ["DEFAULT_TOLERANCE", "Comparison", "compare", "format_comparison", "all_within"]

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
        measured: Metrics from ``tools/test.py`` (keys as in :data:`ap_table.AP_KEYS`).
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
