"""The backbone against the installed MMPose's built-in ResNeSt (the oracle), on both hosts.

Same weights must give the same outputs: the released MMPose checkpoints
were trained with the built-in, so any numeric drift would cost AP. Runs on
MMPose 0.x and 1.x alike (``tests/host_helpers.py``): the plugin class the
host registers against ``mmpose.models.backbones.ResNeSt`` of that host.
"""
from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch

from host_helpers import BuiltinResNeSt, PluginResNeSt, as_tuple
from model_helpers import randomise


def eval_forward(model: torch.nn.Module, x: torch.Tensor):
    """Eval-mode forward; MMPose's ``train()`` returns None, so no chaining."""
    model.eval()
    with torch.no_grad():
        return as_tuple(model(x))


def assert_features_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5,
                          what: str = "", floor: float = 1.0) -> None:
    """Max abs difference <= ``tol`` x the feature scale (max |expected|).

    Why scaled: fp32 has a 6e-8 epsilon and features of a randomised
    ResNeSt-101 reach ~50, so the built-in differs from *its own* fp64 result
    by ~4e-5 absolute; a bare 1e-5 absolute bound would test rounding, not
    arithmetic. Exactness of the arithmetic itself is checked in fp64.
    """
    assert actual.shape == expected.shape, f"{what}: {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().clamp_min(floor)
    error = (actual - expected).abs().max()
    assert error <= tol * scale, f"{what}: max |diff| {error:.3g} > {tol} x scale {scale:.3g}"


def shapes(model: torch.nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


EQUIVALENCE_CASES = [
    # depth, radix, groups, avg_down_stride
    (50, 2, 1, True),
    (50, 1, 1, True),
    (50, 4, 1, True),
    (50, 2, 2, True),
    (50, 4, 2, False),
    (50, 2, 1, False),
    (101, 2, 1, True),
    (101, 1, 2, False),
]


def build_pair(depth: int, radix: int, groups: int, avd: bool, **extra) -> Tuple[PluginResNeSt, BuiltinResNeSt]:
    options = dict(depth=depth, radix=radix, groups=groups, avg_down_stride=avd,
                   out_indices=(0, 1, 2, 3), **extra)
    builtin = randomise(BuiltinResNeSt(**options), seed=depth + radix + groups)
    ours = PluginResNeSt(stem_channels=64, **options)
    ours.load_state_dict(builtin.state_dict(), strict=True)
    return ours, builtin


@pytest.mark.parametrize("depth,radix,groups,avd", EQUIVALENCE_CASES)
def test_same_keys_shapes_and_eval_outputs_as_builtin(depth: int, radix: int, groups: int, avd: bool) -> None:
    ours, builtin = build_pair(depth, radix, groups, avd)
    assert shapes(ours) == shapes(builtin)
    builtin.load_state_dict(ours.state_dict(), strict=True)  # the other direction
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    expected = eval_forward(builtin, x)
    actual = eval_forward(ours, x)
    assert len(actual) == len(expected) == 4
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert e.abs().mean() > 1e-3, "degenerate oracle output"
        assert_features_close(a, e, what=f"out_index {index}")


@pytest.mark.parametrize("depth,radix,groups,avd", [(50, 2, 1, True), (50, 4, 2, False), (101, 2, 1, True)])
def test_fp64_outputs_equal_builtin_to_rounding(depth: int, radix: int, groups: int, avd: bool) -> None:
    """In float64 rounding vanishes: any arithmetic difference would show."""
    ours, builtin = build_pair(depth, radix, groups, avd)
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = eval_forward(builtin.double(), x)
    actual = eval_forward(ours.double(), x)
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10, msg=f"out_index {index}")


@pytest.mark.parametrize("depth,radix,groups,avd", [(50, 2, 1, True), (50, 4, 2, False)])
def test_train_mode_outputs_and_gradients_equal_builtin(depth: int, radix: int, groups: int, avd: bool) -> None:
    """Train mode in float64: batch statistics of a 2-sample batch on 2x2 maps
    amplify fp32 rounding ~1000x, so fp32 would compare noise, not maths
    (fp64 still leaves ~1e-9 there, hence rtol 1e-6)."""
    ours, builtin = build_pair(depth, radix, groups, avd)
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for model in (builtin, ours):
        model.double().train()
        model.zero_grad()
        outs = as_tuple(model(x))
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((outs, grads, {k: v.clone() for k, v in model.state_dict().items()}))
    (e_outs, e_grads, e_state), (a_outs, a_grads, a_state) = results
    for a, e in zip(a_outs, e_outs):
        assert_features_close(a, e, tol=1e-8)
    assert a_grads.keys() == e_grads.keys() and len(e_grads) > 100
    # Batch statistics of 2 samples make gradients reach ~1e7 here; some
    # (fc1 biases before train-mode BN) are mathematically 0: compare each
    # tensor to its own scale, floored at 1e-6 of the largest gradient.
    largest = max(g.abs().max() for g in e_grads.values())
    assert largest > 1e-3, "degenerate gradients"
    for name in e_grads:
        assert_features_close(a_grads[name], e_grads[name], tol=1e-6, what=name, floor=1e-6 * largest)
    # BN running statistics were updated identically by the training forward.
    for name in e_state:
        if "running" in name:
            torch.testing.assert_close(a_state[name], e_state[name], rtol=1e-7, atol=1e-9, msg=name)


def test_group_norm_builds_and_matches_builtin() -> None:
    norm_cfg = dict(type="GN", num_groups=16, requires_grad=True)
    ours, builtin = build_pair(50, 2, 1, True, norm_cfg=norm_cfg)
    assert any(k.endswith("conv2.gn0.weight") for k in ours.state_dict())
    x = torch.randn(1, 3, 64, 48)
    ours.train()
    builtin.train()
    with torch.no_grad():  # GN has no batch statistics: a batch of 1 trains fine
        torch.testing.assert_close(as_tuple(ours(x))[3], as_tuple(builtin(x))[3], rtol=1e-5, atol=1e-5)
