"""The host-free core ResNeSt: golden parameter counts, options and errors, on both stacks.

Oracles: STYLE.md's reference parameter counts (timm's published figures
less the classifier), autograd without checkpointing (``with_cp``),
the unfused model (``fuse_conv_bn``), and the error texts a user acts on.
The core returns a tuple of the ``out_indices`` stages whatever the host;
each host's own output convention is tested in its folder.
"""
from __future__ import annotations

import pytest
import torch
from mmcv.cnn import fuse_conv_bn

from resnest_plugin.models import ARCH_SETTINGS, ResNeSt

from model_helpers import randomise


# STYLE.md "Reference parameter counts" (backbone only, no classifier); with a
# 1000-class fc they equal timm's published 27.48M / 48.28M / 70.20M / 110.93M.
GOLDEN_PARAMETER_COUNTS = {50: 25_434_240, 101: 46_226_016, 200: 68_152_544, 269: 108_880_480}


@pytest.mark.parametrize("depth", sorted(GOLDEN_PARAMETER_COUNTS))
def test_parameter_count_per_depth_with_default_stem(depth: int) -> None:
    model = ResNeSt(depth=depth)
    assert model.stem_channels == ARCH_SETTINGS[depth].stem_channels
    assert sum(p.numel() for p in model.parameters()) == GOLDEN_PARAMETER_COUNTS[depth]


def test_core_returns_a_tuple_for_one_and_for_several_stages() -> None:
    x = torch.randn(1, 3, 32, 32)
    single = ResNeSt(depth=50, out_indices=(3,)).eval()(x)
    several = ResNeSt(depth=50, out_indices=(1, 3)).eval()(x)
    assert isinstance(single, tuple) and [t.shape for t in single] == [(1, 2048, 1, 1)]
    assert isinstance(several, tuple) and [t.shape[1] for t in several] == [512, 2048]


# --- behaviour of options ---------------------------------------------------

def test_with_cp_gives_same_outputs_and_gradients() -> None:
    plain = randomise(ResNeSt(depth=50, stem_channels=64), seed=3)
    checkpointed = ResNeSt(depth=50, stem_channels=64, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 48)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        out, = model(x.clone().requires_grad_(True))
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
    assert model.eval()(torch.randn(1, 3, 64, 64))[0].shape == (1, 2048, 2, 2)


def test_init_weights_rejects_non_string_pretrained() -> None:
    with pytest.raises(TypeError, match="pretrained must be a str or None, got int"):
        ResNeSt(depth=50).init_weights(3)
