"""Locate and run MMPose's stock scripts (``tools/train.py``, ``tools/test.py``, demos).

The pip wheels of both MMPose generations (0.29 and 1.3) ship their tools,
demos and configs inside the installed package, under
``site-packages/mmpose/.mim/`` (that is where ``mim train mmpose`` finds
them). The jobs and tests of this repository find them here, in one place,
and run those files unmodified, as subprocesses, so that what they prove is
what a user running MMPose's own commands gets. Host-free: it reads where
``mmpose`` is installed without importing it.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .hosts import stack_advice

__all__ = [
    "StockToolError", "ToolRun", "mmpose_mim_dir", "mmpose_config", "stock_script",
    "run_stock_script",
]


class StockToolError(RuntimeError):
    """A stock MMPose script exited with a non-zero status."""


@dataclass(frozen=True)
class ToolRun:
    """What one run of a stock script produced.

    Attributes:
        command: The full command line that was run.
        returncode: Its exit status.
        output: Everything it wrote to stdout and stderr, interleaved.
        seconds: Wall-clock duration.
    """

    command: tuple
    returncode: int
    output: str
    seconds: float


def mmpose_mim_dir() -> Path:
    """Return the ``.mim`` folder of the installed MMPose package.

    Raises:
        FileNotFoundError: If MMPose is not installed or its wheel carries
            no ``.mim`` folder (an editable install from a source checkout
            keeps ``tools/`` at the repository root instead).
    """
    spec = importlib.util.find_spec("mmpose")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"mmpose is not installed in this interpreter ({sys.executable}): "
                                f"for MMPose 0.x {stack_advice('mmpose0')}; for MMPose 1.x "
                                f"{stack_advice('mmpose1')}")
    mim_dir = Path(list(spec.submodule_search_locations)[0]) / ".mim"
    if not mim_dir.is_dir():
        raise FileNotFoundError(f"{mim_dir} does not exist: expected the tools and configs that "
                                "the mmpose 0.29.0 and 1.3.2 wheels ship under mmpose/.mim")
    return mim_dir


def stock_script(relative_path: str) -> Path:
    """Return the path of one of MMPose's shipped scripts.

    Args:
        relative_path: Path inside MMPose's ``.mim`` folder, e.g.
            ``"tools/train.py"`` or ``"demo/top_down_img_demo_with_mmdet.py"``.

    Raises:
        FileNotFoundError: Naming the missing script and the scripts beside it.
    """
    path = mmpose_mim_dir() / relative_path
    if not path.is_file():
        beside = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise FileNotFoundError(f"MMPose script {relative_path!r} not found at {path}; "
                                f"found there: {beside}")
    return path


def mmpose_config(relative_path: str) -> Path:
    """Return the path of one of MMPose's own shipped configs.

    Args:
        relative_path: Path under ``.mim/configs``, e.g. ``"body/2d_kpt_sview_rgb_img/
            topdown_heatmap/coco/resnest50_coco_256x192.py"``.

    Raises:
        FileNotFoundError: Naming the missing config.
    """
    path = mmpose_mim_dir() / "configs" / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"MMPose config {relative_path!r} not found at {path}")
    return path


def run_stock_script(script: Path, args: Sequence[str], *, cwd: Optional[Path] = None,
                     env: Optional[Mapping[str, str]] = None, echo: bool = True,
                     log_file: Optional[Path] = None, check: bool = True) -> ToolRun:
    """Run a stock script with this interpreter, streaming its output.

    Each line the script prints is echoed as it arrives (training prints a
    line per logging interval, so a long run shows progress) and kept for
    the caller to parse.

    Args:
        script: The script to run (see :func:`stock_script`).
        args: Its command-line arguments.
        cwd: Working directory; default the current one.
        env: Extra environment variables, added to this process's.
        echo: Echo the output to ``sys.stdout`` (as it is at call time) while
            it arrives; ``False`` runs quietly.
        log_file: If given, the output is also written there.
        check: Raise :class:`StockToolError` on a non-zero exit status.

    Returns:
        The command, its exit status, its output and its duration.

    Raises:
        StockToolError: If ``check`` and the script failed; the message
            quotes the command and the last lines of its output.
    """
    command = (sys.executable, str(script), *[str(a) for a in args])
    full_env = dict(os.environ)
    # Unbuffered child output, otherwise progress arrives in 4 KiB bursts.
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    lines = []
    start = time.perf_counter()
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "w", encoding="utf-8") if log_file is not None else None
    try:
        with subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              bufsize=1) as proc:
            assert proc.stdout is not None  # stdout=PIPE above
            for line in proc.stdout:
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if log is not None:
                    log.write(line)
            returncode = proc.wait()
    finally:
        if log is not None:
            log.close()
    run = ToolRun(command=command, returncode=returncode, output="".join(lines),
                  seconds=time.perf_counter() - start)
    if check and returncode != 0:
        tail = "".join(lines[-25:])
        raise StockToolError(f"{script.name} exited with status {returncode}.\n"
                             f"command: {' '.join(command)}\nlast output lines:\n{tail}")
    return run
