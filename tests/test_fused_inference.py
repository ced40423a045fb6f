"""The fused CPU inference model: folded once, refolded when weights or statistics change.

Oracle: the plain model with the same weights (its eval forward is MMPose's
arithmetic), and the unfused conv + norm for the single fused op. Runs on
both stacks (torch and mmcv only).
"""
from __future__ import annotations

import copy
import pickle

import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from torch import nn

from resnest_plugin import torch_compat
from resnest_plugin.models import FastResNeSt, FusedResNeSt, ResNeSt, fuse_for_cpu_inference
from resnest_plugin.models import fused_inference
from resnest_plugin.models.fused_inference import FoldedConvNorm, reference_conv_bn

from model_helpers import randomise

CHANNELS_LAST = torch.channels_last
OPTIONS = dict(depth=50, stem_channels=64, out_indices=(0, 1, 2, 3))


def images(seed: int = 0, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 48, generator=torch.Generator().manual_seed(seed))


def plain_outputs(model: nn.Module, x: torch.Tensor):
    """The plain model's eval outputs with ``model``'s current weights and statistics."""
    plain = ResNeSt(**OPTIONS)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        return plain.eval()(x)


def assert_features_close(actual, expected, tol: float = 1e-5) -> None:
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        scale = e.abs().max().item()
        assert scale > 1e-3, "degenerate features"
        torch.testing.assert_close(a, e, rtol=0, atol=tol * scale, msg=f"stage {index}")


def _count_folds(monkeypatch: pytest.MonkeyPatch) -> list:
    calls = []
    original = fused_inference._folded

    def counting(conv, norm):
        calls.append(conv)
        return original(conv, norm)

    monkeypatch.setattr(fused_inference, "_folded", counting)
    return calls


def test_folded_conv_norm_matches_the_unfused_reference() -> None:
    owner = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=2, bias=True), nn.BatchNorm2d(16))
    randomise(owner, seed=2).eval()
    folded = FoldedConvNorm(owner, "0", "1")
    x = torch.randn(2, 8, 9, 7).contiguous(memory_format=CHANNELS_LAST)
    residual = torch.randn(2, 16, 9, 7).contiguous(memory_format=CHANNELS_LAST)
    with torch.no_grad():
        for kwargs in (dict(), dict(relu=True), dict(relu=True, residual=residual)):
            torch.testing.assert_close(folded(x, **kwargs), reference_conv_bn(x, owner[0], owner[1], **kwargs),
                                       rtol=1e-5, atol=1e-5)


# The fast model's default inference path is the fused model only where torch has
# oneDNN's fused convolutions (torch >= 2.0; asked by the model's own probe).
needs_fused_ops = pytest.mark.skipif(not torch_compat.mkldnn_pointwise_ok(),
                                     reason="this torch has no oneDNN fused convolutions: the fast model runs the plain path")


@needs_fused_ops
def test_norms_are_folded_once_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    folds = _count_folds(monkeypatch)
    model = randomise(FastResNeSt(**OPTIONS), seed=1).eval()
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 2 * 16  # fc1/fc2 run unfused
    x = images()
    with torch.no_grad():
        first = model(x)
        assert len(folds) == convs
        second = model(x)
    assert len(folds) == convs, "the second call folded again"
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_checkpoint_loaded_after_the_transform_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_state_dict copies in place (bumping _version): the fused model refolds."""
    model = randomise(ResNeSt(**OPTIONS), seed=1).eval()
    fused = fuse_for_cpu_inference(model)
    x = images(seed=1)
    with torch.no_grad():
        before = fused(x)
    checkpoint = randomise(ResNeSt(**OPTIONS), seed=2).state_dict()
    model.load_state_dict(checkpoint)
    with torch.no_grad():
        after = fused(x)
    assert not torch.allclose(after[3], before[3]), "stale: the old weights were used"
    assert_features_close(after, plain_outputs(model, x))


def test_training_after_the_transform_refolds_the_new_statistics_and_weights() -> None:
    """A training step changes BN running statistics (num_batches_tracked += 1) and,
    through the optimizer's in-place update, every weight."""
    model = randomise(ResNeSt(**OPTIONS), seed=3).eval()
    fused = fuse_for_cpu_inference(model)
    x = images(seed=3)
    with torch.no_grad():
        fused(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    sum(out.square().mean() for out in model(images(seed=4))).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        actual = fused(x)
    assert_features_close(actual, plain_outputs(model, x))


def test_fast_model_after_a_training_step_uses_the_new_state() -> None:
    model = randomise(FastResNeSt(**OPTIONS), seed=5).eval()
    x = images(seed=5)
    with torch.no_grad():
        model(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    sum(out.square().mean() for out in model(images(seed=6))).backward()
    optimizer.step()
    with torch.no_grad():
        actual = model.eval()(x)
    assert_features_close(actual, plain_outputs(model, x))


def test_fuse_conv_bn_after_the_fused_model_was_built_does_not_fold_twice() -> None:
    model = randomise(FastResNeSt(**OPTIONS), seed=7).eval()
    x = images(seed=7)
    expected = plain_outputs(model, x)
    with torch.no_grad():
        model(x)  # builds the fused model over the BatchNorms
        fuse_conv_bn(model)  # swaps them for Identity, in place, without eval()
        actual = model(x)
    assert_features_close(actual, expected, tol=1e-4)


def test_dtype_round_trip_refolds_from_the_new_storage() -> None:
    model = randomise(ResNeSt(**OPTIONS), seed=8).eval()
    fused = fuse_for_cpu_inference(model)
    x = images(seed=8)
    with torch.no_grad():
        fused(x)
        model.half().float()  # .data replaced, values rounded to float16
        actual = fused(x)
    assert_features_close(actual, plain_outputs(model, x))


def test_transform_returns_a_tuple_for_one_stage_and_shares_the_parameters() -> None:
    model = randomise(ResNeSt(depth=50), seed=9).eval()
    fused = fuse_for_cpu_inference(model)
    assert isinstance(fused, FusedResNeSt) and fused.model is model
    assert {id(p) for p in fused.parameters()} == {id(p) for p in model.parameters()}
    with torch.no_grad():
        (out,) = fused(images(seed=9))
    assert out.shape == (2, 2048, 2, 2) and out.is_contiguous()


def test_transform_names_the_part_that_cannot_be_fused() -> None:
    group_norm = ResNeSt(depth=50, norm_cfg=dict(type="GN", num_groups=16)).eval()
    with pytest.raises(ValueError, match=r"stem\.0\.gn is a GroupNorm"):
        fuse_for_cpu_inference(group_norm)
    training = ResNeSt(depth=50).train()
    with pytest.raises(ValueError, match=r"stem\.0\.bn is a BatchNorm2d \(training=True\)"):
        fuse_for_cpu_inference(training)


def test_fused_model_refuses_training_mode_and_other_dtypes() -> None:
    model = ResNeSt(depth=50).eval()
    fused = fuse_for_cpu_inference(model)
    with pytest.raises(ValueError, match="runs float32 on the CPU, got torch.float64 on cpu"):
        fused(images().double())
    model.train()
    with pytest.raises(ValueError, match=r"eval-mode inference: call \.eval\(\)"):
        fused(images())


@needs_fused_ops
def test_copies_and_pickles_leave_the_fused_model_behind() -> None:
    model = randomise(FastResNeSt(**OPTIONS), seed=10).eval()
    x = images(seed=10)
    with torch.no_grad():
        expected = model(x)
        assert any(isinstance(v, tuple) and isinstance(v[0], FusedResNeSt) for v in vars(model).values())
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert not any(isinstance(v, tuple) and v and isinstance(v[0], FusedResNeSt)
                           for v in vars(clone).values())
            actual = clone(x)
            assert all(torch.equal(a, e) for a, e in zip(actual, expected))
    assert list(model.state_dict()) == list(ResNeSt(**OPTIONS).state_dict())
