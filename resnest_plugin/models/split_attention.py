"""Split attention: the radix softmax and the split-attention convolution (the plain model).

Provenance:
    Paper: Zhang et al., "ResNeSt: Split-Attention Networks", arXiv 2004.08955,
    Sec. 3 (split-attention block, cardinal groups, radix-major layout).
    Parameter names and the exact arithmetic follow MMPose 0.x
    ``mmpose/models/backbones/resnest.py`` (itself from mmcls), so that its
    released COCO checkpoints load unchanged and the outputs are
    bit-identical. One forward as in timm's ``layers/split_attn.py``. The
    CPU kernels that replace two of its steps (pooling and the weighted sum)
    live beside it (:mod:`.split_attention_kernels`, used by
    :mod:`.fast_resnest` and :mod:`.fused_resnest`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import NamedChildCaller, build_conv_layer, build_norm_layer

__all__ = ["RadixSoftmax", "SplitAttentionConv2d", "pool_split_sum", "weighted_split_sum"]


class RadixSoftmax(nn.Module):
    """Softmax across the radix splits of each cardinal group.

    With ``radix == 1`` there is nothing to normalise across, so the paper
    uses a sigmoid gate instead (arXiv 2004.08955, Sec. 3.1).

    Args:
        radix: Number of splits per cardinal group (``R``).
        groups: Number of cardinal groups (``G``).
    """

    def __init__(self, radix: int, groups: int) -> None:
        super().__init__()
        self.radix = radix
        self.groups = groups

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn attention logits into per-split weights.

        Args:
            logits: ``fc2`` output of shape ``(B, G*R*c, 1, 1)`` in
                *group-major* order ``(g, r, c)``, because ``fc2`` is a
                grouped conv with ``G`` groups.

        Returns:
            Weights of shape ``(B, R*G*c)`` in *radix-major* order
            ``(r, g, c)``, the order of the split conv's output channels.
        """
        batch = logits.size(0)
        if self.radix > 1:
            # (B, G, R, c) -> (B, R, G, c): back to the conv's radix-major order.
            grouped = logits.view(batch, self.groups, self.radix, -1).transpose(1, 2)
            return torch.softmax(grouped, dim=1).reshape(batch, -1)
        return torch.sigmoid(logits).reshape(batch, -1)


def pool_split_sum(splits: torch.Tensor, radix: int) -> torch.Tensor:
    """Global average of the sum of the radix splits, in MMPose's order (sum, then pool).

    Args:
        splits: Activated split-conv output ``(B, R*C, H, W)``, radix-major.
        radix: ``R``.

    Returns:
        ``(B, C, 1, 1)``.
    """
    if radix > 1:
        splits = splits.view(splits.size(0), radix, -1, splits.size(2), splits.size(3)).sum(dim=1)
    return F.adaptive_avg_pool2d(splits, 1)


def weighted_split_sum(splits: torch.Tensor, weights: torch.Tensor, radix: int) -> torch.Tensor:
    """Sum of the radix splits weighted per channel: MMPose's product and reduction.

    Args:
        splits: Activated split-conv output ``(B, R*C, H, W)``, radix-major.
        weights: Per-split weights ``(B, R*C)``, radix-major.
        radix: ``R``.

    Returns:
        ``(B, C, H, W)``, contiguous (as MMPose returns it).
    """
    batch = splits.size(0)
    if radix == 1:
        return (weights.view(batch, -1, 1, 1) * splits).contiguous()
    shape = (batch, radix, -1, splits.size(2), splits.size(3))
    return torch.sum(weights.view(batch, radix, -1, 1, 1) * splits.view(shape), dim=1).contiguous()


class SplitAttentionConv2d(NamedChildCaller):
    """Split-attention convolution (the 3x3 conv of a ResNeSt bottleneck).

    One grouped conv with ``groups * radix`` groups produces ``radix`` splits
    of ``channels`` each. Their sum is pooled globally, squeezed by ``fc1``
    to ``max(in_channels * radix // reduction_factor, 32)`` channels and
    expanded by ``fc2`` to one logit per split and channel; the radix softmax
    turns those into weights and the output is the weighted sum of splits.

    Args:
        in_channels: Input channels.
        channels: Output channels ``C`` (per split).
        kernel_size: Kernel size of the split conv.
        stride: Stride of the split conv.
        padding: Padding of the split conv.
        dilation: Dilation of the split conv.
        groups: Cardinality ``G`` (cardinal groups).
        radix: Splits per cardinal group ``R`` (1 = SE-like sigmoid gate).
        reduction_factor: Squeeze ratio of the attention MLP.
        conv_cfg: mmcv config of the split conv (``None`` = ``nn.Conv2d``).
        norm_cfg: mmcv config of the two norm layers.

    Raises:
        ValueError: For a radix or reduction factor below 1, or groups that
            do not divide the channels; the message names the values.
    """

    # getattr with a computed name: TorchScript would reject these (see NamedChildCaller).
    __jit_unused_properties__ = ["norm0", "norm1"]

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        reduction_factor: int = 4,
        conv_cfg: Optional[dict] = None,
        norm_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__()
        if radix < 1:
            raise ValueError(f"radix must be >= 1, got {radix}")
        if reduction_factor < 1:
            raise ValueError(f"reduction_factor must be a positive integer, got {reduction_factor}")
        if groups < 1 or channels % groups or in_channels % (groups * radix):
            raise ValueError(
                f"groups={groups} x radix={radix} must divide in_channels={in_channels}, "
                f"and groups must divide channels={channels}")
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        # Same squeeze width as MMPose / official ResNeSt (floor at 32).
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        if inter_channels % groups:
            raise ValueError(
                f"groups={groups} must divide the attention width {inter_channels} "
                f"(= max(in_channels * radix // reduction_factor, 32))")
        self.radix = radix
        self.groups = groups
        self.channels = channels
        self.conv = build_conv_layer(
            conv_cfg, in_channels, channels * radix, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups * radix, bias=False)
        # Norm names come from mmcv ("bn0"/"gn0"...) to keep MMPose's keys.
        self.norm0_name, norm0 = build_norm_layer(norm_cfg, channels * radix, postfix=0)
        self.add_module(self.norm0_name, norm0)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = build_conv_layer(None, channels, inter_channels, 1, groups=groups)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, inter_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.fc2 = build_conv_layer(None, inter_channels, channels * radix, 1, groups=groups)
        self.rsoftmax = RadixSoftmax(radix, groups)

    @property
    def norm0(self) -> nn.Module:
        """The norm layer after the split conv."""
        return getattr(self, self.norm0_name)

    @property
    def norm1(self) -> nn.Module:
        """The norm layer of the attention MLP (after global pooling)."""
        return getattr(self, self.norm1_name)

    def split_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The ``R`` activated splits: split conv, ``norm0``, ReLU.

        Args:
            x: Input ``(B, in_channels, H, W)``.

        Returns:
            ``(B, R*C, H', W')``, radix-major.
        """
        return self.relu(self.call_child(self.conv(x), self.norm0_name))

    def attention(self, pooled: torch.Tensor) -> torch.Tensor:
        """Per-split weights from the pooled split sum: ``fc1``, ``norm1``, ReLU, ``fc2``, softmax.

        Args:
            pooled: ``(B, C, 1, 1)``.

        Returns:
            ``(B, R*C)``, radix-major.
        """
        hidden = self.relu(self.call_child(self.fc1(pooled), self.norm1_name))
        return self.rsoftmax(self.fc2(hidden))  # fc2: (B, G*R*c, 1, 1), group-major

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the split conv and the split attention, MMPose's operations in MMPose's order.

        Args:
            x: Input of shape ``(B, in_channels, H, W)``.

        Returns:
            Output of shape ``(B, channels, H', W')``.
        """
        splits = self.split_conv(x)
        weights = self.attention(pool_split_sum(splits, self.radix))
        return weighted_split_sum(splits, weights, self.radix)
