"""Shared pytest set-up: fail loudly when run outside the project venv."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "tests" / "data" / "coco"

_REQUIRED = ("torch", "mmcv", "mmpose", "resnest_plugin")
_missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
if _missing:
    raise pytest.UsageError(
        f"missing packages {_missing}: the tests need the project environment. "
        "Run `make test` (it builds .venv with scripts/setup_env.sh), or `make setup` "
        "and then `.venv/bin/python -m pytest tests`.")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden``: rewrite tests/golden/* instead of only comparing."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="regenerate the golden state-dict key/shape files (review the diff!)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository checkout."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def coco_root() -> Path:
    """The bundled mini COCO (4 val2017 images, annotations, detector boxes)."""
    return DATA_ROOT
