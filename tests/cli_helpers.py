"""``--cfg-options`` command lines for the stock tools of both MMPose generations."""
from __future__ import annotations

from typing import Any, List, Mapping

__all__ = ["cfg_options_args", "format_value"]


def format_value(value: Any) -> str:
    """A value in the syntax mmcv's / mmengine's ``DictAction`` parses back to the same value.

    Raises:
        ValueError: For a string with a comma or a space (the parser would split it).
    """
    if isinstance(value, tuple):
        return "(" + ",".join(format_value(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if value is None:
        return "None"
    value = str(value)
    if "," in value or " " in value:
        raise ValueError(f"cannot pass {value!r} through --cfg-options (comma or space)")
    return value


def cfg_options_args(options: Mapping[str, Any]) -> List[str]:
    """``["--cfg-options", "key=value", ...]`` for MMPose's train.py / test.py (0.x and 1.x).

    Args:
        options: ``{dotted.key: value}``.

    Returns:
        Command-line arguments (empty if ``options`` is empty).
    """
    if not options:
        return []
    return ["--cfg-options", *(f"{key}={format_value(value)}" for key, value in options.items())]
