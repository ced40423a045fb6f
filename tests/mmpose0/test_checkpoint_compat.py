"""Checkpoint formats: official / timm / MMPose / mmcls files load into our ResNeSt.

Oracles: timm's ``resnest50d`` ... ``resnest269e`` and the official
``resnest.torch`` models (built without weights, weights randomised, then
converted), and MMPose 0.29's built-in ``ResNeSt`` / ``TopDown``. Feature
comparisons run in float64 so that a 1e-5 tolerance tests the arithmetic
rather than float32 rounding. Offline: URLs are only served from a
pre-filled cache.
"""
from __future__ import annotations

import copy
import logging
import re
import warnings
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import timm
import torch
from mmcv.runner import save_checkpoint
from mmpose.models import build_posenet
from resnest.torch import resnest50, resnest101
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_plugin.models import ResNeSt
from resnest_plugin.models.weights import (
    CheckpointLoadWarning, CheckpointMismatchError, UnsafeCheckpointError, convert_state_dict,
    detect_format, load_pretrained, main,
)

IMAGE = (1, 3, 64, 64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this file's tiny forwards on one thread, restored afterwards.

    Measured here: a 1x3x64x64 float64 ResNeSt-101 forward took 0.38 s on one
    thread and 8.3 s on two while the other core was busy (OpenMP threads
    wait on each other); the inputs are too small to gain from threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm and bias non-trivial values, in place; eval mode.

    The default init zeroes the last BN of each block and leaves running
    stats at 0/1, which would hide a wrongly mapped key.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
            elif isinstance(module, nn.Conv2d) and module.bias is not None:
                module.bias.normal_(0.0, 0.1, generator=generator)
    model.eval()  # not `return model.eval()`: MMPose's ResNet.train() returns None
    return model


def official_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage-4 output of an official ``resnest.torch`` ResNet (no classifier)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def assert_same_features(ours: nn.Module, reference: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                         reference_model: nn.Module) -> None:
    """Stage-4 features of ``ours`` equal ``reference(reference_model, x)`` within 1e-5 (float64)."""
    x = torch.randn(*IMAGE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        actual = ours.double()(x)
        expected = reference(reference_model.double(), x)
    assert actual.shape == expected.shape, f"expected {tuple(expected.shape)}, got {tuple(actual.shape)}"
    diff = (actual - expected).abs().max().item()
    assert diff <= 1e-5, f"features differ by {diff:.3g} (max |feature| {expected.abs().max().item():.3g})"


def save(obj, path: Path) -> str:
    torch.save(obj, path)
    return str(path)


def no_load_warnings(run: Callable[[], object]) -> object:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    load_warnings = [w for w in caught if issubclass(w.category, CheckpointLoadWarning)]
    assert not load_warnings, f"unexpected load warnings: {[str(w.message) for w in load_warnings]}"
    return result


# --------------------------------------------------------------------------- oracles


@pytest.fixture(scope="module")
def timm101(tmp_path_factory) -> Tuple[nn.Module, str]:
    """A randomised timm resnest101e (128-channel stem) and its state dict on disk."""
    model = randomize(timm.create_model("resnest101e", pretrained=False), seed=101)
    return model, save(model.state_dict(), tmp_path_factory.mktemp("timm") / "resnest101e.pth")


@pytest.fixture(scope="module")
def timm101_file(timm101: Tuple[nn.Module, str]) -> str:
    return timm101[1]


@pytest.mark.parametrize("depth", [50, 101])
def test_timm_features_match(depth: int, tmp_path: Path, timm101: Tuple[nn.Module, str]) -> None:
    if depth == 101:
        source, path = timm101
    else:
        source = randomize(timm.create_model("resnest50d", pretrained=False), seed=depth)
        path = save(source.state_dict(), tmp_path / "resnest50d.pth")
    ours = ResNeSt(depth=depth).eval()
    report = load_pretrained(ours, path, strict=True)
    assert report.is_clean and report.source == "official/timm", report.summary()
    assert report.num_loaded == len(ours.state_dict()) and report.ignored == ("fc.weight", "fc.bias")
    assert_same_features(ours, lambda model, x: model.forward_features(x), copy.deepcopy(source))


@pytest.mark.parametrize("name, depth", [("resnest200e", 200), ("resnest269e", 269)])
def test_timm_deep_models_load_key_for_key(name: str, depth: int) -> None:
    # Shapes are all this needs: both models live on the meta device (no memory, no init).
    source = timm.create_model(name, pretrained=False, device="meta")
    with torch.device("meta"):
        ours = ResNeSt(depth=depth)
    converted = convert_state_dict(source.state_dict())
    expected = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    result = ours.load_state_dict(converted, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("factory, depth", [(resnest50, 50), (resnest101, 101)])
def test_official_features_match(factory: Callable[..., nn.Module], depth: int, tmp_path: Path) -> None:
    source = randomize(factory(pretrained=False), seed=depth + 1)
    path = save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "official.pth")
    ours = ResNeSt(depth=depth).eval()
    report = load_pretrained(ours, path, strict=True)
    assert report.is_clean and report.source == "official/timm", report.summary()
    assert report.checkpoint_depth == depth
    assert_same_features(ours, official_features, source)


# --------------------------------------------------------------------------- MMPose / mmcls files


@pytest.fixture(scope="module")
def topdown() -> nn.Module:
    """MMPose's own TopDown with its built-in ResNeSt-50, randomised."""
    model = build_posenet(dict(
        type="TopDown",
        backbone=dict(type="ResNeSt", depth=50),
        keypoint_head=dict(type="TopdownHeatmapSimpleHead", in_channels=2048, out_channels=17,
                           loss_keypoint=dict(type="JointsMSELoss", use_target_weight=True)),
        train_cfg=dict(),
        test_cfg=dict(flip_test=True, post_process="default", shift_heatmap=True, modulate_kernel=11)))
    return randomize(model, seed=7)


def _layouts(topdown: nn.Module) -> Dict[str, object]:
    backbone = topdown.backbone.state_dict()
    return {
        "bare": backbone,
        "topdown": {"state_dict": topdown.state_dict(), "meta": {"epoch": 210}},
        "mmcls": {"state_dict": {**{f"backbone.{k}": v for k, v in backbone.items()},
                                 "head.fc.weight": torch.randn(1000, 2048),
                                 "head.fc.bias": torch.randn(1000)}},
    }


@pytest.mark.parametrize("layout, source, ignored", [
    ("bare", "mmpose", 0), ("topdown", "mmpose", None), ("mmcls", "mmcls", 2)])
def test_mmpose_layouts_load_through_init_weights(layout: str, source: str, ignored, topdown: nn.Module,
                                                  tmp_path: Path) -> None:
    path = save(_layouts(topdown)[layout], tmp_path / f"{layout}.pth")
    ours = ResNeSt(depth=50).eval()
    no_load_warnings(lambda: ours.init_weights(path))

    report = load_pretrained(ours, path)  # the same file again, for its report
    head_keys = [k for k in topdown.state_dict() if k.startswith("keypoint_head.")]
    assert report.is_clean and report.source == source, report.summary()
    assert report.num_ignored == (len(head_keys) if ignored is None else ignored)
    assert report.num_loaded == len(topdown.backbone.state_dict())
    assert_same_features(ours, lambda model, x: model(x), copy.deepcopy(topdown.backbone))


def test_training_checkpoint_with_numpy_meta_loads(topdown: nn.Module, tmp_path: Path) -> None:
    """What mmcv's EvalHook(save_best='AP') writes: numpy scalars in meta."""
    path = tmp_path / "best_AP_epoch_210.pth"
    optimizer = torch.optim.Adam(topdown.parameters(), lr=5e-4)
    meta = dict(epoch=210, iter=1000, seed=42, config="model = dict(...)",
                hook_msgs=dict(best_score=np.float64(0.7213), best_ckpt=str(path), last_ckpt=str(path)),
                extra=dict(ar=np.float32(0.77), count=np.int64(3), flag=np.bool_(True)))
    save_checkpoint(topdown, str(path), optimizer=optimizer, meta=meta)
    trusted = torch.load(path, weights_only=False)  # written just above
    assert type(trusted["meta"]["hook_msgs"]["best_score"]) is np.float64

    ours = ResNeSt(depth=50).eval()
    no_load_warnings(lambda: ours.init_weights(str(path)))
    assert_same_features(ours, lambda model, x: model(x), copy.deepcopy(topdown.backbone))


class Payload:
    """An arbitrary class: weights_only must refuse to import it."""

    def __init__(self) -> None:
        self.value = 1


def _run_payload(marker: str) -> None:
    Path(marker).touch()


class Exploit:
    """A pickle that would call ``_run_payload`` (create ``marker``) when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_run_payload, (str(self.marker),))


@pytest.mark.parametrize("kind", ["class", "reduce"])
def test_arbitrary_pickle_is_refused(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "code_was_run"
    payload = Payload() if kind == "class" else Exploit(marker)
    path = save({"state_dict": ResNeSt(depth=50).state_dict(), "meta": {"x": payload}},
                tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError) as error:
        load_pretrained(ResNeSt(depth=50), path)
    message = str(error.value)
    assert str(path) in message and "arbitrary code" in message and "re-save its state dict" in message
    assert ("Payload" if kind == "class" else "_run_payload") in message, message
    assert not marker.exists(), "unpickling ran code"


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
    with caplog.at_level(logging.WARNING, logger="mmpose"), \
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
               for r in caplog.records), "no WARNING on MMPose's logger"


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
    state = randomize(ResNeSt(depth=50)).state_dict()
    state["layer4.2.conv2.fc1.weight"] = torch.zeros(16, 512, 1, 1)  # model: (256, 512, 1, 1)
    del state["layer4.2.conv3.weight"]
    state["layer4.2.extra.weight"] = torch.zeros(3)
    path = save(state, tmp_path / "partial.pth")

    model = ResNeSt(depth=50)
    fc1_before = model.layer4[2].conv2.fc1.weight.clone()
    with pytest.raises(CheckpointMismatchError, match="strict loading was requested"):
        load_pretrained(model, path, strict=True)
    assert torch.equal(model.layer4[2].conv2.fc1.weight, fc1_before)

    with caplog.at_level(logging.WARNING, logger="mmpose"), \
            pytest.warns(CheckpointLoadWarning, match="1 shape-mismatched"):
        report = load_pretrained(model, path)  # default: warns, loads the rest
    assert (report.num_shape_mismatched, report.num_missing, report.num_unexpected) == (1, 1, 1)
    assert report.shape_mismatched[0].checkpoint_shape == (16, 512, 1, 1)
    assert report.missing == ("layer4.2.conv3.weight",) and report.unexpected == ("layer4.2.extra.weight",)
    assert torch.equal(model.layer4[2].conv2.fc1.weight, fc1_before)
    assert torch.equal(model.layer3[0].conv2.fc2.weight, state["layer3.0.conv2.fc2.weight"])
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "mmpose")


def test_shortcut_indices_follow_the_model_strides(tmp_path: Path) -> None:
    """A stride-1 last stage has no pool in its shortcut: indices shift by one."""
    source = randomize(ResNeSt(depth=50))
    path = save(source.state_dict(), tmp_path / "r50.pth")
    dilated = ResNeSt(depth=50, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).eval()
    report = load_pretrained(dilated, path, strict=True)
    assert report.is_clean
    assert torch.equal(dilated.layer4[0].downsample[0].weight, source.layer4[0].downsample[1].weight)


# --------------------------------------------------------------------------- URLs, conversion, CLI


def test_mmcls_and_url_names_resolve_through_the_hub_cache(topdown: nn.Module, tmp_path: Path,
                                                           monkeypatch) -> None:
    from mmcv.runner.checkpoint import get_mmcls_models

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tests must not download {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    url = get_mmcls_models()["resnest50"]
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    save(_layouts(topdown)["mmcls"], cache / url.rsplit("/", 1)[-1])
    for name in ("mmcls://resnest50", url):
        report = load_pretrained(ResNeSt(depth=50), name)
        assert report.is_clean and report.source == "mmcls", report.summary()
    with pytest.raises(ValueError, match="resnest101"):
        load_pretrained(ResNeSt(depth=50), "mmcls://resnest51")
    with pytest.raises(ValueError, match="unsupported checkpoint scheme"):
        load_pretrained(ResNeSt(depth=50), "s3://bucket/resnest50.pth")


def test_convert_cli_writes_a_strictly_loadable_state_dict(timm101_file: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "converted" / "resnest101.pth"
    assert main(["convert", timm101_file, str(out)]) == 0
    assert "official/timm" in capsys.readouterr().out
    converted = torch.load(out, weights_only=True)
    assert converted.keys() == convert_state_dict(torch.load(timm101_file, weights_only=True),
                                                  source="timm").keys()
    assert detect_format(converted) == "mmpose"
    ResNeSt(depth=101).load_state_dict(converted, strict=True)
    with pytest.raises(ValueError, match="unknown checkpoint source"):
        convert_state_dict(converted, source="gluon")
