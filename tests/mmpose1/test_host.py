"""The MMPose 1.x host: scoped registration, init_cfg through the plugin's loader, 1.x conventions.

Oracles: MMPose 1.3.2's built-in ``ResNeSt`` and ``TopdownPoseEstimator``,
mmengine's own ``load_checkpoint``, and the key/shape list of the released
ResNeSt-50 COCO checkpoint (``tests/golden``).
"""
from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
from mmengine.config import Config
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt
from mmpose.registry import MODELS as MMPOSE_MODELS
from mmpose.utils import register_all_modules

import resnest_plugin
from resnest_plugin.hosts import SCOPE, StackMismatchError
from resnest_plugin.hosts import mmpose1 as host
from resnest_plugin.weights import CheckpointMismatchError, UnsafeCheckpointError

from model_helpers import randomise

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
R50_CONFIG = CONFIG_DIR / "td-hm_resnest50_8xb64-210e_coco-256x192.py"
GOLDEN_R50 = REPO_ROOT / "tests" / "golden" / "resnest50_topdown_state_dict.txt"

register_all_modules(init_default_scope=True)


def _save(obj: object, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


# --------------------------------------------------------------------------- registration


def test_scoped_type_builds_ours_and_plain_type_builds_builtin_in_one_process() -> None:
    ours = MMPOSE_MODELS.build(dict(type="resnest_plugin.ResNeSt", depth=50))
    builtin = MMPOSE_MODELS.build(dict(type="ResNeSt", depth=50))
    assert type(ours) is host.ResNeSt and type(builtin) is BuiltinResNeSt
    assert resnest_plugin.ResNeSt is host.ResNeSt and resnest_plugin.HOST == "mmpose1"


def test_child_registry_hangs_under_mmpose_models_without_force() -> None:
    assert host.MODELS.scope == SCOPE == "resnest_plugin"
    assert host.MODELS.parent is MMPOSE_MODELS
    assert MMPOSE_MODELS.children[SCOPE] is host.MODELS
    assert list(host.MODELS.module_dict) == ["ResNeSt"]
    assert "ResNeSt" in MMPOSE_MODELS.module_dict  # MMPose's own entry is untouched
    assert MMPOSE_MODELS.get("ResNeSt") is BuiltinResNeSt


def test_reload_does_not_raise_or_register_twice() -> None:
    importlib.reload(importlib.import_module("resnest_plugin.hosts.mmpose1"))
    importlib.reload(importlib.import_module("resnest_plugin.registry"))
    importlib.reload(resnest_plugin)
    assert MMPOSE_MODELS.children[SCOPE] is importlib.import_module("resnest_plugin.registry").MODELS
    assert list(MMPOSE_MODELS.children[SCOPE].module_dict) == ["ResNeSt"]


@pytest.mark.parametrize("code", [
    # mmengine's scope import: `resnest_plugin.registry` is imported by the lookup itself.
    "from mmpose.registry import MODELS; from mmpose.utils import register_all_modules;"
    "register_all_modules(); m = MODELS.build(dict(type='resnest_plugin.ResNeSt', depth=50));"
    "print(type(m).__module__)",
    # custom_imports of our config, as the stock tools load it.
    f"from mmengine.config import Config; cfg = Config.fromfile({str(R50_CONFIG)!r});"
    "from mmpose.registry import MODELS; from mmpose.utils import register_all_modules;"
    "register_all_modules(); m = MODELS.build(cfg.model.backbone | dict(init_cfg=None));"
    "print(type(m).__module__)",
], ids=["scope-import", "custom-imports"])
def test_fresh_process_builds_ours_without_importing_the_plugin_first(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT / "tests")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "resnest_plugin.hosts.mmpose1"


def test_zero_x_host_module_refuses_with_one_line_naming_the_stack() -> None:
    with pytest.raises(StackMismatchError) as error:
        importlib.import_module("resnest_plugin.hosts.mmpose0")
    message = str(error.value)
    assert "\n" not in message
    assert "MMPose 0.x" in message and "mmpose 1.3.2 is installed" in message
    assert "`make setup`" in message and ".venv/bin/python" in message


def test_zero_x_config_on_this_stack_fails_with_the_one_line_error() -> None:
    config = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco" / "resnest50_coco_256x192.py"
    with pytest.raises(StackMismatchError, match="needs MMPose 0.x"):
        Config.fromfile(str(config))


# --------------------------------------------------------------------------- 1.x conventions


def test_output_is_always_a_tuple_and_heatmap_head_takes_the_last() -> None:
    x = torch.randn(2, 3, 64, 48)
    single = host.ResNeSt(depth=50).eval()(x)
    several = host.ResNeSt(depth=50, out_indices=(1, 3)).eval()(x)
    assert isinstance(single, tuple) and len(single) == 1 and single[0].shape == (2, 2048, 2, 2)
    assert isinstance(several, tuple) and [t.shape[1] for t in several] == [512, 2048]
    head = MMPOSE_MODELS.build(dict(type="HeatmapHead", in_channels=2048, out_channels=17,
                                    loss=dict(type="KeypointMSELoss", use_target_weight=True)))
    assert head(single).shape == (2, 17, 16, 16)  # a bare tensor would be sliced on the batch


def _topdown(config: Path = R50_CONFIG, **backbone: object) -> torch.nn.Module:
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.update(init_cfg=None, **backbone)
    return MMPOSE_MODELS.build(cfg.model)


def _released_r50_state_dict() -> Dict[str, torch.Tensor]:
    """A checkpoint in the released 0.x ResNeSt-50 COCO format: its 494 keys and shapes."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for line in GOLDEN_R50.read_text().splitlines():
        key, shape = line.split(" ", 1)
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        state[key] = (torch.randint(0, 5, dims, generator=generator) if key.endswith("num_batches_tracked")
                      else torch.rand(dims, generator=generator) + 0.5)
    return state


def test_released_zero_x_checkpoint_loads_into_our_estimator_with_no_missing_or_unexpected_key(
        tmp_path: Path) -> None:
    from mmengine.runner import load_checkpoint

    state = _released_r50_state_dict()
    assert len(state) == 494 and any(k.startswith("keypoint_head.") for k in state)
    path = _save({"state_dict": state, "meta": {"epoch": 210}}, tmp_path / "released.pth")
    model = _topdown()
    assert type(model.backbone) is host.ResNeSt
    load_checkpoint(model, path, map_location="cpu", strict=True)  # raises on any mismatch
    loaded = model.state_dict()
    for key, value in state.items():
        ours = key.replace("keypoint_head.", "head.", 1)
        assert torch.equal(loaded[ours], value), key


def test_builtin_and_our_estimator_agree_on_the_same_released_weights(tmp_path: Path) -> None:
    import mmpose

    mmpose_config = (Path(mmpose.__file__).parent / ".mim" / "configs" / "body_2d_keypoint" /
                     "topdown_heatmap" / "coco" / R50_CONFIG.name)
    builtin, ours = _topdown(mmpose_config), _topdown()
    assert type(builtin.backbone) is BuiltinResNeSt
    randomise(builtin, seed=3)
    ours.load_state_dict(builtin.state_dict(), strict=True)
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(1))
    builtin.eval()
    ours.eval()
    with torch.no_grad():
        expected = builtin._forward(x)
        actual = ours._forward(x)
    assert actual.shape == (2, 17, 64, 48)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


# --------------------------------------------------------------------------- init_cfg


def test_pretrained_init_cfg_goes_through_the_plugin_loader(tmp_path: Path, caplog) -> None:
    source = randomise(BuiltinResNeSt(depth=50), seed=1)
    full = {"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()},
            "meta": {"best_score": __import__("numpy").float64(0.7)}}
    for name, payload in (("bare", source.state_dict()), ("topdown", full)):
        path = _save(payload, tmp_path / f"{name}.pth")
        model = host.ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint=path))
        assert not model.is_init
        model.init_weights()
        assert model.is_init
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (name, key)


def test_estimator_init_weights_applies_our_init_cfg_once(tmp_path: Path) -> None:
    source = randomise(BuiltinResNeSt(depth=50), seed=2)
    path = _save(source.state_dict(), tmp_path / "r50.pth")
    model = _topdown()
    model.backbone.init_cfg = dict(type="Pretrained", checkpoint=path)
    model.init_weights()  # mmengine's BaseModule walks the children, as the Runner does
    assert model.backbone.is_init
    assert torch.equal(model.backbone.stem[0].conv.weight, source.stem[0].conv.weight)


def test_wrong_depth_and_stem_width_name_both(tmp_path: Path) -> None:
    r101 = _save(BuiltinResNeSt(depth=101).state_dict(), tmp_path / "r101.pth")
    model = host.ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint=r101))
    with pytest.raises(CheckpointMismatchError) as error:
        model.init_weights()
    assert "depth=50" in str(error.value) and "ResNeSt-101" in str(error.value)
    wide = _save(host.ResNeSt(depth=50, stem_channels=128).state_dict(), tmp_path / "wide.pth")
    strict = host.ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint=wide))
    with pytest.raises(ValueError, match="stem"):
        strict.init_weights()
    lenient = host.ResNeSt(depth=50, pretrained_strict=False,
                           init_cfg=dict(type="Pretrained", checkpoint=wide))
    with pytest.warns(Warning):
        lenient.init_weights()  # stem skipped with a warning, as MMPose does


class _Payload:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def test_crafted_pickle_in_init_cfg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        torch.save({"state_dict": {}, "meta": {"x": _Payload()}}, handle, pickle_module=pickle)
    model = host.ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code"):
        model.init_weights()


@pytest.mark.parametrize("init_cfg,match", [
    (dict(type="Pretrained"), "expected checkpoint="),
    (dict(type="Pretrained", checkpoint="x.pth", prefix="head."), "prefix 'head.'"),
    (dict(type="Pretrained", checkpoint="x.pth", strict=True), r"keys \['strict'\]"),
])
def test_bad_pretrained_init_cfg_fails_at_build_naming_the_value(init_cfg: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        host.ResNeSt(depth=50, init_cfg=init_cfg)


def test_init_cfg_of_wrong_type_names_it() -> None:
    with pytest.raises(TypeError, match="init_cfg must be"):
        host.ResNeSt(depth=50, init_cfg="mmcls://resnest50")


def test_other_initialisers_go_through_mmengine_after_the_default_init() -> None:
    model = host.ResNeSt(depth=50, init_cfg=dict(type="Constant", layer="Conv2d", val=0.5))
    model.init_weights()
    assert torch.all(model.stem[0].conv.weight == 0.5)
    assert torch.all(model.stem[0].bn.weight == 1.0)  # untouched by the Constant init
