"""MMPose 0.x specifics of the backbone: output convention, TopDown checkpoints, golden facts.

The oracle comparisons with the built-in ResNeSt run on both hosts in
``tests/test_resnest_host.py``.

Same weights must give the same outputs: the released MMPose checkpoints
were trained with the built-in, so any numeric drift would cost AP.
"""
from __future__ import annotations

from pathlib import Path
import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt

from resnest_plugin.models import ARCH_SETTINGS, ResNeSt

from model_helpers import randomise

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


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


# Key counts of the released TopDown checkpoints (= the models MMPose 0.29 builds from
# its resnest{50,101,200,269}_coco_*.py configs, 64-channel stem at every depth).
@pytest.mark.parametrize("depth,expected_keys", [(50, 494), (101, 953), (200, 1844), (269, 2465)])
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
