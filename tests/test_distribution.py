"""What ``pip wheel .`` and the sdist hold, and the installed wheel's own view of itself.

Both MMPose generations' configs as real files (not links into the clone),
the model index and metafiles ``mim search`` reads, every row's pinned
requirement files, and the package alone: no tests, no benchmarks. Run on
each stack; the stock tools on the installed wheel are each stack's
``test_wheel_install*`` (slow).
"""
from __future__ import annotations

import tarfile
import zipfile
from typing import Iterator

import pytest

from wheel_helpers import REPO, build_sdist, copy_working_tree, run_installed

CONFIG_FOLDERS = ("configs/top_down/resnest/coco", "configs/body_2d_keypoint/topdown_heatmap/coco")
#: Every row's pins (docs/compatibility.md, "Support matrix") and both generations' runtime lists.
REQUIREMENTS = ("requirements/constraints.txt", "requirements/runtime.txt", "requirements/tests.txt",
                "requirements/mmpose0-legacy/constraints.txt", "requirements/mmpose1/constraints.txt",
                "requirements/mmpose1/runtime.txt", "requirements/mmpose1-torch2.1/constraints.txt",
                "requirements/mmpose1-newest/constraints.txt")


def _repo_configs() -> list:
    return sorted(str(p.relative_to(REPO)) for folder in ("configs",)
                  for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".yml", ".md"))


@pytest.fixture(scope="module")
def distributions(installed_wheel: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The installed wheel (conftest) and an sdist built from a copy of the working tree."""
    root = tmp_path_factory.mktemp("sdist")
    sdist = build_sdist(copy_working_tree(root / "src"), root / "sdist")
    yield dict(installed_wheel, sdist=sdist)


def test_wheel_carries_every_config_model_index_and_requirements_as_files(distributions) -> None:
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        infos = {info.filename: info for info in wheel.infolist()}
    mim = "resnest_plugin/.mim/"
    for config in _repo_configs():
        assert mim + config in infos, f"{config} is not in the wheel"
    assert mim + "model-index.yml" in infos
    for requirement in REQUIREMENTS:
        assert mim + requirement in infos, f"{requirement} is not in the wheel"
    # A symlink would be stored with the S_IFLNK mode bits (0o120000) in external_attr.
    links = [name for name, info in infos.items() if (info.external_attr >> 16) & 0o170000 == 0o120000]
    assert links == []
    assert not [name for name in infos if name.startswith(("tests/", "benchmarks/"))]
    metadata = next(name for name in infos if name.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        summary = wheel.read(metadata).decode()
    assert "MMPose 0.x" in summary.split("Summary:")[1].splitlines()[0]
    assert "MMPose 1.x" in summary.split("Summary:")[1].splitlines()[0]


def test_sdist_carries_configs_metafiles_and_both_stacks_pins_as_files(distributions) -> None:
    with tarfile.open(distributions["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    for config in _repo_configs():
        assert config in members, f"{config} is not in the sdist"
    for path in ("model-index.yml", *REQUIREMENTS, *(f"{folder}/resnest_coco.yml" for folder in CONFIG_FOLDERS),
                 "scripts/setup_env.sh", "scripts/pch_cxx.sh"):
        assert path in members, f"{path} is not in the sdist"
        assert members[path].isfile(), f"{path} is not a regular file in the sdist"
    mim_files = [m for name, m in members.items()
                 if name.startswith("resnest_plugin/.mim/") and not m.isdir()]
    assert len(mim_files) > len(_repo_configs())
    assert [m.name for m in mim_files if not m.isfile()] == []  # no symlinks into the clone


def test_installed_wheel_imports_from_its_target_and_knows_it_is_no_clone(distributions) -> None:
    target = distributions["target"]
    code = ("import resnest_plugin, resnest_plugin.hosts as h; "
            "print(resnest_plugin.__file__); print(h.installed_from_clone()); "
            "print(h.stack_advice('mmpose0'))")
    result = run_installed(["-c", code], target, cwd=distributions["outside"])
    assert result.returncode == 0, result.stderr
    location, from_clone, advice = result.stdout.strip().splitlines()
    assert location.startswith(str(target))
    assert from_clone == "False"
    assert "pip install mmpose==0.29.0" in advice and "make setup" not in advice


def test_clone_advice_names_the_make_command() -> None:
    from resnest_plugin.hosts import installed_from_clone, stack_advice

    assert installed_from_clone()
    assert "`make setup STACK=mmpose1`" in stack_advice("mmpose1")
