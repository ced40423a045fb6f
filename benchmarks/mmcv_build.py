"""Cold mmcv(-full) build time: plain compiler vs the precompiled-header wrapper, in one run.

Each variant runs ``scripts/setup_env.sh``'s own build branch (so what is
measured is what a new machine runs), from the same local sdist, into an
empty wheel cache and a scratch venv that sees this environment's packages
(torch, setuptools, ninja) behind its own site-packages:

* ``plain``: ``RESNEST_PLUGIN_PCH=0``: the compiler as mmcv's build calls it
  (``c++``, with the ``-g`` Python's sysconfig CFLAGS carry): the old set-up.
* ``pch-debug``: the wrapper (``scripts/pch_cxx.sh``) keeping ``-g``
  (``RESNEST_PLUGIN_MMCV_DEBUG=1``): what the precompiled header alone saves.
* ``pch``: the wrapper as the set-up runs it (``-g0`` appended).

For each: wall and CPU (user + sys) seconds of the build step, wheel and
``_ext`` sizes, and an ops smoke check of the installed wheel in the scratch
venv (``nms``, ``roi_align``, ``DeformConv2d`` on CPU). Writes a JSON and a
markdown table.

Usage::

    python benchmarks/mmcv_build.py --stack mmpose0 --out benchmarks/results/mmcv_build_mmpose0.json
    python benchmarks/mmcv_build.py --stack mmpose1 --variants plain,pch --out ...
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import _cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: MMPose generation -> the mmcv sdist its rows build.
SDISTS = {"mmpose0": ("mmcv-full", "1.7.0"), "mmpose1": ("mmcv", "2.1.0")}
#: The rows of the support matrix (docs/compatibility.md).
STACKS = ("mmpose0", "mmpose0-legacy", "mmpose1", "mmpose1-torch2.1", "mmpose1-newest")
VARIANTS: Dict[str, Dict[str, str]] = {
    "plain": {"RESNEST_PLUGIN_PCH": "0"},
    "pch-debug": {"RESNEST_PLUGIN_PCH": "1", "RESNEST_PLUGIN_MMCV_DEBUG": "1"},
    "pch": {"RESNEST_PLUGIN_PCH": "1"},
}
# Run in the scratch venv after the install: the ops the plugin's users touch (mmdet's NMS and
# RoIAlign for detector -> pose, DeformConv2d as a compiled op with a backward).
OPS_SMOKE = """
import torch
from mmcv.ops import DeformConv2d, nms, roi_align
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
pooled = roi_align(torch.arange(64.).view(1, 1, 8, 8), torch.tensor([[0., 0., 0., 7., 7.]]), (2, 2), 1.0, 2)
assert pooled.shape == (1, 1, 2, 2) and torch.isfinite(pooled).all()
conv = DeformConv2d(2, 2, 3, padding=1)
x = torch.randn(1, 2, 5, 5, requires_grad=True)
conv(x, torch.zeros(1, 18, 5, 5)).sum().backward()
assert x.grad is not None and torch.isfinite(x.grad).all()
print("ops ok")
"""

__all__ = ["main", "measure_variant"]


def _scratch_venv(folder: Path) -> Path:
    """A venv without pip whose sys.path ends with this environment's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site_packages = next((folder / "lib").glob("python*/site-packages"))
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    (site_packages / "zz_parent_environment.pth").write_text("\n".join(lines) + "\n")
    return folder


def _generation(stack: str) -> str:
    """The MMPose generation of a row of the support matrix (``mmpose1-newest`` -> ``mmpose1``)."""
    return stack.split("-", 1)[0]


def _download_sdist(stack: str, folder: Path) -> Path:
    name, version = SDISTS[_generation(stack)]
    constraints = REPO / "requirements" / ("" if stack == "mmpose0" else stack) / "constraints.txt"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
                    "--no-binary", name, f"{name}=={version}", "-d", str(folder), "-c", str(constraints)],
                   check=True)
    return folder / f"{name}-{version}.tar.gz"


def measure_variant(stack: str, variant: str, sdist: Path, scratch: Path,
                    max_jobs: Optional[int] = None, smoke: bool = True) -> Dict[str, object]:
    """Build mmcv with one variant through setup_env.sh's cold branch and measure it.

    Args:
        stack: A row of the support matrix (``mmpose0``, ``mmpose1-torch2.1``, ...).
        variant: A key of :data:`VARIANTS`.
        sdist: The local sdist (``RESNEST_PLUGIN_MMCV_SDIST``).
        scratch: An empty folder for the venv, cache and logs.
        max_jobs: Parallel compile jobs (default: the machine's cores).
        smoke: Run the ops smoke check on the installed wheel.

    Returns:
        ``variant``, ``returncode``, ``build_wall_s``, ``cpu_s``, ``wheel_bytes``,
        ``ext_bytes``, ``ops_smoke`` (``"ok"``, the failure, or ``None``), ``output_tail``.

    Raises:
        KeyError: ``variant`` is not one of :data:`VARIANTS`.
    """
    extra = VARIANTS[variant]
    venv = _scratch_venv(scratch / "venv")
    times = scratch / "times.tsv"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RESNEST_PLUGIN_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(extra, STACK=stack, VENV=str(venv), RESNEST_PLUGIN_CACHE=str(scratch / "cache"),
               RESNEST_PLUGIN_MMCV_SDIST=str(sdist), RESNEST_PLUGIN_SETUP_STOP_AFTER="mmcv",
               RESNEST_PLUGIN_SETUP_TIMES=str(times), PYTHON=sys.executable, TMPDIR=str(scratch),
               MAX_JOBS=str(max_jobs or os.cpu_count() or 1))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "setup_env.sh")], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    steps = [line.split("\t", 1) for line in times.read_text().splitlines()] if times.exists() else []
    name, version = SDISTS[_generation(stack)]
    build = [float(seconds) for seconds, step in steps if step.startswith(f"{name} {version}")]
    wheels = list((scratch / "cache").rglob("*.whl"))
    ext = list((venv / "lib").glob("python*/site-packages/mmcv/_ext*.so"))
    ops: Optional[str] = None
    if smoke and proc.returncode == 0:
        check = subprocess.run([str(venv / "bin" / "python"), "-c", OPS_SMOKE], capture_output=True,
                               text=True, cwd=scratch)
        ops = "ok" if check.returncode == 0 and "ops ok" in check.stdout else check.stderr[-1500:]
    return {
        "variant": variant, "environment": extra, "returncode": proc.returncode,
        "build_wall_s": round(build[0], 1) if build else None, "setup_wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "wheel_bytes": wheels[0].stat().st_size if wheels else None,
        "ext_bytes": ext[0].stat().st_size if ext else None,
        "ops_smoke": ops, "output_tail": proc.stdout[-2000:],
    }


def _markdown(result: Dict[str, object]) -> str:
    lines = [f"### Cold {result['dist']} {result['version']} build ({result['cores']} cores, "
             f"MAX_JOBS={result['max_jobs']}, {result['cpu']})", "",
             "| variant | build wall | CPU (user+sys) | wheel | _ext .so | ops smoke |", "|---|---|---|---|---|---|"]
    for row in result["variants"]:
        def size(key: str) -> str:
            return f"{row[key] / 1e6:.1f} MB" if row[key] else "-"
        wall = f"{row['build_wall_s']:.0f} s" if row["build_wall_s"] else f"failed ({row['returncode']})"
        lines.append(f"| {row['variant']} | {wall} | {row['cpu_s']:.0f} s | {size('wheel_bytes')} | "
                     f"{size('ext_bytes')} | {row['ops_smoke']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Measure the variants one after another; write ``--out`` (JSON) and its ``.md`` table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=STACKS, default="mmpose0",
                        help="the row of the support matrix whose pins (torch, Python) the build uses")
    parser.add_argument("--variants", default="plain,pch-debug,pch",
                        help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--sdist", type=Path, help="a local sdist (default: download PyPI's)")
    parser.add_argument("--max-jobs", type=int, default=None)
    parser.add_argument("--no-smoke", action="store_true", help="skip the ops smoke check")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants {unknown} not understood: expected some of {sorted(VARIANTS)}")
    name, version = SDISTS[_generation(args.stack)]
    with tempfile.TemporaryDirectory(prefix="mmcv-build-bench.") as tmp:
        sdist = args.sdist.resolve() if args.sdist else _download_sdist(args.stack, Path(tmp))
        result: Dict[str, object] = {
            "dist": name, "version": version, "stack": args.stack, "cores": os.cpu_count(),
            "max_jobs": args.max_jobs or os.cpu_count(), "cpu": _cpu_model(),
            "python": platform.python_version(), "variants": []}
        for variant in variants:
            scratch = Path(tmp) / variant
            scratch.mkdir()
            print(f"[mmcv_build] {variant}: building {name} {version} ...", flush=True)
            row = measure_variant(args.stack, variant, sdist, scratch, args.max_jobs, not args.no_smoke)
            print(f"[mmcv_build] {variant}: rc={row['returncode']} build {row['build_wall_s']} s, "
                  f"cpu {row['cpu_s']} s, ops {row['ops_smoke']}", flush=True)
            result["variants"].append(row)
            shutil.rmtree(scratch / "venv", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return 0 if all(row["returncode"] == 0 for row in result["variants"]) else 1


if __name__ == "__main__":
    sys.exit(main())
