"""The stock tools of both MMPose generations: where they are, and their ``--cfg-options`` lines."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping

from resnest_plugin.stock_tools import stock_script

__all__ = ["cfg_options_args", "format_value", "stock_tool"]


def stock_tool(name: str) -> Path:
    """Path of MMPose's ``tools/<name>`` in the installed package (:func:`stock_script`).

    Args:
        name: File name under ``mmpose/.mim/tools``, e.g. ``"train.py"``.

    Raises:
        FileNotFoundError: If the installed mmpose has no such tool.
    """
    return stock_script(f"tools/{name}")


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
