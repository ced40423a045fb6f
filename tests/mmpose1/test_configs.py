"""The MMPose 1.x COCO configs: the same recipes as MMPose 1.3.2's own, field for field.

Oracle: MMPose 1.3.2's own ResNeSt COCO configs and metafile, read from the
installed mmpose package (``mmpose/.mim/configs/body_2d_keypoint/
topdown_heatmap/coco``), and its backbone source for the stem default.
Config loading only (fast): the models these configs build are tested
elsewhere.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any, Dict, Tuple

import mmpose
import modelindex
import pytest
import yaml
from mim.commands.search import convert2df
from mmengine.config import Config, DictAction

from config_helpers import flatten

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_CONFIG_DIR = REPO_ROOT / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
OUR_BASE_RUNTIME = REPO_ROOT / "configs" / "body_2d_keypoint" / "_base_" / "default_runtime.py"
OUR_METAFILE = OUR_CONFIG_DIR / "resnest_coco.yml"
MMPOSE_ROOT = Path(mmpose.__file__).parent
MMPOSE_CONFIG_DIR = MMPOSE_ROOT / ".mim" / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
MMPOSE_BASE_RUNTIME = MMPOSE_ROOT / ".mim" / "configs" / "_base_" / "default_runtime.py"
CONFIGS = (
    "td-hm_resnest50_8xb64-210e_coco-256x192.py",
    "td-hm_resnest50_8xb64-210e_coco-384x288.py",
    "td-hm_resnest101_8xb64-210e_coco-256x192.py",
    "td-hm_resnest101_8xb32-210e_coco-384x288.py",
    "td-hm_resnest200_8xb64-210e_coco-256x192.py",
    "td-hm_resnest200_8xb16-210e_coco-384x288.py",
    "td-hm_resnest269_8xb32-210e_coco-256x192.py",
    "td-hm_resnest269_8xb16-210e_coco-384x288.py",
)
#: Depths whose ImageNet stem (and our backbone's default) is 128 wide.
WIDE_STEM_DEPTHS = ("101", "200", "269")
OFFLINE_OPTION = "model.backbone.init_cfg=None"


def _depth(name: str) -> str:
    return name.split("_")[1][len("resnest"):]


def _flat_config(path: Path) -> Dict[str, Any]:
    return dict(flatten(Config.fromfile(str(path)).to_dict()))


def _expected_differences(name: str) -> Dict[str, Tuple[Any, Any]]:
    """Every field where our config may differ from MMPose's: ``{key: (mmpose, ours)}``.

    ``None`` on the MMPose side means "absent there". The runtime base is a
    verbatim copy (test_base_runtime_is_mmpose_verbatim), so it adds none.
    """
    expected: Dict[str, Tuple[Any, Any]] = {
        # The plugin's backbone (its scoped registry name) instead of MMPose's
        # built-in one, which stays registered as plain `ResNeSt`.
        "model.backbone.type": ("ResNeSt", "resnest_plugin.ResNeSt"),
        # How the stock tools import the plugin: the 1.x host module registers
        # the backbone and stops with a one-line error on the 0.x stack.
        "custom_imports.imports.0": (None, "resnest_plugin.hosts.mmpose1"),
        "custom_imports.allow_failed_imports": (None, False),
        # MMPose's CocoDataset whose errors also name a corrupt JSON file.
        "dataset_type": ("CocoDataset", "resnest_plugin.CheckedCocoDataset"),
    }
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        expected[f"{loader}.dataset.type"] = ("CocoDataset", "resnest_plugin.CheckedCocoDataset")
    if _depth(name) in WIDE_STEM_DEPTHS:
        # MMPose's config leaves stem_channels at ResNet's default (64, checked
        # in test_wide_stem_configs_pin_mmpose_default_stem); ours must spell it
        # out because our default for this depth is 128 (official ResNeSt,
        # mmcls), and the released checkpoints have a 64-channel stem.
        expected["model.backbone.stem_channels"] = (None, 64)
        # MMPose loads mmcls://resnestXX (128-wide stem) with strict=False,
        # skipping the stem with a warning; our loader errors on a stem
        # mismatch unless told not to.
        expected["model.backbone.pretrained_strict"] = (None, False)
    return expected


def test_config_names_equal_mmpose_configs() -> None:
    ours = sorted(p.name for p in OUR_CONFIG_DIR.glob("*.py"))
    theirs = sorted(p.name for p in MMPOSE_CONFIG_DIR.glob("td-hm_resnest*.py"))
    assert theirs == sorted(CONFIGS), f"MMPose's ResNeSt COCO configs under {MMPOSE_CONFIG_DIR}: {theirs}"
    assert ours == sorted(CONFIGS), f"expected {sorted(CONFIGS)} in {OUR_CONFIG_DIR}, found {ours}"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_equals_mmpose_recipe_field_for_field(name: str) -> None:
    ours = _flat_config(OUR_CONFIG_DIR / name)
    theirs = _flat_config(MMPOSE_CONFIG_DIR / name)
    differences = {
        key: (theirs.get(key), ours.get(key))
        for key in sorted(set(ours) | set(theirs))
        if key not in ours or key not in theirs or ours[key] != theirs[key]
        or type(ours[key]) is not type(theirs[key])
    }
    expected = _expected_differences(name)
    unexpected = {k: v for k, v in differences.items() if k not in expected}
    assert not unexpected, f"{name}: fields differing from MMPose's config (mmpose, ours): {unexpected}"
    assert differences == expected, f"{name}: expected differences {expected}, got {differences}"
    # Guard against a vacuous comparison: the recipe and the runtime really are in there.
    assert theirs["optim_wrapper.optimizer.lr"] == ours["optim_wrapper.optimizer.lr"] == 5e-4
    assert ours["default_scope"] == "mmpose"
    assert ours["model.backbone.init_cfg.checkpoint"] == f"mmcls://resnest{_depth(name)}"
    assert len(ours) > 100, f"only {len(ours)} flattened fields: flattening is broken"


def _class_node(tree: ast.Module, name: str) -> ast.ClassDef:
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    return node


def _init_defaults(cls: ast.ClassDef) -> Dict[str, ast.expr]:
    """``__init__`` argument name -> its default's expression node."""
    (init,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    args = init.args.args[len(init.args.args) - len(init.args.defaults):]
    defaults = dict(zip((a.arg for a in args), init.args.defaults))
    defaults.update({a.arg: d for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults)
                     if d is not None})
    return defaults


def test_wide_stem_configs_pin_mmpose_default_stem() -> None:
    """MMPose 1.x's ResNeSt -> ResNetV1d -> ResNet leaves the stem at ResNet's 64.

    Read from the installed source (importing mmpose.models would pull in
    mmcv.ops and mmdet).
    """
    backbones = MMPOSE_ROOT / "models" / "backbones"
    resnest = ast.parse((backbones / "resnest.py").read_text())
    resnet = ast.parse((backbones / "resnet.py").read_text())
    assert [ast.unparse(b) for b in _class_node(resnest, "ResNeSt").bases] == ["ResNetV1d"]
    assert "stem_channels" not in _init_defaults(_class_node(resnest, "ResNeSt"))
    assert [ast.unparse(b) for b in _class_node(resnet, "ResNetV1d").bases] == ["ResNet"]
    assert "stem_channels" not in _init_defaults(_class_node(resnet, "ResNetV1d"))
    default = ast.literal_eval(_init_defaults(_class_node(resnet, "ResNet"))["stem_channels"])
    assert default == 64, f"MMPose ResNet's default stem_channels is {default}, expected 64"
    for name in CONFIGS:
        backbone = Config.fromfile(str(OUR_CONFIG_DIR / name)).model.backbone
        if _depth(name) in WIDE_STEM_DEPTHS:
            assert backbone.stem_channels == default and backbone.pretrained_strict is False, name
        else:
            assert "stem_channels" not in backbone and "pretrained_strict" not in backbone, name


def _code_lines(path: Path) -> list:
    """The file's lines after its leading comment block (our copies add a header)."""
    lines = path.read_text().splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return lines


def test_base_runtime_is_mmpose_verbatim() -> None:
    """Our 1.x ``_base_/default_runtime.py`` is MMPose 1.3.2's, plus a header comment."""
    assert _code_lines(OUR_BASE_RUNTIME) == _code_lines(MMPOSE_BASE_RUNTIME)
    header = OUR_BASE_RUNTIME.read_text().split("\ndefault_scope", 1)[0]
    assert "MMPose 1.3.2" in header and "copy" in header


@pytest.mark.parametrize("name", CONFIGS)
def test_config_keeps_mmpose_data_layout(name: str) -> None:
    """``data_root`` and the detector-box file are where MMPose's docs put them."""
    cfg = Config.fromfile(str(OUR_CONFIG_DIR / name))
    assert cfg.train_dataloader.dataset.data_root == "data/coco/"
    assert cfg.val_dataloader.dataset.bbox_file == ("data/coco/person_detection_results/"
                                                    "COCO_val2017_detections_AP_H_56_person.json")
    assert cfg.test_evaluator.ann_file == "data/coco/annotations/person_keypoints_val2017.json"
    assert cfg.test_dataloader == cfg.val_dataloader


@pytest.mark.parametrize("name", CONFIGS)
def test_offline_option_spelled_in_the_header_clears_init_cfg(name: str) -> None:
    """``--cfg-options model.backbone.init_cfg=None``, parsed as the stock tools/train.py does."""
    path = OUR_CONFIG_DIR / name
    assert f"--cfg-options {OFFLINE_OPTION}" in path.read_text()
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    options = parser.parse_args(["--cfg-options", OFFLINE_OPTION]).cfg_options
    cfg = Config.fromfile(str(path))
    before = cfg.model.backbone.to_dict()
    cfg.merge_from_dict(options)
    after = cfg.model.backbone.to_dict()
    assert "init_cfg" in after and after["init_cfg"] is None
    assert {k: v for k, v in after.items() if k != "init_cfg"} == {
        k: v for k, v in before.items() if k != "init_cfg"}


# --- model index (MMPose 1.x metafile form) --------------------------------------------------

def _our_models() -> list:
    return yaml.safe_load(OUR_METAFILE.read_text())["Models"]


def test_model_index_imports_the_metafile() -> None:
    index = yaml.safe_load((REPO_ROOT / "model-index.yml").read_text())
    assert OUR_METAFILE.relative_to(REPO_ROOT).as_posix() in index["Import"]


def test_metafile_lists_every_config() -> None:
    metafile = yaml.safe_load(OUR_METAFILE.read_text())
    collections = {c["Name"] for c in metafile["Collections"]}
    models = metafile["Models"]
    configs = sorted(m["Config"] for m in models)
    assert configs == sorted(f"configs/body_2d_keypoint/topdown_heatmap/coco/{n}" for n in CONFIGS)
    assert all((REPO_ROOT / c).is_file() for c in configs)
    for model in models:
        assert model["In Collection"] in collections, model["Name"]
        # MMPose's model name, prefixed with the package (as the 0.x names are).
        assert model["Name"] == f"resnest_plugin_{Path(model['Config']).stem}"


def test_metafile_results_and_weights_are_mmpose_model_zoo() -> None:
    """Oracle: MMPose 1.3.2's own metafile for the same configs (installed with mmpose)."""
    zoo = yaml.safe_load((MMPOSE_CONFIG_DIR / "resnest_coco.yml").read_text())["Models"]
    zoo_by_config = {Path(m["Config"]).name: m for m in zoo}
    assert sorted(zoo_by_config) == sorted(CONFIGS)
    for model in _our_models():
        reference = zoo_by_config[Path(model["Config"]).name]
        assert model["Results"] == reference["Results"], model["Name"]
        assert model["Weights"] == reference["Weights"], model["Name"]
        assert model["Metadata"] == reference["Metadata"], model["Name"]


def test_model_index_loads_with_openmmlab_parser() -> None:
    """The ``model-index`` package and mim's table (``mim search``) read the eight 1.x models."""
    index = modelindex.load(str(REPO_ROOT / "model-index.yml"))
    ours = {Path(m.config).name: m for m in index.models
            if m.config.startswith("configs/body_2d_keypoint/")}
    assert sorted(ours) == sorted(CONFIGS)
    assert all(m.weights.startswith("https://download.openmmlab.com/") for m in ours.values())
    table = convert2df(index)
    assert table.loc["resnest_plugin_td-hm_resnest269_8xb16-210e_coco-384x288", "coco/ap"] == 0.754
