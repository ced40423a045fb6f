"""The cold branch of ``scripts/setup_env.sh``, run from a fresh copy in seconds.

A new machine has no cached mmcv wheel, so the set-up downloads mmcv's sdist,
patches its C++ standard, compiles it through the precompiled-header wrapper
(``scripts/pch_cxx.sh``), checks the wheel for ``mmcv/_ext``, caches it and
installs it. That branch never runs where the wheel cache is warm, so these
tests run it on every CI run with the script's test seams:

* ``RESNEST_PLUGIN_MMCV_SDIST``: a tiny stand-in sdist, made here, with the
  same name, version, hard-coded ``-std=`` flag and ``pytorch_cpp_helper.hpp``
  layout as the real one, built with torch's ``BuildExtension`` (ninja) like
  mmcv, so compile -> check -> cache -> install take seconds;
* ``RESNEST_PLUGIN_SETUP_STOP_AFTER=mmcv``: stop after installing it.

``VENV`` and ``RESNEST_PLUGIN_CACHE`` are given as *relative* paths, as the
Makefile gives ``VENV``: a path that breaks after the build's ``cd`` fails
here. The venv is made beforehand with a ``.pth`` file that puts this test
environment's packages behind its own site-packages, so torch and the pinned
packages are "already satisfied" (no download), while the stand-in mmcv is
installed into the new venv in front of them; pip leaves distributions
outside the venv alone.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import pytest

import torch

from resnest_plugin.hosts import installed_host

REPO = Path(__file__).resolve().parents[1]
# MMPose generation -> (sdist name, version, the -std flag its setup.py hard-codes).
MMCV_SDISTS: Dict[str, Tuple[str, str, str]] = {
    "mmpose0": ("mmcv-full", "1.7.0", "c++14"),
    "mmpose1": ("mmcv", "2.1.0", "c++17"),
}
GENERATION = installed_host() or "mmpose0"


def _current_row() -> str:
    """This environment's row of the support matrix: the set-up's stamp, else $STACK, else the host."""
    stamp = Path(sys.prefix) / ".resnest_plugin_setup"
    found = re.search(r"stack=(\S+)", stamp.read_text()) if stamp.is_file() else None
    return found.group(1) if found else os.environ.get("STACK") or GENERATION


def _torch_cplusplus() -> int:
    """``__cplusplus`` of the standard this torch's headers need (setup_env.sh's TORCH_STD rule)."""
    release = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if release < (2, 0):
        return 201402
    return 201703 if release < (2, 14) else 202002


STACK = _current_row()

_STAND_IN_SETUP = '''\
"""Stand-in for {name} {version}'s setup.py: one ops translation unit, mmcv's layout."""
import json
import os

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

common = os.path.abspath("mmcv/ops/csrc/common")
ext_modules = []
if os.environ.get("STAND_IN_WITHOUT_OPS") != "1":
    ext_modules.append(CppExtension(
        "mmcv._ext", ["mmcv/ops/csrc/pytorch/cpu/nms.cpp", "mmcv/ops/csrc/pytorch/pybind.cpp"],
        include_dirs=[common], extra_compile_args={{"cxx": ["-std={std}"]}}))
setup(name="{name}", version="{version}", packages=["mmcv"], ext_modules=ext_modules,
      cmdclass={{"build_ext": BuildExtension}})
'''
# No torch header: parsing torch/extension.h would make this test take minutes. It
# stands in for torch's "#error C++20 or later compatible compiler is required".
_HELPER_HEADER = """\
#pragma once
#include <Python.h>
#include <vector>
#if __cplusplus < {cplusplus}L
#error "built with an older C++ standard than this torch needs (setup.py not patched)"
#endif
"""
_NMS = """\
#include "pytorch_cpp_helper.hpp"
int stand_in_nms(int boxes) { std::vector<int> keep(boxes, 1); return static_cast<int>(keep.size()); }
"""
_PYBIND = """\
#include "pytorch_cpp_helper.hpp"
int stand_in_nms(int boxes);
static PyObject* nms(PyObject*, PyObject* args) {
  int boxes = 0;
  if (!PyArg_ParseTuple(args, "i", &boxes)) return nullptr;
  return PyLong_FromLong(stand_in_nms(boxes));
}
static PyMethodDef methods[] = {{"nms", nms, METH_VARARGS, "stand-in"}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", nullptr, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&module); }
"""


def _write_stand_in_sdist(folder: Path, stack: str) -> Path:
    """Write ``<dist>-<version>.tar.gz``, a stand-in for mmcv's sdist of ``stack``."""
    name, version, std = MMCV_SDISTS[stack.split("-", 1)[0]]
    root = folder / f"{name}-{version}"
    files = {
        "setup.py": _STAND_IN_SETUP.format(name=name, version=version, std=std),
        "mmcv/__init__.py": f'__version__ = "{version}"\n',
        "mmcv/ops/csrc/common/pytorch_cpp_helper.hpp": _HELPER_HEADER.format(cplusplus=_torch_cplusplus()),
        "mmcv/ops/csrc/pytorch/cpu/nms.cpp": _NMS,
        "mmcv/ops/csrc/pytorch/pybind.cpp": _PYBIND,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sdist = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(root, arcname=root.name)
    shutil.rmtree(root)
    return sdist


def _fresh_copy(destination: Path) -> Path:
    """Copy what the set-up script reads (scripts, requirements, setup.py) into a new folder."""
    clone = destination / "clone"
    for relative in ("scripts", "requirements"):
        shutil.copytree(REPO / relative, clone / relative)
    shutil.copy2(REPO / "setup.py", clone / "setup.py")
    return clone


def _venv_over_this_environment(clone: Path, name: str) -> None:
    """Make ``clone/name`` (no pip of its own) whose sys.path ends with this environment's packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / name)], check=True)
    site_packages = next((clone / name / "lib").glob("python*/site-packages"))
    # An "import" line of a .pth runs: addsitedir appends, and reads that folder's own .pth files.
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    (site_packages / "zz_test_environment.pth").write_text("\n".join(lines) + "\n")


def _run_setup(clone: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/setup_env.sh"], cwd=clone, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def _setup_env(clone: Path, tmp_path: Path, sdist: Path) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RESNEST_PLUGIN_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(STACK=STACK, VENV=".venv-cold", RESNEST_PLUGIN_CACHE="cache",
               RESNEST_PLUGIN_MMCV_SDIST=os.path.relpath(sdist, clone),
               RESNEST_PLUGIN_SETUP_STOP_AFTER="mmcv", MAX_JOBS="2", TMPDIR=str(tmp_path),
               PYTHON=sys.executable, PIP_NO_INDEX="1")
    return env


def test_cold_branch_builds_caches_and_installs_from_relative_paths(tmp_path: Path) -> None:
    """Build -> _ext check -> cache -> install, all from relative VENV/cache; then the cached branch."""
    clone = _fresh_copy(tmp_path)
    _venv_over_this_environment(clone, ".venv-cold")
    sdist = _write_stand_in_sdist(tmp_path, STACK)
    env = _setup_env(clone, tmp_path, sdist)
    name, version, _ = MMCV_SDISTS[GENERATION]

    cold = _run_setup(clone, env)
    assert cold.returncode == 0, cold.stdout[-4000:]
    assert "building from sdist" in cold.stdout, cold.stdout[-4000:]
    assert "precompiled header: given to 2 translation units, unusable in 0" in cold.stdout
    cached = list((clone / "cache" / "wheels").glob(f"{name}-{version}_*/*.whl"))
    assert len(cached) == 1, cold.stdout[-4000:]
    # The stand-in's _ext, compiled with the standard this torch needs (its header #errors
    # otherwise), imports from the new venv.
    probe = subprocess.run(
        [str(clone / ".venv-cold" / "bin" / "python"), "-c",
         # torch first, as mmcv itself does: older torch builds give the extension no
         # rpath to libc10.so, which importing torch loads.
         "import torch, mmcv._ext, mmcv; print(mmcv._ext.nms(3), mmcv.__file__)"],
        capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    count, location = probe.stdout.split()
    assert count == "3"
    assert location.startswith(str(clone / ".venv-cold")), location

    warm = _run_setup(clone, env)
    assert warm.returncode == 0, warm.stdout[-4000:]
    assert "from the wheel cache" in warm.stdout
    assert "building from sdist" not in warm.stdout


def test_cold_branch_refuses_a_wheel_without_ops(tmp_path: Path) -> None:
    """A build that silently skips the ops (no mmcv/_ext) stops the set-up and caches nothing."""
    clone = _fresh_copy(tmp_path)
    _venv_over_this_environment(clone, ".venv-cold")
    env = _setup_env(clone, tmp_path, _write_stand_in_sdist(tmp_path, STACK))
    env["STAND_IN_WITHOUT_OPS"] = "1"
    result = _run_setup(clone, env)
    assert result.returncode == 1
    assert "has no compiled ops (mmcv/_ext*)" in result.stdout
    assert not list((clone / "cache").rglob("*.whl"))


def test_missing_local_sdist_is_named(tmp_path: Path) -> None:
    """A wrong RESNEST_PLUGIN_MMCV_SDIST names the file and what was expected."""
    clone = _fresh_copy(tmp_path)
    _venv_over_this_environment(clone, ".venv-cold")
    env = _setup_env(clone, tmp_path, tmp_path / "no-such-sdist.tar.gz")
    result = _run_setup(clone, env)
    assert result.returncode == 1
    assert "no-such-sdist.tar.gz: no such file" in result.stdout


@pytest.mark.parametrize("flags", [["-c", "a.cpp", "-o", "a.o"], ["--version"]])
def test_pch_wrapper_passes_other_calls_through(tmp_path: Path, flags: list) -> None:
    """Without mmcv's header on the include path the wrapper runs the compiler unchanged (+ -g0)."""
    fake = tmp_path / "fake-cxx"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = dict(os.environ, RESNEST_PLUGIN_REAL_CXX=str(fake), RESNEST_PLUGIN_PCH_DIR=str(tmp_path / "pch"))
    result = subprocess.run(["bash", str(REPO / "scripts" / "pch_cxx.sh"), *flags], env=env,
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == [*flags, "-g0"]
    assert not (tmp_path / "pch").exists()


def test_pch_wrapper_requires_its_folder(tmp_path: Path) -> None:
    """Without RESNEST_PLUGIN_PCH_DIR the wrapper fails and names the variable."""
    env = {key: value for key, value in os.environ.items() if key != "RESNEST_PLUGIN_PCH_DIR"}
    result = subprocess.run(["bash", str(REPO / "scripts" / "pch_cxx.sh"), "--version"], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "RESNEST_PLUGIN_PCH_DIR" in result.stderr


def test_setup_rejects_unknown_stop_point(tmp_path: Path) -> None:
    """A misspelt test seam is refused with the accepted value, before anything is installed."""
    env = dict(os.environ, RESNEST_PLUGIN_SETUP_STOP_AFTER="torch", VENV=str(tmp_path / "v"))
    result = subprocess.run(["bash", str(REPO / "scripts" / "setup_env.sh")], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "RESNEST_PLUGIN_SETUP_STOP_AFTER=torch not understood: expected mmcv" in result.stderr
    assert not (tmp_path / "v").exists()


def test_setup_script_has_no_grep_q_in_a_pipeline() -> None:
    """``... | grep -q`` under pipefail can fail on SIGPIPE (the old _ext check did)."""
    lines = (REPO / "scripts" / "setup_env.sh").read_text().splitlines()
    offending = [line for line in lines if "|" in line.split("grep -q")[0] and "grep -q" in line
                 and not line.lstrip().startswith("#")]
    assert offending == []


def test_stand_in_is_shaped_like_the_real_sdist(tmp_path: Path) -> None:
    """The stand-in keeps what the script relies on: name-version folder and the -std flag to patch."""
    name, version, std = MMCV_SDISTS[GENERATION]
    with tarfile.open(_write_stand_in_sdist(tmp_path, STACK)) as archive:
        setup_py = archive.extractfile(f"{name}-{version}/setup.py").read().decode()
    assert f"-std={std}" in setup_py


def test_build_benchmark_runs_each_variant_through_the_cold_branch(tmp_path: Path) -> None:
    """benchmarks/mmcv_build.py (the source of the README's build times) on the stand-in sdist."""
    sdist = _write_stand_in_sdist(tmp_path, STACK)
    out = tmp_path / "bench" / "mmcv_build.json"
    env = dict(os.environ, PIP_NO_INDEX="1", TMPDIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "mmcv_build.py"), "--stack", STACK, "--sdist", str(sdist),
         "--variants", "plain,pch", "--no-smoke", "--max-jobs", "2", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data["dist"], data["version"]) == MMCV_SDISTS[GENERATION][:2]
    rows = {row["variant"]: row for row in data["variants"]}
    assert list(rows) == ["plain", "pch"]
    for row in rows.values():
        assert row["returncode"] == 0 and row["build_wall_s"] > 0 and row["cpu_s"] > 0
        assert row["wheel_bytes"] > 0 and row["ext_bytes"] > 0
    assert "given to 2 translation units, unusable in 0" in rows["pch"]["output_tail"]
    assert "given to" not in rows["plain"]["output_tail"]
    table = out.with_suffix(".md").read_text()
    assert "| plain |" in table and "| pch |" in table
