"""Shared pytest set-up: fail loudly outside a project venv; collect the installed host's tests.

Layout: ``tests/*.py`` run on both MMPose generations (the core, and tests
parametrised over the host); ``tests/mmpose0/`` only on the MMPose 0.x stack
(``make test``), ``tests/mmpose1/`` only on the 1.x stack
(``make test STACK=mmpose1``). The other host's folder is not collected at
all (its modules import that host's packages), so nothing is skipped.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_REQUIRED = ("torch", "mmcv", "mmpose", "resnest_plugin")
_missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
if _missing:
    raise pytest.UsageError(
        f"missing packages {_missing}: the tests need the project environment. "
        "Run `make test` (it builds .venv with scripts/setup_env.sh), or `make setup` "
        "and then `.venv/bin/python -m pytest tests`.")

from resnest_plugin.hosts import installed_host  # noqa: E402  (after the check above)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "tests" / "data" / "coco"
HOST = installed_host()
if HOST is None:
    raise pytest.UsageError("mmpose is not installed: run `make test` (MMPose 0.x) or "
                            "`make test STACK=mmpose1` (MMPose 1.x)")
# pytest reads this module-level name: paths (relative to this folder) not to collect.
collect_ignore_glob = [f"{other}/*" for other in ("mmpose0", "mmpose1") if other != HOST]


def pytest_collection_modifyitems(items: list) -> None:
    """Mark every test of a host folder ``host``: ``make test-matrix`` runs the host-free rest."""
    for item in items:
        if Path(str(item.fspath)).parent.name in ("mmpose0", "mmpose1"):
            item.add_marker(pytest.mark.host)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden``: rewrite tests/golden/* instead of only comparing."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="regenerate the golden state-dict key/shape files (review the diff!)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository checkout."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """This working tree's wheel, installed (not editable) into a ``--target`` folder.

    Returns:
        ``wheel`` (the file), ``target`` (the folder to put first on
        ``PYTHONPATH``) and ``outside`` (a folder outside the clone to run from).
    """
    from wheel_helpers import build_wheel, copy_working_tree, install_wheel

    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(copy_working_tree(root / "src"), root / "wheelhouse")
    return dict(wheel=wheel, target=install_wheel(wheel, root / "site"), outside=root)


@pytest.fixture(scope="session")
def coco_root() -> Path:
    """The bundled mini COCO (4 val2017 images, annotations, detector boxes)."""
    return DATA_ROOT
