"""The backbone against MMPose's built-in ResNeSt (the oracle) and golden facts.

Same weights must give the same outputs: the released MMPose checkpoints
were trained with the built-in, so any numeric drift would cost AP.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt

from resnest_plugin.models import ARCH_SETTINGS, ResNeSt

from model_helpers import randomise

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def eval_forward(model: torch.nn.Module, x: torch.Tensor):
    """Eval-mode forward; MMPose's ``train()`` returns None, so no chaining."""
    model.eval()
    with torch.no_grad():
        return model(x)


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


def build_pair(depth: int, radix: int, groups: int, avd: bool, **extra) -> Tuple[ResNeSt, BuiltinResNeSt]:
    options = dict(depth=depth, radix=radix, groups=groups, avg_down_stride=avd,
                   out_indices=(0, 1, 2, 3), **extra)
    builtin = randomise(BuiltinResNeSt(**options), seed=depth + radix + groups)
    ours = ResNeSt(stem_channels=64, **options)
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
        outs = model(x)
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


def test_single_out_index_returns_tensor_and_several_return_tuple() -> None:
    x = torch.randn(1, 3, 32, 32)
    single = ResNeSt(depth=50, out_indices=(3,)).eval()(x)
    several = ResNeSt(depth=50, out_indices=(1, 3)).eval()(x)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 2048, 1, 1)
    assert isinstance(several, tuple) and [t.shape[1] for t in several] == [512, 2048]


def test_full_topdown_model_from_mmpose_config_loads_builtin_weights(repo_root: Path) -> None:
    """The released-checkpoint format (built-in TopDown state dict) loads strictly into ours."""
    import mmpose
    from mmcv import Config
    from mmpose.models import build_posenet

    config_path = (Path(mmpose.__file__).parent / ".mim" / "configs" / "body" / "2d_kpt_sview_rgb_img"
                   / "topdown_heatmap" / "coco" / "resnest50_coco_256x192.py")
    cfg = Config.fromfile(str(config_path))
    cfg.model.pretrained = None
    builtin = build_posenet(cfg.model)
    cfg.model.backbone.type = "resnest_plugin.ResNeSt"
    cfg.model.backbone.stem_channels = 64
    ours = build_posenet(cfg.model)
    assert type(ours.backbone) is ResNeSt and type(builtin.backbone) is BuiltinResNeSt
    randomise(builtin, seed=5)
    state = builtin.state_dict()
    assert len(state) == 494  # STACK.md: ResNeSt-50 TopDown checkpoints have 494 keys
    ours.load_state_dict(state, strict=True)
    image = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(2))
    builtin.eval()
    ours.eval()
    with torch.no_grad():
        expected = builtin.forward_dummy(image)
        actual = ours.forward_dummy(image)
    assert actual.shape == (2, 17, 64, 48)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# --- golden facts ---------------------------------------------------------

# STYLE.md "Reference parameter counts" (backbone only, no classifier); with a
# 1000-class fc they equal timm's published 27.48M / 48.28M / 70.20M / 110.93M.
GOLDEN_PARAMETER_COUNTS = {50: 25_434_240, 101: 46_226_016, 200: 68_152_544, 269: 108_880_480}


@pytest.mark.parametrize("depth", sorted(GOLDEN_PARAMETER_COUNTS))
def test_parameter_count_per_depth_with_default_stem(depth: int) -> None:
    model = ResNeSt(depth=depth)
    assert model.stem_channels == ARCH_SETTINGS[depth].stem_channels
    assert sum(p.numel() for p in model.parameters()) == GOLDEN_PARAMETER_COUNTS[depth]


def _key_shape_lines(model: torch.nn.Module) -> str:
    return "".join(f"{k} {list(v.shape)}\n" for k, v in model.state_dict().items())


@pytest.mark.parametrize("depth,expected_keys", [(50, 494), (101, 953)])
def test_released_checkpoint_key_list_matches_golden_file(depth: int, expected_keys: int,
                                                          request: pytest.FixtureRequest) -> None:
    """Keys/shapes of a TopDown model with our backbone = the released checkpoints' format."""
    from mmpose.models import TopDown

    model = TopDown(
        backbone=dict(type="resnest_plugin.ResNeSt", depth=depth, stem_channels=64),
        keypoint_head=dict(type="TopdownHeatmapSimpleHead", in_channels=2048, out_channels=17,
                           loss_keypoint=dict(type="JointsMSELoss", use_target_weight=True)),
        train_cfg=dict(), test_cfg=dict(flip_test=True))
    text = _key_shape_lines(model)
    golden = GOLDEN_DIR / f"resnest{depth}_topdown_state_dict.txt"
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert len(text.splitlines()) == expected_keys
    assert text == golden.read_text(), f"state-dict keys/shapes drifted from {golden}"


# --- behaviour of options ---------------------------------------------------

def test_with_cp_gives_same_outputs_and_gradients() -> None:
    plain = randomise(ResNeSt(depth=50, stem_channels=64), seed=3)
    checkpointed = ResNeSt(depth=50, stem_channels=64, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 48)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        out = model(x.clone().requires_grad_(True))
        out.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_frozen_stages_stop_gradients_and_stay_in_eval() -> None:
    model = ResNeSt(depth=50, frozen_stages=2).train()
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(not p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert not model.layer1.training and not model.layer2.training and model.layer3.training
    frozen_before = model.layer1[0].norm1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.layer1[0].norm1.running_mean, frozen_before)


def test_norm_eval_keeps_batchnorm_statistics() -> None:
    model = ResNeSt(depth=50, norm_eval=True).train()
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and all(not m.training for m in batchnorms)
    assert model.layer1[0].conv1.training  # only the norms are in eval mode
    before = model.layer3[0].conv2.norm1.running_var.clone()
    model(torch.randn(1, 3, 64, 64))  # batch of 1 is fine: BN uses running stats
    torch.testing.assert_close(model.layer3[0].conv2.norm1.running_var, before)


def test_group_norm_builds_and_matches_builtin() -> None:
    norm_cfg = dict(type="GN", num_groups=16, requires_grad=True)
    ours, builtin = build_pair(50, 2, 1, True, norm_cfg=norm_cfg)
    assert any(k.endswith("conv2.gn0.weight") for k in ours.state_dict())
    x = torch.randn(1, 3, 64, 48)
    ours.train()
    builtin.train()
    with torch.no_grad():  # GN has no batch statistics: a batch of 1 trains fine
        torch.testing.assert_close(ours(x)[3], builtin(x)[3], rtol=1e-5, atol=1e-5)


def test_train_returns_self_so_fuse_chain_works() -> None:
    model = randomise(ResNeSt(depth=50), seed=4)
    assert model.train() is model and model.train(False) is model
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model.eval()(x)
        fused = fuse_conv_bn(model).eval()
        actual = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.stem.modules())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_init_weights_none_zero_inits_last_norm_of_each_block() -> None:
    model = ResNeSt(depth=50)
    model.init_weights(None)
    assert torch.count_nonzero(model.layer2[1].norm3.weight) == 0
    assert torch.all(model.layer2[1].norm1.weight == 1)
    no_zero = ResNeSt(depth=50, zero_init_residual=False)
    no_zero.init_weights(None)
    assert torch.all(no_zero.layer2[1].norm3.weight == 1)


# --- error paths --------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=34), r"invalid depth 34 for ResNeSt; expected one of \[50, 101, 200, 269\]"),
    (dict(depth=50, radix=0), "radix must be an integer >= 1, got 0"),
    (dict(depth=50, reduction_factor=0), "reduction_factor must be a positive integer, got 0"),
    (dict(depth=50, groups=3), "groups=3 must divide the attention width 32"),
    (dict(depth=50, stem_channels=63), "stem_channels must be an even number >= 2, got 63"),
    (dict(depth=50, out_indices=(4,)), r"out_indices \(4,\) must lie in 0..3"),
    (dict(depth=50, frozen_stages=5), "frozen_stages must be in -1..4, got 5"),
])
def test_bad_arguments_raise_value_error_naming_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResNeSt(**kwargs)


def test_training_batch_of_one_explains_batchnorm_after_pooling() -> None:
    model = ResNeSt(depth=50).train()
    with pytest.raises(ValueError, match=r"training batch of 1 sample.*BatchNorm after global pooling"
                                         r".*drop_last=True"):
        model(torch.randn(1, 3, 64, 64))
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 2, 2)


def test_init_weights_rejects_non_string_pretrained() -> None:
    with pytest.raises(TypeError, match="pretrained must be a str or None, got int"):
        ResNeSt(depth=50).init_weights(3)
