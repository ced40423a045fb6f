"""The shipped COCO configs: same recipe as MMPose 0.29's own, and every one builds and trains.

Oracle: MMPose's own ResNeSt COCO configs, read from the installed mmpose
package (``mmpose/.mim/configs``), and the TopDown model MMPose builds from
them with its built-in ``ResNeSt``.
"""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple

import mmpose
import modelindex
import pytest
import torch
import yaml
from mim.commands.search import convert2df
from mmcv import Config
from mmpose.models import build_posenet
from mmpose.models.backbones import ResNet as MMPoseResNet

import resnest_plugin  # noqa: F401  (registers resnest_plugin.ResNeSt)
from resnest_plugin.models import ARCH_SETTINGS

from model_helpers import randomise

from config_helpers import flatten

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_CONFIG_DIR = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco"
MMPOSE_CONFIG_DIR = (Path(mmpose.__file__).parent / ".mim" / "configs" / "body" /
                     "2d_kpt_sview_rgb_img" / "topdown_heatmap" / "coco")
SEED_CONFIGS = ("resnest50_coco_256x192", "resnest50_coco_384x288",
                "resnest101_coco_256x192", "resnest101_coco_384x288")
# MMPose 0.29's ResNeSt-200/269 recipes (released checkpoints of 2021-05-17).
DEEP_CONFIGS = ("resnest200_coco_256x192", "resnest200_coco_384x288",
                "resnest269_coco_256x192", "resnest269_coco_384x288")
CONFIG_NAMES = SEED_CONFIGS + DEEP_CONFIGS
# Configs whose depth has a 128-channel default stem in the plugin (ImageNet
# ResNeSt-101/200/269) while MMPose's built-in model and checkpoints use 64.
WIDE_STEM_CONFIGS = tuple(n for n in CONFIG_NAMES if not n.startswith("resnest50_"))
# The MMPose 0.x model-zoo configs. Not configs/body_2d_keypoint (the MMPose 1.x
# configs, tests/mmpose1) nor configs/demo (the main job's, tests/mmpose0/test_main_job.py):
# they have no same-named MMPose 0.29 config to compare with.
SHIPPED_CONFIGS = sorted(OUR_CONFIG_DIR.glob("*.py"))


def _depth(name: str) -> int:
    """``"resnest269_coco_256x192"`` -> 269."""
    match = re.fullmatch(r"resnest(\d+)_coco_\d+x\d+", name)
    assert match, f"unexpected config name {name!r}"
    return int(match.group(1))


def _flat_config(path: Path) -> Dict[str, Any]:
    return dict(flatten(Config.fromfile(str(path))._cfg_dict.to_dict()))


def _expected_differences(name: str) -> Dict[str, Tuple[Any, Any]]:
    """Every field where our config may differ from MMPose's: ``{key: (mmpose, ours)}``.

    ``None`` on the MMPose side means "absent there".
    """
    expected: Dict[str, Tuple[Any, Any]] = {
        # The plugin's backbone instead of MMPose's built-in one.
        "model.backbone.type": ("ResNeSt", "resnest_plugin.ResNeSt"),
        # How the plugin gets imported by the stock tools.
        "custom_imports.imports.0": (None, "resnest_plugin.hosts.mmpose0"),
        "custom_imports.allow_failed_imports": (None, False),
    }
    # Same samples and evaluation (tests/test_data_errors.py), errors that
    # name the bad file.
    for split in ("train", "val", "test"):
        expected[f"data.{split}.type"] = ("TopDownCocoDataset", "resnest_plugin.CheckedTopDownCocoDataset")
    if name in WIDE_STEM_CONFIGS:
        # MMPose's config leaves stem_channels at ResNet's default (64, checked
        # in test_wide_stem_depths_spell_out_mmpose_default_stem); ours must
        # spell it out because our default for depths 101/200/269 is 128.
        expected["model.backbone.stem_channels"] = (None, 64)
        # MMPose skips the 128-wide ImageNet stem of mmcls://resnest{101,200,269}
        # with a warning; the plugin errors on a stem mismatch unless told not to.
        expected["model.backbone.pretrained_strict"] = (None, False)
    return expected


def test_the_eight_configs_are_shipped() -> None:
    shipped = sorted(p.stem for p in OUR_CONFIG_DIR.glob("*.py"))
    assert shipped == sorted(CONFIG_NAMES), f"expected {sorted(CONFIG_NAMES)}, found {shipped}"


def test_mmpose_reference_configs_are_installed() -> None:
    missing = [n for n in CONFIG_NAMES if not (MMPOSE_CONFIG_DIR / f"{n}.py").is_file()]
    assert not missing, f"MMPose's own configs {missing} not found under {MMPOSE_CONFIG_DIR}"


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_equals_mmpose_recipe_field_for_field(name: str) -> None:
    ours = _flat_config(OUR_CONFIG_DIR / f"{name}.py")
    theirs = _flat_config(MMPOSE_CONFIG_DIR / f"{name}.py")
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
    # Guard against a vacuous comparison: the recipe really is in there.
    assert theirs["optimizer.lr"] == ours["optimizer.lr"] == 5e-4
    assert theirs["model.backbone.depth"] == ours["model.backbone.depth"] == _depth(name)
    assert len(ours) > 500, f"only {len(ours)} flattened fields: flattening is broken"


def test_wide_stem_depths_spell_out_mmpose_default_stem() -> None:
    default = inspect.signature(MMPoseResNet.__init__).parameters["stem_channels"].default
    assert default == 64, f"MMPose ResNet's default stem_channels is {default}, expected 64"
    assert sorted({_depth(n) for n in WIDE_STEM_CONFIGS}) == [101, 200, 269]
    for name in WIDE_STEM_CONFIGS:
        # Without the explicit 64 our backbone would take its own default (128).
        assert ARCH_SETTINGS[_depth(name)].stem_channels == 128, name
        theirs = Config.fromfile(str(MMPOSE_CONFIG_DIR / f"{name}.py"))
        assert "stem_channels" not in theirs.model.backbone, f"{name}: MMPose now sets stem_channels"
        cfg = Config.fromfile(str(OUR_CONFIG_DIR / f"{name}.py"))
        assert cfg.model.backbone.stem_channels == default
        assert cfg.model.backbone.pretrained_strict is False


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_keeps_mmpose_data_layout(name: str) -> None:
    """``data_root`` and the detector-box file are where MMPose's docs put them."""
    cfg = Config.fromfile(str(OUR_CONFIG_DIR / f"{name}.py"))
    assert cfg.data_root == "data/coco"
    for split in ("train", "val", "test"):
        data_cfg = cfg.data[split].data_cfg
        assert data_cfg.bbox_file == ("data/coco/person_detection_results/"
                                      "COCO_val2017_detections_AP_H_56_person.json")
        assert cfg.data[split].dataset_info.dataset_name == "coco"
    assert cfg.data.val.ann_file == "data/coco/annotations/person_keypoints_val2017.json"


def _tiny_batch(cfg: Config, batch: int = 2, height: int = 96, width: int = 64) -> Dict[str, Any]:
    """Random images and targets for one training step at a small input size."""
    joints = cfg.channel_cfg.num_output_channels
    generator = torch.Generator().manual_seed(0)
    return dict(
        img=torch.randn(batch, 3, height, width, generator=generator),
        target=torch.rand(batch, joints, height // 4, width // 4, generator=generator),
        target_weight=torch.ones(batch, joints, 1),
        img_metas=[{} for _ in range(batch)],
        return_loss=True,
    )


def _state_shapes(model: torch.nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _heatmaps(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Eval-mode heatmaps in ``image``'s dtype; MMPose's ``train()`` returns None, so no chaining."""
    model.to(image.dtype).eval()
    with torch.no_grad():
        return model.forward_dummy(image)


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_builds_and_trains_one_step(path: Path) -> None:
    cfg = Config.fromfile(str(path))
    cfg.model.pretrained = None
    model = build_posenet(cfg.model)
    model.train()
    losses = model(**_tiny_batch(cfg))
    loss = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(loss), f"{path.name}: non-finite loss {loss}"
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"{path.name}: parameters without gradient: {no_grad[:5]}"

    # Same parameter/buffer names and shapes as the model MMPose builds from its
    # own config with its built-in ResNeSt: released checkpoints load 1:1.
    reference_cfg = Config.fromfile(str(MMPOSE_CONFIG_DIR / path.name))
    reference_cfg.model.pretrained = None
    reference = build_posenet(reference_cfg.model)
    ours, theirs = _state_shapes(model), _state_shapes(reference)
    assert ours.keys() == theirs.keys(), (
        f"{path.name}: keys only ours {sorted(ours.keys() - theirs.keys())[:5]}, "
        f"only MMPose {sorted(theirs.keys() - ours.keys())[:5]}")
    mismatched = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    assert not mismatched, f"{path.name}: shape mismatches (ours, MMPose): {mismatched}"

    # A checkpoint of MMPose's model (random, non-degenerate weights) loads
    # strictly and gives the same heatmaps. In float64: with random weights the
    # 66/89 blocks of R200/R269 amplify fp32 rounding (MMPose's own fp32 result is
    # 3e-4 of the heatmap scale off its fp64 one for R200), so fp32 would
    # compare noise; fp64 leaves ~1e-12. (The fp32 fast paths are checked
    # against the plain one in test_performance_paths.py.) Small input: the
    # R200/R269 models are big; 96x64 keeps the 4:3 aspect, 3x2 in the last stage.
    randomise(reference, seed=7)
    model.load_state_dict(reference.state_dict(), strict=True)
    image = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected, actual = _heatmaps(reference, image), _heatmaps(model, image)
    assert actual.shape == expected.shape == (1, cfg.channel_cfg.num_output_channels, 24, 16)
    scale = expected.abs().max()
    assert scale > 1e-3, f"{path.name}: degenerate reference heatmaps"
    error = (actual - expected).abs().max()
    assert error <= 1e-9 * scale, f"{path.name}: heatmaps differ by {error:.3g} (scale {scale:.3g})"


# --- model index (OpenMMLab metafile format) -------------------------------------------------

# model-index.yml imports this metafile (the 0.x configs) and the MMPose 1.x one
# (configs/body_2d_keypoint, checked by tests/mmpose1/test_configs.py).
OUR_METAFILE = "configs/top_down/resnest/coco/resnest_coco.yml"
OUR_CONFIG_PREFIX = "configs/top_down/resnest/coco/"


def _metafile_models() -> list:
    """The models of the 0.x configs, from every metafile model-index.yml imports."""
    index = yaml.safe_load((REPO_ROOT / "model-index.yml").read_text())
    assert OUR_METAFILE in index["Import"], f"model-index.yml does not import {OUR_METAFILE}"
    models = []
    for imported in index["Import"]:
        path = REPO_ROOT / imported
        assert path.is_file(), f"model-index.yml imports {imported}, which does not exist"
        metafile = yaml.safe_load(path.read_text())
        collections = {c["Name"] for c in metafile["Collections"]}
        for model in metafile["Models"]:
            assert model["In Collection"] in collections, model["Name"]
        models.extend(metafile["Models"])
    return [m for m in models if m["Config"].startswith(OUR_CONFIG_PREFIX)]


def test_model_index_lists_exactly_the_eight_configs() -> None:
    models = _metafile_models()
    configs = sorted(m["Config"] for m in models)
    assert configs == sorted(f"configs/top_down/resnest/coco/{n}.py" for n in CONFIG_NAMES)
    assert all((REPO_ROOT / c).is_file() for c in configs)
    names = [m["Name"] for m in models]
    assert len(set(names)) == len(names), f"duplicate model names {names}"


def test_metafile_results_and_weights_are_mmpose_model_zoo() -> None:
    """Oracle: MMPose's own metafile for the same configs (installed with mmpose)."""
    zoo = yaml.safe_load((MMPOSE_CONFIG_DIR / "resnest_coco.yml").read_text())["Models"]
    zoo_by_config = {Path(m["Config"]).name: m for m in zoo}
    models = _metafile_models()
    assert len(models) == len(CONFIG_NAMES)
    for model in models:
        reference = zoo_by_config[Path(model["Config"]).name]
        assert model["Results"] == reference["Results"], model["Name"]
        assert model["Weights"] == reference["Weights"], model["Name"]
        assert model["Name"] == f"resnest_plugin_{Path(model['Config']).stem}"
        assert model["Metadata"]["Input Size"] == Path(model["Config"]).stem.rsplit("_", 1)[1]


_ZOO_ROW = re.compile(r"^\| \[ResNeSt-(\d+)\]\((\w+)\.py\) \| (\d+x\d+) \| ([\d.]+) \| ([\d.]+) \| "
                      r"([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \[ckpt\]\((\S+)\) \|", re.MULTILINE)


def test_model_zoo_page_rows_are_mmpose_model_zoo() -> None:
    """The results table of the zoo page (README.md): one row per config, MMPose's numbers."""
    zoo = yaml.safe_load((MMPOSE_CONFIG_DIR / "resnest_coco.yml").read_text())["Models"]
    zoo_by_stem = {Path(m["Config"]).stem: m for m in zoo}
    rows = _ZOO_ROW.findall((OUR_CONFIG_DIR / "README.md").read_text())
    assert sorted(row[1] for row in rows) == sorted(CONFIG_NAMES)
    for depth, stem, size, *numbers, checkpoint in rows:
        assert int(depth) == _depth(stem) and stem.endswith(size), stem
        reference = zoo_by_stem[stem]
        metrics = reference["Results"][0]["Metrics"]
        expected = [f"{metrics[k]:.3f}" for k in ("AP", "AP@0.5", "AP@0.75", "AR", "AR@0.5")]
        assert numbers == expected, f"{stem}: zoo page {numbers}, MMPose {expected}"
        assert checkpoint == reference["Weights"], stem


def test_model_index_loads_with_openmmlab_parser() -> None:
    """The ``model-index`` package (what ``mim search`` uses) reads the index."""
    index = modelindex.load(str(REPO_ROOT / "model-index.yml"))
    ours = [m for m in index.models if m.config.startswith(OUR_CONFIG_PREFIX)]
    assert sorted(Path(m.config).stem for m in ours) == sorted(CONFIG_NAMES)
    assert all(m.weights.startswith("https://download.openmmlab.com/") for m in ours)


def test_mim_search_table_lists_the_eight_configs() -> None:
    """The table ``mim search resnest_plugin`` prints, built by mim's own converter."""
    table = convert2df(modelindex.load(str(REPO_ROOT / "model-index.yml")))
    ours = [n for n in table.index if table.loc[n, "config"].startswith(OUR_CONFIG_PREFIX)]
    assert sorted(ours) == sorted(f"resnest_plugin_{n}" for n in CONFIG_NAMES)
    assert table.loc["resnest_plugin_resnest101_coco_384x288", "coco/ap"] == 0.746
    assert table.loc["resnest_plugin_resnest269_coco_384x288", "coco/ap"] == 0.755


@pytest.mark.slow
def test_installed_wheel_is_found_by_mim_search(tmp_path: Path) -> None:
    """A wheel install carries resnest_plugin/.mim/{model-index.yml,configs}: mim finds the models."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "work_dirs", "__pycache__", "tests"))
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("resnest_plugin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {"resnest_plugin/.mim/model-index.yml",
                "resnest_plugin/.mim/configs/top_down/resnest/coco/resnest_coco.yml",
                "resnest_plugin/.mim/configs/_base_/datasets/coco.py",
                *(f"resnest_plugin/.mim/configs/top_down/resnest/coco/{n}.py" for n in CONFIG_NAMES)}
    assert expected <= names, sorted(expected - names)

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    search = subprocess.run([sys.executable, "-m", "mim", "search", "resnest_plugin"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr[-2000:]
    for name in CONFIG_NAMES:
        assert f"config id: resnest_plugin_{name}" in search.stdout, search.stdout[-2000:]
