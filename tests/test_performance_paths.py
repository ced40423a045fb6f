"""Correctness of every fast path of the backbone (no timing here: see benchmarks/).

Paths: the fast model's channels_last forward and training kernels, its
fused inference model (built once: ``tests/test_fused_inference.py``
checks the folding), Conv+BN fusion as ``tools/test.py --fuse-conv-bn``
does it (``mmcv.cnn.fuse_conv_bn``), ``torch.compile`` (one graph, no
breaks), ``torch.jit.script``. Oracle: MMPose's built-in ResNeSt with the
same weights, run the plain way (NCHW, unfused, eager). Runs on both stacks.
"""
from __future__ import annotations

from typing import Tuple, Type

import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from torch import nn

from resnest_plugin.models import FastResNeSt, FastSplitAttentionConv2d, FusedResNeSt, ResNeSt, SplitAttentionConv2d
from resnest_plugin.models.split_attention import weighted_split_sum
from resnest_plugin import torch_compat
from resnest_plugin.models.split_attention_kernels import Radix2WeightedSum, channels_last_weighted_sum

from host_helpers import BuiltinResNeSt, PluginResNeSt, as_tuple
from model_helpers import randomise

CHANNELS_LAST = torch.channels_last


def pair(radix: int = 2, groups: int = 1, avd: bool = True, model: Type[ResNeSt] = FastResNeSt,
         **extra) -> Tuple[ResNeSt, BuiltinResNeSt]:
    """Ours and the built-in with the same random weights, all four stages out, eval."""
    options = dict(depth=50, radix=radix, groups=groups, avg_down_stride=avd, out_indices=(0, 1, 2, 3),
                   **extra)
    builtin = randomise(BuiltinResNeSt(**options), seed=radix * 10 + groups)
    ours = model(stem_channels=64, **options)
    ours.load_state_dict(builtin.state_dict())
    # MMPose 0.29's ResNet.train() returns None: no chaining on the built-in.
    builtin.eval()
    return ours.eval(), builtin


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 48, generator=torch.Generator().manual_seed(seed))


def assert_outputs_close(actual, expected, tol: float) -> None:
    actual, expected = as_tuple(actual), as_tuple(expected)
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"stage {index}: {tuple(a.shape)} != {tuple(e.shape)}"
        torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=f"stage {index}")


def _stage_scaled_tolerance(actual, expected, tol: float = 1e-5) -> None:
    """Rounding noise grows with the activations' size: compare relative to it."""
    actual, expected = as_tuple(actual), as_tuple(expected)
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        scale = e.abs().max().item()
        torch.testing.assert_close(a, e, rtol=0, atol=tol * scale, msg=f"stage {index} (max |x| {scale:.1f})")


def _gradients_close(actual: dict, expected: dict, tol: float = 1e-6) -> None:
    """Each gradient within ``tol`` of its own scale, floored at 1e-6 of the largest
    (some, e.g. fc1 biases before a train-mode BN, are mathematically zero)."""
    assert actual.keys() == expected.keys()
    largest = max(g.abs().max().item() for g in expected.values())
    assert largest > 1e-3, "degenerate gradients"
    for name, grad in expected.items():
        scale = max(grad.abs().max().item(), 1e-6 * largest)
        torch.testing.assert_close(actual[name], grad, rtol=0, atol=tol * scale, msg=name)


# --- the split attention's kernels ---------------------------------------------------

@pytest.mark.parametrize("radix,groups", [(1, 1), (2, 1), (4, 2)])
def test_weighted_sums_are_exact_and_the_channels_last_one_keeps_the_layout(radix: int, groups: int) -> None:
    x = torch.rand(2, radix * 16, 5, 3)
    weights = torch.rand(2, radix * 16)
    reference = (x.view(2, radix, 16, 5, 3) * weights.view(2, radix, 16, 1, 1)).sum(dim=1)
    plain = weighted_split_sum(x, weights, radix)
    assert plain.is_contiguous() and torch.equal(plain, reference), "plain: values differ"
    nhwc = channels_last_weighted_sum(x.contiguous(memory_format=CHANNELS_LAST), weights, radix)
    assert nhwc.is_contiguous(memory_format=CHANNELS_LAST), "channels_last not kept"
    assert torch.equal(nhwc, reference), "channels_last: values differ"


@pytest.mark.parametrize("layout", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "nhwc"])
def test_radix2_weighted_sum_backward_equals_autograd(layout: torch.memory_format) -> None:
    """The hand-written backward against autograd's through the reference product and sum."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2 * 8, 5, 4, dtype=torch.float64, generator=generator).contiguous(memory_format=layout)
    weights = torch.rand(3, 2 * 8, dtype=torch.float64, generator=generator)
    grad = torch.randn(3, 8, 5, 4, dtype=torch.float64, generator=generator)
    x.requires_grad_(True)
    weights.requires_grad_(True)
    out = Radix2WeightedSum.apply(x, weights)
    reference = (x.view(3, 2, 8, 5, 4) * weights.view(3, 2, 8, 1, 1)).sum(dim=1)
    torch.testing.assert_close(out, reference, rtol=1e-15, atol=1e-15)
    assert out.is_contiguous(memory_format=layout)
    actual = torch.autograd.grad(out, (x, weights), grad)
    expected = torch.autograd.grad(reference, (x, weights), grad)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(actual[1], expected[1], rtol=1e-13, atol=1e-13)
    assert actual[0].is_contiguous(memory_format=layout), "gradient left the input's layout"
    assert torch.autograd.gradcheck(Radix2WeightedSum.apply, (x, weights))


def test_radix2_weighted_sum_is_used_by_the_fast_split_attention_in_channels_last_training_only() -> None:
    fast = randomise(FastSplitAttentionConv2d(32, 32, radix=2, groups=1), seed=2).train()
    x = torch.randn(2, 32, 9, 7, requires_grad=True)
    assert "Radix2WeightedSum" in type(fast(x.contiguous(memory_format=CHANNELS_LAST)).grad_fn).__name__
    # NCHW keeps MMPose's operations (bit-identical exact mode).
    assert "Radix2WeightedSum" not in type(fast(x).grad_fn).__name__
    # The plain model never uses it, whatever the layout.
    plain = SplitAttentionConv2d(32, 32, radix=2, groups=1).train()
    plain.load_state_dict(fast.state_dict())
    assert "Radix2WeightedSum" not in type(plain(x.contiguous(memory_format=CHANNELS_LAST)).grad_fn).__name__
    out = fast(x.contiguous(memory_format=CHANNELS_LAST))
    (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|twice"):
        grad_x.sum().backward()


def test_fast_split_attention_keeps_channels_last_and_the_plain_values() -> None:
    fast = randomise(FastSplitAttentionConv2d(32, 32, radix=2, groups=1), seed=1).eval()
    plain = SplitAttentionConv2d(32, 32, radix=2, groups=1).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        expected = plain(x)
        assert torch.equal(fast(x), expected), "NCHW must run the plain operations"
        actual = fast(x.contiguous(memory_format=CHANNELS_LAST))
    assert actual.is_contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# --- exact mode and channels_last ------------------------------------------------------

@pytest.mark.parametrize("model", [ResNeSt, FastResNeSt, PluginResNeSt], ids=["plain", "fast", "registered"])
def test_exact_mode_is_bit_identical_to_builtin(model: Type[ResNeSt]) -> None:
    """The plain model as it is, and the fast ones with both switches off: MMPose's
    arithmetic op for op, in MMPose's layout."""
    ours, builtin = pair(model=model)
    ours.fast_inference = False
    ours.cpu_channels_last = False
    x = images()
    with torch.no_grad():
        expected = builtin(x)
        actual = ours(x)
    assert len(actual) == 4 and all(torch.equal(a, e) for a, e in zip(actual, expected))


def test_channels_last_training_path_matches_builtin_outputs_and_gradients() -> None:
    """The default CPU training path (channels_last inside, NCHW out), in float64:
    train-mode BN on a 2-sample batch amplifies float32 rounding ~1000x."""
    ours, builtin = pair()
    assert ours.cpu_channels_last
    x = images().double()
    results = []
    for model in (builtin, ours):
        model.double().train()
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, {n: p.grad for n, p in model.named_parameters()}))
    (e_outs, e_grads), (a_outs, a_grads) = results
    assert all(t.is_contiguous() for t in a_outs), "outputs must come back NCHW"
    _stage_scaled_tolerance(a_outs, e_outs, tol=1e-8)
    _gradients_close(a_grads, e_grads)


def test_channels_last_input_keeps_channels_last_through_the_blocks() -> None:
    ours, builtin = pair()
    ours.fast_inference = False
    x = images().contiguous(memory_format=CHANNELS_LAST)
    with torch.no_grad():
        expected = builtin(x.contiguous())
        actual = ours(x)
    # channels_last in, channels_last out: no layout falls out in the blocks.
    assert all(t.is_contiguous(memory_format=CHANNELS_LAST) for t in actual)
    assert_outputs_close(actual, expected, 1e-5)


# --- fused inference -------------------------------------------------------------------

class FastPathSpy:
    """Counts calls of ``FusedResNeSt.forward`` (installed with monkeypatch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = FusedResNeSt.forward

        def spy(model: FusedResNeSt, x: torch.Tensor):
            self.calls += 1
            return original(model, x)

        monkeypatch.setattr(FusedResNeSt, "forward", spy)


# The fused inference model runs where torch has oneDNN's fused convolutions
# (torch >= 2.0); elsewhere (torch 1.13) the fast model takes the plain path,
# with the same outputs. Asked of torch by the same probe the model uses.
FUSED_CALLS = 1 if torch_compat.mkldnn_pointwise_ok() else 0


@pytest.mark.parametrize("radix,groups,avd,extra", [
    (2, 1, True, {}), (1, 1, False, {}), (4, 2, True, {}),
    (2, 1, True, dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))),
], ids=["2s1x", "1s1x-noavd", "4s2x", "dilated"])
def test_fast_inference_is_the_default_and_matches_builtin(radix: int, groups: int, avd: bool, extra: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FastPathSpy(monkeypatch)
    ours, builtin = pair(radix, groups, avd, **extra)
    assert ours.fast_inference
    x = images(seed=radix)
    with torch.no_grad():
        expected = builtin(x)
        actual = ours(x)
    assert spy.calls == FUSED_CALLS, "fast path not taken where it exists, or taken where it does not"
    # NCHW out, like the plain path (some MMPose heads .view() their input).
    assert all(t.is_contiguous() for t in actual)
    _stage_scaled_tolerance(actual, expected)


def test_registered_class_takes_the_fast_path_without_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """What MMPose's stock tools/test.py builds from a config runs the fused model."""
    spy = FastPathSpy(monkeypatch)
    assert issubclass(PluginResNeSt, FastResNeSt)
    ours, builtin = pair(model=PluginResNeSt)
    x = images(seed=12)
    with torch.no_grad():
        _stage_scaled_tolerance(ours(x), builtin(x))
    assert spy.calls == FUSED_CALLS
    plain = ResNeSt(depth=50, stem_channels=64, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        plain(x)
    assert spy.calls == FUSED_CALLS, "the plain model must not take the fast path"


def test_fast_inference_single_output_and_fp32_only(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FastPathSpy(monkeypatch)
    model = randomise(FastResNeSt(depth=50), seed=10).eval()
    x = images(seed=10)
    with torch.no_grad():
        fast = model(x)
        model.fast_inference = False
        plain = model(x)
        assert spy.calls == FUSED_CALLS
        double = model.double()(x.double())  # other dtypes: plain path
    assert spy.calls == FUSED_CALLS
    assert isinstance(fast, tuple) and len(fast) == 1 and fast[0].shape == plain[0].shape == (2, 2048, 2, 2)
    _stage_scaled_tolerance(fast, plain)
    _stage_scaled_tolerance((double[0].float(),), plain)


def test_fast_inference_only_without_autograd_in_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FastPathSpy(monkeypatch)
    ours, builtin = pair()
    x = images(seed=8)
    out = ours(x)  # autograd on: plain path, gradients work
    _stage_scaled_tolerance(out, builtin(x))
    out[3].sum().backward()
    assert ours.layer1[0].conv1.weight.grad is not None
    ours.train()
    with torch.no_grad():
        ours(x)  # training mode: plain path even without autograd
    assert spy.calls == 0


def test_fuse_conv_bn_model_takes_fast_path_even_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FastPathSpy(monkeypatch)
    ours, builtin = pair()
    ours.fast_inference = False
    x = images(seed=9)
    with torch.no_grad():
        expected = builtin(x)
        actual = fuse_conv_bn(ours)(x)
    assert spy.calls == FUSED_CALLS, "fast path not taken where it exists, or taken where it does not"
    _stage_scaled_tolerance(actual, expected)


def test_norms_that_cannot_fold_keep_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FastPathSpy(monkeypatch)
    ours, builtin = pair(norm_cfg=dict(type="GN", num_groups=16))
    x = images(seed=11)
    with torch.no_grad():
        _stage_scaled_tolerance(ours(x), builtin(x))
    assert spy.calls == 0


# --- Conv+BN fusion (tools/test.py --fuse-conv-bn) ---------------------------------

@pytest.mark.parametrize("model", [ResNeSt, FastResNeSt], ids=["plain", "fast"])
@pytest.mark.parametrize("radix,groups,avd", [(2, 1, True), (1, 1, False), (4, 2, True)])
def test_fuse_conv_bn_folds_every_norm_and_keeps_outputs(radix: int, groups: int, avd: bool,
                                                         model: Type[ResNeSt]) -> None:
    ours, builtin = pair(radix, groups, avd, model=model)
    x = images(seed=radix)
    with torch.no_grad():
        expected = builtin(x)
        fused = fuse_conv_bn(ours)
        actual = fused(x)
    # Every BN follows a conv in module order, including the split attention's
    # bn1 after fc1 (pooling sits before fc1, not between fc1 and bn1).
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert_outputs_close(actual, expected, 1e-4)


def test_fused_model_also_runs_channels_last() -> None:
    ours, builtin = pair()
    x = images(seed=3)
    with torch.no_grad():
        expected = builtin(x)
        fused = fuse_conv_bn(ours).to(memory_format=CHANNELS_LAST)
        actual = fused(x.contiguous(memory_format=CHANNELS_LAST))
    assert_outputs_close(actual, expected, 1e-4)


# --- torch.jit.script ----------------------------------------------------------------

@pytest.mark.parametrize("norm_cfg", [None, dict(type="GN", num_groups=16)], ids=["BN", "GN"])
@pytest.mark.parametrize("model", [ResNeSt, PluginResNeSt], ids=["plain", "registered"])
def test_jit_script_matches_eager_and_keeps_state_dict_keys(norm_cfg, model: Type[ResNeSt]) -> None:
    """The plain model scripts as it is; the registered (fast) one scripts as its plain model."""
    extra = {} if norm_cfg is None else dict(norm_cfg=norm_cfg)
    ours, builtin = pair(model=model, **extra)
    scripted = torch.jit.script(ours)
    assert list(scripted.state_dict()) == list(ours.state_dict())
    x = images(seed=4)
    with torch.no_grad():
        expected = builtin(x)
        actual = scripted(x)
    assert isinstance(actual, list)  # TorchScript has no variable-length tuples
    assert_outputs_close(actual, expected, 1e-5)
    # Scripting left the eager model as it was: still the fast split attention.
    assert type(ours.layer1[0].conv2) is ours.split_attention_class


def test_jit_script_single_output_and_round_trip(tmp_path) -> None:
    model = randomise(ResNeSt(depth=50, radix=2, groups=2), seed=5).eval()
    scripted = torch.jit.script(model)
    path = tmp_path / "resnest50.pt"
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    x = images(seed=5)
    with torch.no_grad():
        (expected,) = model(x)
        actual = loaded(x)
    assert isinstance(actual, list) and len(actual) == 1 and actual[0].shape == (2, 2048, 2, 2)
    torch.testing.assert_close(actual[0], expected, rtol=1e-5, atol=1e-5)


# --- torch.compile ---------------------------------------------------------------------

# torch.compile came with torch 2.0: on the torch 1.13 row of the support matrix
# there is nothing to compile with (asked of torch, not of its version).
needs_compile = pytest.mark.skipif(not hasattr(torch, "compile"), reason="this torch has no torch.compile (torch >= 2.0)")


@needs_compile
@pytest.mark.parametrize("model", [ResNeSt, PluginResNeSt], ids=["plain", "registered"])
def test_compile_fullgraph_has_no_graph_breaks(model: Type[ResNeSt]) -> None:
    """Dynamo captures the whole backbone as one graph (fullgraph=True raises on a break).

    backend="eager" runs the captured graph without code generation, so this
    checks the capture in seconds; the inductor test below checks the numbers.
    """
    torch._dynamo.reset()
    ours, builtin = pair(model=model)
    compiled = torch.compile(ours, fullgraph=True, backend="eager")
    x = images(seed=6)
    with torch.no_grad():
        expected = builtin(x)
        actual = compiled(x)
    assert_outputs_close(actual, expected, 1e-5)
    explanation = torch._dynamo.explain(ours)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@needs_compile
def test_compile_fullgraph_training_step_of_the_fast_model_has_no_graph_breaks() -> None:
    """With autograd, the fast model's channels_last kernels (Radix2WeightedSum) compile in one graph."""
    torch._dynamo.reset()
    ours, builtin = pair()
    ours.double().train()
    builtin.double().train()
    x = images().double()
    compiled = torch.compile(ours, fullgraph=True, backend="eager")
    out_c = compiled(x)[3]
    out_b = builtin(x)[3]
    _stage_scaled_tolerance((out_c,), (out_b,), tol=1e-8)
    out_c.square().mean().backward()
    assert ours.layer1[0].conv2.conv.weight.grad is not None


@needs_compile
@pytest.mark.slow
def test_compile_inductor_matches_builtin_in_eval_and_train() -> None:
    """Inductor (the default backend) compiles the backbone in one graph, eval and train."""
    torch._dynamo.reset()
    ours, builtin = pair()
    compiled = torch.compile(ours, fullgraph=True)
    x = images(seed=7)
    with torch.no_grad():
        _stage_scaled_tolerance(compiled(x), builtin(x))
    # Training, in float64 (train-mode BN on 2 samples amplifies float32 rounding ~1000x).
    torch._dynamo.reset()
    ours.double().train()
    builtin.double().train()
    compiled = torch.compile(ours, fullgraph=True)
    x = x.double()
    out_c = compiled(x)[3]
    out_b = builtin(x)[3]
    out_c.square().mean().backward()
    out_b.square().mean().backward()
    _stage_scaled_tolerance((out_c,), (out_b,), tol=1e-8)
    _gradients_close({n: p.grad for n, p in ours.named_parameters()},
                     {n: p.grad for n, p in builtin.named_parameters()})
