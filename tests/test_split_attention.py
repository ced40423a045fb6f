"""Split attention against a naive per-group, per-split loop (the paper's Sec. 3).

The oracle below never reshapes: it walks cardinal groups ``g`` and splits
``r`` one at a time with plain matrix products, in the layout the paper
describes (conv group ``r * G + g`` produces split ``r`` of group ``g``;
``fc2`` group ``g`` produces the logits of all splits of group ``g``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnest_plugin.models.split_attention import RadixSoftmax, SplitAttentionConv2d


def _bn_eval(x: torch.Tensor, bn: torch.nn.BatchNorm2d, rows: slice) -> torch.Tensor:
    """Eval-mode BatchNorm of a vector ``x`` holding channels ``rows`` of ``bn``."""
    mean, var = bn.running_mean[rows], bn.running_var[rows]
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight[rows] + bn.bias[rows]


def naive_split_attention(module: SplitAttentionConv2d, x: torch.Tensor) -> torch.Tensor:
    """Loop implementation of split attention (eval mode, one sample at a time)."""
    radix, groups, channels = module.radix, module.groups, module.channels
    per_group = channels // groups
    conv = module.conv
    in_per_conv_group = x.shape[1] // (groups * radix)
    inter = module.fc1.out_channels
    inter_per_group = inter // groups
    outputs = []
    for sample in x:
        # splits[r][g]: (c, H, W), from conv group j = r * G + g.
        splits = [[None] * groups for _ in range(radix)]
        for r in range(radix):
            for g in range(groups):
                j = r * groups + g
                inputs = sample[j * in_per_conv_group:(j + 1) * in_per_conv_group].unsqueeze(0)
                rows = slice(j * per_group, (j + 1) * per_group)
                y = F.conv2d(inputs, conv.weight[rows], None, conv.stride, conv.padding, conv.dilation)[0]
                y = (y - module.norm0.running_mean[rows, None, None]) / torch.sqrt(
                    module.norm0.running_var[rows, None, None] + module.norm0.eps)
                y = y * module.norm0.weight[rows, None, None] + module.norm0.bias[rows, None, None]
                splits[r][g] = torch.relu(y)
        out_groups = []
        for g in range(groups):
            pooled = sum(splits[r][g] for r in range(radix)).mean(dim=(1, 2))  # (c,)
            rows1 = slice(g * inter_per_group, (g + 1) * inter_per_group)
            hidden = module.fc1.weight[rows1, :, 0, 0] @ pooled + module.fc1.bias[rows1]
            hidden = torch.relu(_bn_eval(hidden, module.norm1, rows1))
            logits = []
            for r in range(radix):
                rows2 = slice((g * radix + r) * per_group, (g * radix + r + 1) * per_group)
                logits.append(module.fc2.weight[rows2, :, 0, 0] @ hidden + module.fc2.bias[rows2])
            logits = torch.stack(logits)  # (R, c)
            weights = torch.softmax(logits, dim=0) if radix > 1 else torch.sigmoid(logits)
            out_groups.append(sum(weights[r][:, None, None] * splits[r][g] for r in range(radix)))
        outputs.append(torch.cat(out_groups))
    return torch.stack(outputs)


def _randomise_norms(module: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("radix,groups,stride", [(1, 1, 1), (2, 1, 1), (2, 2, 2), (4, 1, 1), (4, 2, 1), (3, 2, 2)])
def test_split_attention_equals_naive_loop(radix: int, groups: int, stride: int) -> None:
    torch.manual_seed(radix * 10 + groups)
    in_channels, channels = 8 * groups * radix, 8 * groups
    module = SplitAttentionConv2d(in_channels, channels, 3, stride=stride, padding=1,
                                  groups=groups, radix=radix, reduction_factor=4)
    _randomise_norms(module, seed=radix + groups)
    module.eval()
    x = torch.randn(2, in_channels, 9, 7)
    with torch.no_grad():
        expected = naive_split_attention(module, x)
        actual = module(x)
    assert actual.shape == expected.shape == (2, channels, (9 - 1) // stride + 1, (7 - 1) // stride + 1)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_radix_softmax_transposes_group_major_to_radix_major() -> None:
    groups, radix, per_group = 2, 3, 4
    logits = torch.randn(5, groups * radix * per_group, 1, 1)
    weights = RadixSoftmax(radix, groups)(logits)
    assert weights.shape == (5, radix * groups * per_group)
    as_grid = weights.view(5, radix, groups, per_group)  # radix-major
    # Each (group, channel) distributes exactly 1 across its splits.
    torch.testing.assert_close(as_grid.sum(dim=1), torch.ones(5, groups, per_group))
    # Entry (r, g, k) is the softmax over r of logit (g, r, k).
    source = logits.view(5, groups, radix, per_group)
    torch.testing.assert_close(as_grid[:, 1, 0, 2], torch.softmax(source[:, 0, :, 2], dim=1)[:, 1])


def test_radix_one_uses_sigmoid_gate() -> None:
    logits = torch.randn(3, 16, 1, 1)
    torch.testing.assert_close(RadixSoftmax(1, 2)(logits), torch.sigmoid(logits).view(3, 16))


def test_attention_width_follows_reduction_factor_with_floor_32() -> None:
    wide = SplitAttentionConv2d(256, 256, radix=2, reduction_factor=4)
    narrow = SplitAttentionConv2d(16, 16, radix=2, reduction_factor=4)
    assert wide.fc1.out_channels == 128  # 256 * 2 // 4
    assert narrow.fc1.out_channels == 32  # floor: max(8, 32)


@pytest.mark.parametrize("kwargs,message", [
    (dict(radix=0), "radix must be >= 1, got 0"),
    (dict(reduction_factor=0), "reduction_factor must be a positive integer, got 0"),
    (dict(groups=3), "groups=3 x radix=2 must divide in_channels=64"),
])
def test_split_attention_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SplitAttentionConv2d(64, 64, **kwargs)

