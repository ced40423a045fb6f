"""Registration: scoped name, no clash with MMPose's built-in, import-safe."""
from __future__ import annotations

import importlib
import subprocess
import sys

import mmpose.models
from mmpose.models import build_backbone
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt

import resnest_plugin
from resnest_plugin.hosts import SCOPE
from resnest_plugin.hosts.mmpose0 import MODELS, ResNeSt
from resnest_plugin.models import ResNeSt as CoreResNeSt


def test_scoped_type_builds_plugin_and_plain_type_builds_builtin() -> None:
    ours = build_backbone(dict(type="resnest_plugin.ResNeSt", depth=50))
    builtin = build_backbone(dict(type="ResNeSt", depth=50))
    assert type(ours) is ResNeSt and issubclass(ResNeSt, CoreResNeSt)
    assert type(builtin) is BuiltinResNeSt


def test_child_registry_hangs_under_mmpose_models() -> None:
    assert SCOPE == "resnest_plugin"
    assert MODELS.parent is mmpose.models.builder.MODELS
    assert mmpose.models.builder.MODELS.children[SCOPE] is MODELS
    assert MODELS.get("ResNeSt") is ResNeSt
    assert mmpose.models.builder.MODELS.get("ResNeSt") is BuiltinResNeSt


def test_reimport_and_reload_do_not_raise_or_duplicate() -> None:
    importlib.reload(importlib.import_module("resnest_plugin.hosts.mmpose0"))
    importlib.reload(importlib.import_module("resnest_plugin.registry"))
    importlib.reload(resnest_plugin)
    import resnest_plugin.hosts.mmpose0 as host

    assert host.MODELS is mmpose.models.builder.MODELS.children[SCOPE]
    assert list(host.MODELS.module_dict) == ["ResNeSt"]
    assert list(host.DATASETS.module_dict) == ["CheckedTopDownCocoDataset"]
    assert type(build_backbone(dict(type="resnest_plugin.ResNeSt", depth=50))).__name__ == "ResNeSt"


def test_import_order_does_not_matter_in_a_fresh_process() -> None:
    code = (
        "import resnest_plugin, mmpose.models, resnest_plugin;"
        "from mmpose.models import build_backbone;"
        "a = build_backbone(dict(type='resnest_plugin.ResNeSt', depth=50));"
        "b = build_backbone(dict(type='ResNeSt', depth=50));"
        "print(type(a).__module__, type(b).__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["resnest_plugin.hosts.mmpose0", "mmpose.models.backbones.resnest"]


def test_package_version_is_exposed() -> None:
    assert resnest_plugin.__version__ == "0.1.0"
    assert "ResNeSt" in resnest_plugin.__all__


def test_one_x_host_module_refuses_with_one_line_naming_the_stack() -> None:
    from resnest_plugin.hosts import StackMismatchError

    try:
        importlib.import_module("resnest_plugin.hosts.mmpose1")
    except StackMismatchError as error:
        message = str(error)
    else:
        raise AssertionError("resnest_plugin.hosts.mmpose1 imported on the MMPose 0.x stack")
    assert "\n" not in message
    assert "MMPose 1.x" in message and "mmpose 0.29.0 is installed" in message
    assert "`make setup STACK=mmpose1`" in message and ".venv-mmpose1/bin/python" in message


def test_one_x_config_on_this_stack_fails_with_the_one_line_error(repo_root) -> None:
    import pytest
    from mmcv import Config

    from resnest_plugin.hosts import StackMismatchError

    config = (repo_root / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco" /
              "td-hm_resnest50_8xb64-210e_coco-256x192.py")
    with pytest.raises(StackMismatchError, match="needs MMPose 1.x"):
        Config.fromfile(str(config))


def test_one_x_config_through_the_stock_train_tool_prints_one_line(repo_root) -> None:
    from tools_helpers import stock_tool

    config = (repo_root / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco" /
              "td-hm_resnest50_8xb64-210e_coco-256x192.py")
    result = subprocess.run([sys.executable, str(stock_tool("train.py")), str(config)],
                            capture_output=True, text=True, cwd=repo_root)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("resnest_plugin.hosts.StackMismatchError: ") and "STACK=mmpose1" in last
