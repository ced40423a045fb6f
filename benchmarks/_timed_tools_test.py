"""Run MMPose's stock ``tools/test.py`` unchanged, timing its inference loop.

Usage (what ``benchmark_tools_test.py`` runs, once per configuration)::

    python benchmarks/_timed_tools_test.py <path/to/mmpose/.mim/tools/test.py> <test.py args...>

``tools/test.py`` imports ``single_gpu_test`` from ``mmpose.apis`` when it
starts. This launcher wraps that function *before* executing the script (as
``__main__``, with ``runpy``), so the script itself is untouched; the wrapper
measures the wall time of the inference loop (data loading, forward with flip
test, post-processing: MMPose's own loop) and the number of boxes it
processed, and prints one line ``TIMING {json}`` when the script finishes.

With ``RESNEST_BENCH_EXACT=1`` in the environment it switches off
resnest_plugin's CPU fast paths (``ResNeSt.fast_inference`` and
``ResNeSt.cpu_channels_last``, class attributes) before the script builds the
model: MMPose's arithmetic op for op, to show what the fast paths are worth.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import time
from typing import Any

import mmpose.apis

__all__ = ["main"]

_TIMING: dict = {}


def _timed(original: Any) -> Any:
    def single_gpu_test(model: Any, data_loader: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        results = original(model, data_loader, *args, **kwargs)
        _TIMING.update(loop_s=time.perf_counter() - start, boxes=len(data_loader.dataset))
        return results

    return single_gpu_test


def main() -> None:
    """Execute ``tools/test.py`` (argv[1]) with the remaining arguments."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: _timed_tools_test.py <tools/test.py> <args...>")
    script = sys.argv[1]
    mmpose.apis.single_gpu_test = _timed(mmpose.apis.single_gpu_test)
    if os.environ.get("RESNEST_BENCH_EXACT") == "1":
        import resnest_plugin

        resnest_plugin.ResNeSt.fast_inference = False
        resnest_plugin.ResNeSt.cpu_channels_last = False
    sys.argv = [script] + sys.argv[2:]
    start = time.perf_counter()
    runpy.run_path(script, run_name="__main__")
    _TIMING["script_s"] = time.perf_counter() - start
    print("TIMING " + json.dumps(_TIMING), flush=True)


if __name__ == "__main__":
    main()
