"""Build resnest_plugin's wheel and sdist, and use the wheel as a pip user would.

Shared by ``tests/test_distribution.py`` (what the distributions contain) and
each stack's ``test_wheel_install*`` (the installed wheel with MMPose's stock
tools). The wheel is built from a copy of the working tree (tracked and
untracked-but-not-ignored files: what a fresh clone would hold), installed
non-editable into a scratch ``--target`` folder that goes first on
``PYTHONPATH``, and every check runs from a folder outside the clone, so the
editable install of the project environment cannot answer in its place.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional

__all__ = ["assert_backbone_comes_from_wheel", "build_sdist", "build_wheel", "copy_working_tree", "install_wheel",
           "installed_config", "installed_env", "mim_search", "run_installed"]

REPO = Path(__file__).resolve().parents[1]


def copy_working_tree(destination: Path) -> Path:
    """Copy the files a fresh clone would hold into ``destination/resnest_plugin``.

    Args:
        destination: An empty folder.

    Returns:
        The copy's root.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    root = destination / "resnest_plugin"
    for relative in filter(None, listed):
        source = REPO / relative
        if not source.exists() and not source.is_symlink():  # deleted, not yet committed
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return root


def _run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(source: Path, out_dir: Path) -> Path:
    """``pip wheel`` the project at ``source`` (no deps, this environment's setuptools).

    Args:
        source: A copy of the working tree (:func:`copy_working_tree`).
        out_dir: Where the wheel goes.

    Returns:
        The wheel file.
    """
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "-w", str(out_dir), str(source)], cwd=source)
    (wheel,) = out_dir.glob("resnest_plugin-*.whl")
    return wheel


def build_sdist(source: Path, out_dir: Path) -> Path:
    """``setup.py sdist`` the project at ``source``.

    Args:
        source: A copy of the working tree.
        out_dir: Where the ``.tar.gz`` goes.

    Returns:
        The sdist file.
    """
    _run([sys.executable, "setup.py", "-q", "sdist", "-d", str(out_dir)], cwd=source)
    (sdist,) = out_dir.glob("resnest_plugin-*.tar.gz")
    return sdist


def install_wheel(wheel: Path, target: Path) -> Path:
    """Install ``wheel`` (not editable, no deps) into the folder ``target``.

    Args:
        wheel: The wheel file.
        target: A new folder.

    Returns:
        ``target``.
    """
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
          "--disable-pip-version-check", "--target", str(target), str(wheel)], cwd=target.parent)
    return target


def installed_env(target: Path, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """This process's environment with ``target`` first on ``PYTHONPATH`` (and one OpenMP thread)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def run_installed(args: List[str], target: Path, cwd: Path, timeout: float = 900,
                  ) -> subprocess.CompletedProcess:
    """Run this interpreter with ``args``, the installed wheel first on the path, from ``cwd``.

    Args:
        args: Arguments after the interpreter (``["-c", code]``, a script and its options).
        target: The wheel's ``--target`` folder.
        cwd: A folder outside the clone.
        timeout: Seconds before the run is killed.

    Returns:
        The finished process (text output captured); never raises on failure.
    """
    return subprocess.run([sys.executable, *args], cwd=cwd, env=installed_env(target),
                          capture_output=True, text=True, timeout=timeout)


def installed_config(target: Path, relative: str) -> Path:
    """A shipped config inside the installed package (``resnest_plugin/.mim/configs/...``).

    Args:
        target: The wheel's ``--target`` folder.
        relative: Path under ``configs/``.

    Returns:
        The config file, checked to be a regular file (not a link into the clone).
    """
    path = target / "resnest_plugin" / ".mim" / "configs" / relative
    assert path.is_file() and not path.is_symlink(), f"{path} is not a regular file"
    return path


def mim_search(target: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``mim search resnest_plugin`` with the installed wheel first on the path."""
    return run_installed(["-m", "mim", "search", "resnest_plugin"], target, cwd=cwd, timeout=300)


def assert_backbone_comes_from_wheel(installed: Mapping[str, Path], build: str) -> None:
    """Build ``resnest_plugin.ResNeSt`` with the host's registry; assert its class is the wheel's.

    Args:
        installed: ``target`` (the wheel's folder) and ``outside`` (a folder outside the clone).
        build: A Python expression that builds the backbone after ``import resnest_plugin``.
    """
    code = f"import sys, resnest_plugin; net = {build}; print(sys.modules[type(net).__module__].__file__)"
    result = run_installed(["-c", code], installed["target"], cwd=installed["outside"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(installed["target"] / "resnest_plugin")), result.stdout
