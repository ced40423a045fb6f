"""Read the COCO keypoint metrics that MMPose's ``tools/test.py`` prints, and format them.

``tools/test.py`` ends with ``for k, v in sorted(results.items()):
print(f'{k}: {v}')``; for ``TopDownCocoDataset`` the keys are the ten
COCO keypoint statistics named in its ``_do_python_keypoint_eval``.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Optional

__all__ = ["AP_KEYS", "parse_test_output", "format_ap_table"]

# Order of xtcocotools' COCOeval.summarize() / MMPose's stats_names.
AP_KEYS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")

_LINE = re.compile(r"^(?P<key>A[PR](?: \.5| \.75| \(M\)| \(L\))?): (?P<value>[-+0-9.eE]+|nan)\s*$")


def parse_test_output(output: str) -> Dict[str, float]:
    """Return the metrics printed by ``tools/test.py``.

    Args:
        output: Everything the script printed.

    Returns:
        ``{key: value}`` for each of :data:`AP_KEYS` found; when the output
        holds several evaluations, the last one wins.

    Raises:
        ValueError: If the output holds none of the ten COCO statistics,
            or only some of them.
    """
    metrics: Dict[str, float] = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if match:
            metrics[match["key"]] = float(match["value"])
    missing = [key for key in AP_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"tools/test.py output lacks the COCO statistics {missing}; expected "
                         f"lines like 'AP: 0.721' for each of {list(AP_KEYS)}")
    return {key: metrics[key] for key in AP_KEYS}


def format_ap_table(rows: Mapping[str, Mapping[str, float]], *,
                    keys: Iterable[str] = AP_KEYS, title: Optional[str] = None) -> str:
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
