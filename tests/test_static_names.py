"""Static name check of the project's Python: no undefined or shadowed names.

A name used but never imported (a helper moved to another module, its import
left behind) only fails when its line runs; in a slow test that is half an hour
into CI. pyflakes finds it by reading the source, so the fast tier of either
stack catches it. Unused imports are not reported: the plugin's tests import
``resnest_plugin`` for its side effect (registration, compatibility patches).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import List

import pytest
from pyflakes import checker, messages

REPO_ROOT = Path(__file__).resolve().parents[1]
# configs/ is left out: MMPose configs read names (`_base_` inheritance, `{{_base_.x}}`)
# that only the config loader defines.
CHECKED_FOLDERS = ("resnest_plugin", "tests", "tools", "benchmarks", "scripts")
# The message kinds that are bugs, not style: each one is a line that raises when it runs.
ERROR_KINDS = (
    messages.UndefinedName,
    messages.UndefinedLocal,
    messages.UndefinedExport,
    messages.RedefinedWhileUnused,
    messages.ImportStarUsed,
    messages.DuplicateArgument,
    messages.ReturnOutsideFunction,
    messages.YieldOutsideFunction,
    messages.ContinueOutsideLoop,
    messages.BreakOutsideLoop,
    messages.FStringMissingPlaceholders,
    messages.PercentFormatInvalidFormat,
    messages.StringDotFormatMissingArgument,
    messages.IsLiteral,
)


def python_files() -> List[Path]:
    """The project's own Python sources, in a stable order."""
    files = [REPO_ROOT / "setup.py"]
    for folder in CHECKED_FOLDERS:
        files.extend(sorted((REPO_ROOT / folder).rglob("*.py")))
    return files


def name_errors(path: Path) -> List[str]:
    """pyflakes' error-kind messages for one file, as ``path:line: message``.

    Args:
        path: A Python source file.

    Returns:
        One line per error; empty when the file is clean.
    """
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    found = checker.Checker(tree, filename=str(path))
    rel = path.relative_to(REPO_ROOT)
    return [f"{rel}:{m.lineno}: {m.message % m.message_args}"
            for m in found.messages if isinstance(m, ERROR_KINDS)]


def test_project_has_python_sources_to_check() -> None:
    files = python_files()
    assert len(files) > 50, f"expected the project's sources, found {len(files)} files"
    assert REPO_ROOT / "resnest_plugin" / "__init__.py" in files


def test_checker_reports_an_undefined_name(tmp_path: Path) -> None:
    # The oracle: a file with the bug this test exists for is reported.
    broken = tmp_path / "broken.py"
    broken.write_text("def f():\n    return parse_test_output('x')\n")
    tree = ast.parse(broken.read_text(), filename=str(broken))
    found = [m for m in checker.Checker(tree, filename=str(broken)).messages
             if isinstance(m, ERROR_KINDS)]
    assert [type(m) for m in found] == [messages.UndefinedName]
    assert found[0].message_args == ("parse_test_output",)


@pytest.mark.parametrize("folder", ("setup.py",) + CHECKED_FOLDERS)
def test_no_undefined_or_shadowed_names(folder: str) -> None:
    files = [f for f in python_files()
             if f.relative_to(REPO_ROOT).parts[0] == folder]
    assert files, f"no Python files under {folder}"
    errors = [line for f in files for line in name_errors(f)]
    assert not errors, "pyflakes errors:\n" + "\n".join(errors)
