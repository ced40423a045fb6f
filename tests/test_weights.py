"""Checkpoint formats, strict modes and the load report of the host-free core, on both stacks.

Oracles: timm's ``resnest50d`` ... ``resnest269e`` and the official
``resnest.torch`` models (built without weights, weights randomised, then
converted). The MMPose layouts are written from our own randomised
backbone; the comparisons with MMPose's own checkpoints and loaders are the
hosts' (``tests/mmpose0/test_checkpoint_compat.py``,
``tests/mmpose1/test_checkpoint_compat.py``). Offline: URLs are
only served from a pre-filled cache.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import timm
import torch
from resnest.torch import resnest50, resnest101
from torch import nn

from resnest_plugin.models import ResNeSt
from resnest_plugin.weights import (CheckpointLoadWarning, CheckpointMismatchError, convert_state_dict,
                                    detect_format, load_pretrained)

from checkpoint_helpers import (assert_same_features, mmcls_layout, no_load_warnings,  # noqa: F401
                                offline_hub_cache, one_thread, save)
from model_helpers import randomise

pytestmark = pytest.mark.usefixtures("one_thread")


def official_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage-4 output of an official ``resnest.torch`` ResNet (no classifier)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.fixture(scope="module")
def timm101(tmp_path_factory: pytest.TempPathFactory) -> Tuple[nn.Module, str]:
    """A randomised timm resnest101e (128-channel stem) and its state dict on disk."""
    model = randomise(timm.create_model("resnest101e", pretrained=False), seed=101).eval()
    return model, save(model.state_dict(), tmp_path_factory.mktemp("timm") / "resnest101e.pth")


@pytest.fixture(scope="module")
def timm101_file(timm101: Tuple[nn.Module, str]) -> str:
    """The file of :func:`timm101`."""
    return timm101[1]


# --------------------------------------------------------------------------- official / timm


@pytest.mark.parametrize("depth", [50, 101])
def test_timm_features_match(depth: int, tmp_path: Path, timm101: Tuple[nn.Module, str]) -> None:
    if depth == 101:
        source, path = timm101
    else:
        source = randomise(timm.create_model("resnest50d", pretrained=False), seed=depth)
        path = save(source.state_dict(), tmp_path / "resnest50d.pth")
    ours = ResNeSt(depth=depth).eval()
    report = load_pretrained(ours, path, strict=True)
    assert report.is_clean and report.source == "official/timm", report.summary()
    assert report.num_loaded == len(ours.state_dict()) and report.ignored == ("fc.weight", "fc.bias")
    assert_same_features(ours, lambda model, x: model.forward_features(x), copy.deepcopy(source))


@pytest.mark.parametrize("name, depth", [("resnest200e", 200), ("resnest269e", 269)])
def test_timm_deep_models_load_key_for_key(name: str, depth: int) -> None:
    # Shapes are all this needs: both models live on the meta device (no memory, no init)
    # where a torch.device is a context manager (torch >= 2.0); torch 1.13 builds them on the CPU.
    on_meta = hasattr(torch.device("meta"), "__enter__")
    source = timm.create_model(name, pretrained=False, **({"device": "meta"} if on_meta else {}))
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        ours = ResNeSt(depth=depth)
    converted = convert_state_dict(source.state_dict())
    expected = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    result = ours.load_state_dict(converted, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("factory, depth", [(resnest50, 50), (resnest101, 101)])
def test_official_features_match(factory: Callable[..., nn.Module], depth: int, tmp_path: Path) -> None:
    source = randomise(factory(pretrained=False), seed=depth + 1)
    path = save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "official.pth")
    ours = ResNeSt(depth=depth).eval()
    report = load_pretrained(ours, path, strict=True)
    assert report.is_clean and report.source == "official/timm", report.summary()
    assert report.checkpoint_depth == depth
    assert_same_features(ours, official_features, source)


# --------------------------------------------------------------------------- MMPose / mmcls layouts


@pytest.fixture(scope="module")
def r50_source() -> nn.Module:
    """Our randomised ResNeSt-50: the backbone the MMPose-layout files hold."""
    return randomise(ResNeSt(depth=50), seed=7).eval()


def _layouts(backbone: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """The same backbone as a bare state dict, a TopDown checkpoint and an mmcls classifier."""
    prefixed = {f"backbone.{key}": value for key, value in backbone.items()}
    head = {"keypoint_head.final_layer.weight": torch.randn(17, 256, 1, 1),
            "keypoint_head.final_layer.bias": torch.randn(17)}
    return {
        "bare": backbone,
        "topdown": {"state_dict": {**prefixed, **head}, "meta": {"epoch": 210}},
        "mmcls": mmcls_layout(backbone),
    }


@pytest.mark.parametrize("layout, source, ignored", [
    ("bare", "mmpose", 0), ("topdown", "mmpose", 2), ("mmcls", "mmcls", 2)])
def test_mmpose_layouts_load_through_init_weights(layout: str, source: str, ignored: int,
                                                  r50_source: nn.Module, tmp_path: Path) -> None:
    path = save(_layouts(r50_source.state_dict())[layout], tmp_path / f"{layout}.pth")
    ours = ResNeSt(depth=50).eval()
    no_load_warnings(lambda: ours.init_weights(path))

    report = load_pretrained(ours, path)  # the same file again, for its report
    assert report.is_clean and report.source == source, report.summary()
    assert report.num_ignored == ignored and report.num_loaded == len(r50_source.state_dict())
    assert report.checkpoint_blocks == report.model_blocks == (3, 4, 6, 3)
    assert_same_features(ours, lambda model, x: model(x), copy.deepcopy(r50_source))


# --------------------------------------------------------------------------- errors and reports


def test_stem_width_mismatch_raises_by_default_and_in_strict_mode(timm101_file: str) -> None:
    model = ResNeSt(depth=101, stem_channels=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for strict in (None, True):
        with pytest.raises(ValueError, match="128-channel stem") as error:
            load_pretrained(model, timm101_file, strict=strict)
        assert isinstance(error.value, CheckpointMismatchError)
        assert "stem_channels=64" in str(error.value) and "stem_channels=128" in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "model changed"


def test_stem_width_mismatch_non_strict_skips_stem_with_warning(timm101_file: str, caplog) -> None:
    model = ResNeSt(depth=101, stem_channels=64)
    stem_before = model.stem[0].conv.weight.clone()
    with caplog.at_level(logging.WARNING, logger="resnest_plugin"), \
            pytest.warns(CheckpointLoadWarning, match="stem_channels=128"):
        report = load_pretrained(model, timm101_file, strict=False)
    # 3 convs + 3 BNs x 4 tensors of the stem, plus the two layer1 convs fed by it.
    skipped = {item.key for item in report.shape_mismatched}
    assert report.num_shape_mismatched == 17, report.summary()
    assert {"layer1.0.conv1.weight", "layer1.0.downsample.0.weight", "stem.2.bn.running_var"} <= skipped
    assert all(key.startswith(("stem.", "layer1.0.")) for key in skipped)
    assert not report.missing and not report.unexpected and report.checkpoint_stem_channels == 128
    assert torch.equal(model.stem[0].conv.weight, stem_before)
    reference = convert_state_dict(torch.load(timm101_file, weights_only=True))
    assert torch.equal(model.layer3[22].conv2.fc2.weight, reference["layer3.22.conv2.fc2.weight"])
    assert any(r.levelno == logging.WARNING and "17 shape-mismatched" in r.getMessage()
               for r in caplog.records if r.name == "resnest_plugin"), "no WARNING on the core's logger"


def test_init_weights_follows_the_model_pretrained_strict_attribute(tmp_path: Path) -> None:
    """The hook for a backbone kwarg: ``pretrained_strict`` on the model sets the default."""
    path = save(ResNeSt(depth=50).state_dict(), tmp_path / "r50_stem64.pth")
    model = ResNeSt(depth=50, stem_channels=32)
    with pytest.raises(ValueError, match="64-channel stem.*stem_channels=32"):
        model.init_weights(path)
    model.pretrained_strict = False
    with pytest.warns(CheckpointLoadWarning, match="stem_channels=64"):
        model.init_weights(path)
    model.pretrained_strict = None
    with pytest.raises(ValueError, match="pretrained_strict=False in the backbone config"):
        model.init_weights(path)


def test_wrong_depth_names_keys_and_detected_depth(timm101_file: str) -> None:
    with pytest.raises(ValueError, match=r"ResNeSt-101 \(blocks per stage \(3, 4, 23, 3\)\)") as error:
        load_pretrained(ResNeSt(depth=50, stem_channels=128), timm101_file)
    message = str(error.value)
    assert "depth=50" in message and "layer3.6." in message and "depth=101" in message


def test_wrong_depth_non_strict_loads_the_common_blocks_and_reports_both_depths(timm101_file: str) -> None:
    model = ResNeSt(depth=50, stem_channels=128)
    with pytest.warns(CheckpointLoadWarning, match=r"checkpoint \(3, 4, 23, 3\) \(ResNeSt-101\), "
                                                   r"model \(3, 4, 6, 3\) \(ResNeSt-50\)"):
        report = load_pretrained(model, timm101_file, strict=False)
    assert report.checkpoint_depth == 101 and report.model_blocks == (3, 4, 6, 3)
    assert report.unexpected and all(key.startswith("layer3.") for key in report.unexpected)
    assert not report.missing and not report.shape_mismatched


def test_unknown_format_names_the_keys(tmp_path: Path) -> None:
    import torchvision

    path = save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="unknown checkpoint format") as error:
        load_pretrained(ResNeSt(depth=50), path)
    assert "conv1.weight" in str(error.value) and "layer1.0.conv2.fc1.weight" in str(error.value)
    with pytest.raises(ValueError, match="holds no tensors"):
        load_pretrained(ResNeSt(depth=50), save({"epoch": 1, "lr": 0.1}, tmp_path / "empty.pth"))


def test_missing_file_and_unreadable_file_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnest50.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ResNeSt(depth=50).init_weights(str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as error:
        load_pretrained(ResNeSt(depth=50), str(garbage))
    assert str(garbage) in str(error.value)


def test_partial_checkpoint_reports_counts_and_never_copies_bad_shapes(tmp_path: Path, caplog) -> None:
    state = randomise(ResNeSt(depth=50), seed=3).state_dict()
    state["layer4.2.conv2.fc1.weight"] = torch.zeros(16, 512, 1, 1)  # model: (256, 512, 1, 1)
    del state["layer4.2.conv3.weight"]
    state["layer4.2.extra.weight"] = torch.zeros(3)
    path = save(state, tmp_path / "partial.pth")

    model = ResNeSt(depth=50)
    fc1_before = model.layer4[2].conv2.fc1.weight.clone()
    with pytest.raises(CheckpointMismatchError, match="strict loading was requested"):
        load_pretrained(model, path, strict=True)
    assert torch.equal(model.layer4[2].conv2.fc1.weight, fc1_before)

    with caplog.at_level(logging.WARNING, logger="resnest_plugin"), \
            pytest.warns(CheckpointLoadWarning, match="1 shape-mismatched"):
        report = load_pretrained(model, path)  # default: warns, loads the rest
    assert (report.num_shape_mismatched, report.num_missing, report.num_unexpected) == (1, 1, 1)
    assert report.shape_mismatched[0].checkpoint_shape == (16, 512, 1, 1)
    assert report.missing == ("layer4.2.conv3.weight",) and report.unexpected == ("layer4.2.extra.weight",)
    summary = report.summary()
    assert "1 missing keys" in summary and "1 unexpected keys" in summary and "layer4.2.extra.weight" in summary
    assert torch.equal(model.layer4[2].conv2.fc1.weight, fc1_before)
    assert torch.equal(model.layer3[0].conv2.fc2.weight, state["layer3.0.conv2.fc2.weight"])
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "resnest_plugin")


def test_shortcut_indices_follow_the_model_strides(tmp_path: Path) -> None:
    """A stride-1 last stage has no pool in its shortcut: indices shift by one."""
    source = randomise(ResNeSt(depth=50), seed=4)
    path = save(source.state_dict(), tmp_path / "r50.pth")
    dilated = ResNeSt(depth=50, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).eval()
    report = load_pretrained(dilated, path, strict=True)
    assert report.is_clean
    assert torch.equal(dilated.layer4[0].downsample[0].weight, source.layer4[0].downsample[1].weight)


# --------------------------------------------------------------------------- URLs, conversion, CLI


def test_url_resolves_through_the_hub_cache(r50_source: nn.Module, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://download.example.org/resnest/resnest50_mmcls.pth"
    offline_hub_cache(monkeypatch, tmp_path, url, mmcls_layout(r50_source.state_dict()))
    report = load_pretrained(ResNeSt(depth=50), url)
    assert report.is_clean and report.source == "mmcls" and report.checkpoint == url, report.summary()
    with pytest.raises(ValueError, match="unsupported checkpoint scheme"):
        load_pretrained(ResNeSt(depth=50), "s3://bucket/resnest50.pth")


def test_convert_cli_writes_a_strictly_loadable_state_dict(timm101_file: str, tmp_path: Path) -> None:
    out = tmp_path / "converted" / "resnest101.pth"
    result = subprocess.run([sys.executable, "-m", "resnest_plugin.weights", "convert", timm101_file,
                             str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "official/timm names" in result.stdout and "depth 101" in result.stdout
    converted = torch.load(out, weights_only=True)
    assert converted.keys() == convert_state_dict(torch.load(timm101_file, weights_only=True),
                                                  source="timm").keys()
    assert detect_format(converted) == "mmpose"
    ResNeSt(depth=101).load_state_dict(converted, strict=True)
    with pytest.raises(ValueError, match="unknown checkpoint source"):
        convert_state_dict(converted, source="gluon")
