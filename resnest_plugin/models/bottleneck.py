"""The ResNeSt bottleneck and its ResNet-D projection shortcut (the plain model).

Provenance:
    Paper: Zhang et al., "ResNeSt: Split-Attention Networks", arXiv 2004.08955
    (stride on the 3x3 conv done by a 3x3 average pool after the split conv,
    "avd"); ResNet-D shortcut, arXiv 1812.01187. Module layout, parameter
    names and arithmetic follow MMPose 0.x's split-attention ``Bottleneck``
    (``mmpose/models/backbones/resnest.py``), so its state dicts load
    strictly and its outputs are reproduced op for op.
"""
from __future__ import annotations

from typing import Optional, Type

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .layers import NamedChildCaller, build_conv_layer, build_norm_layer
from .split_attention import SplitAttentionConv2d

__all__ = ["ResNeStBottleneck", "make_downsample"]



class ZeroPaddedAvgPool2d(nn.AvgPool2d):
    """MMPose's ``nn.AvgPool2d(3, stride, padding=1)`` (the avd layer), exported as pad + pool.

    In eager mode and TorchScript it is ``nn.AvgPool2d`` itself. In an ONNX
    export it zero-pads explicitly and pools without padding, which is the
    same arithmetic (``count_include_pad=True`` divides by the full window
    either way): torch 1.13's exporter turns the padded pool into a graph
    that onnxruntime evaluates differently (up to 0.86 off on random inputs,
    measured with onnxruntime 1.19), while the explicit form exports
    correctly on every torch of the support matrix.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average-pool ``x``; in an ONNX export, as explicit zero padding + an unpadded pool."""
        # TorchScript skips the body of "if not torch.jit.is_scripting()" at compile
        # time (it cannot compile torch.onnx.is_in_onnx_export), and it has no super().
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export() and self.count_include_pad:
                pad_h, pad_w = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
                return F.avg_pool2d(F.pad(x, [pad_w, pad_w, pad_h, pad_h]), self.kernel_size, self.stride, 0,
                                    self.ceil_mode, True, self.divisor_override)
        # nn.AvgPool2d.forward, as it is.
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

class ResNeStBottleneck(NamedChildCaller):
    """ResNeSt bottleneck: 1x1 conv, split-attention 3x3 conv, 1x1 conv.

    Args:
        in_channels: Input channels of the block.
        out_channels: Output channels (``expansion`` x the bottleneck width).
        stride: Stride of the block (on the 3x3 path, "pytorch" style).
        dilation: Dilation of the 3x3 conv.
        downsample: Projection of the identity branch, if shapes change.
        groups: Cardinality of the split conv.
        width_per_group: Width per cardinal group when ``groups > 1``;
            ``2s2x40d`` means radix 2, groups 2, width_per_group 40.
        base_channels: Bottleneck width of the first stage (64).
        radix: Splits per cardinal group.
        reduction_factor: Squeeze ratio of the split attention.
        avg_down_stride: Stride with a 3x3 average pool after the split conv
            instead of a strided split conv.
        expansion: Ratio of ``out_channels`` to the bottleneck width.
        with_cp: Recompute the block in backward to save memory.
        conv_cfg: mmcv config of the convs.
        norm_cfg: mmcv config of the norm layers.
        split_attention: The class of the 3x3 conv (the fast model passes
            its subclass, :class:`~.fast_resnest.FastSplitAttentionConv2d`).

    Raises:
        ValueError: For widths that do not divide; the message names them.
    """

    # getattr with a computed name: TorchScript would reject these (see NamedChildCaller).
    __jit_unused_properties__ = ["norm1", "norm3"]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        width_per_group: int = 4,
        base_channels: int = 64,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        expansion: int = 4,
        with_cp: bool = False,
        conv_cfg: Optional[dict] = None,
        norm_cfg: Optional[dict] = None,
        split_attention: Type[SplitAttentionConv2d] = SplitAttentionConv2d,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        if out_channels % expansion:
            raise ValueError(f"out_channels={out_channels} is not a multiple of expansion={expansion}")
        mid_channels = out_channels // expansion
        if groups != 1:
            # ResNeXt-style width: groups x width_per_group, scaled per stage
            # (the rule of MMPose / mmcls; official: int(planes * d / 64) * groups).
            if mid_channels % base_channels:
                raise ValueError(
                    f"bottleneck width {mid_channels} is not a multiple of base_channels={base_channels}")
            mid_channels = groups * width_per_group * mid_channels // base_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        self.stride = stride
        self.with_cp = with_cp
        self.avg_down_stride = avg_down_stride and stride > 1

        self.conv1 = build_conv_layer(conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = split_attention(
            mid_channels, mid_channels, kernel_size=3,
            stride=1 if self.avg_down_stride else stride,
            padding=dilation, dilation=dilation, groups=groups, radix=radix,
            reduction_factor=reduction_factor, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if self.avg_down_stride:
            # "avd" (arXiv 2004.08955 Sec. 4): the 3x3 conv keeps stride 1
            # and this pool downsamples, which preserves spatial information.
            self.avd_layer = ZeroPaddedAvgPool2d(3, stride, padding=1)
        self.conv3 = build_conv_layer(conv_cfg, mid_channels, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def norm1(self) -> nn.Module:
        """Norm layer after ``conv1``."""
        return getattr(self, self.norm1_name)

    @property
    def norm3(self) -> nn.Module:
        """Norm layer after ``conv3`` (zero-initialised by default)."""
        return getattr(self, self.norm3_name)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.call_child(self.conv1(x), self.norm1_name))
        out = self.conv2(out)
        if hasattr(self, "avd_layer"):  # static in TorchScript: the layer exists iff avg_down_stride
            out = self.avd_layer(out)
        out = self.call_child(self.conv3(out), self.norm3_name)
        identity = x if self.downsample is None else self.downsample(x)
        # In place, as MMPose: the norm's backward does not need its output.
        return out.add_(identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: Input of shape ``(B, in_channels, H, W)``.

        Returns:
            Output of shape ``(B, out_channels, H / stride, W / stride)``.
        """
        # Scripted models are for inference: no checkpointing there (TorchScript
        # skips this branch at compile time, so cp.checkpoint need not compile).
        if not torch.jit.is_scripting() and self.with_cp and x.requires_grad:
            # use_reentrant=False: the non-deprecated mode, also correct when
            # only parameters (not the input) require gradients.
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)


def make_downsample(
    in_channels: int,
    out_channels: int,
    stride: int,
    conv_cfg: Optional[dict],
    norm_cfg: dict,
) -> nn.Sequential:
    """ResNet-D projection shortcut: avg-pool then stride-1 1x1 conv + norm.

    The pool is only present when ``stride != 1``, which shifts the conv's
    index from 0 to 1 (MMPose's key layout: ``downsample.{0,1}`` in stage 1,
    ``downsample.{1,2}`` after).

    Args:
        in_channels: Input channels of the shortcut.
        out_channels: Output channels (those of the block).
        stride: Stride of the block.
        conv_cfg: mmcv config of the conv.
        norm_cfg: mmcv config of the norm.

    Returns:
        ``nn.Sequential([pool,] conv, norm)``.
    """
    layers = []
    if stride != 1:
        # arXiv 1812.01187 (ResNet-D): pooling before the 1x1 conv keeps the
        # 3/4 of activations a stride-2 1x1 conv would skip.
        layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
    layers.append(build_conv_layer(conv_cfg, in_channels, out_channels, 1, bias=False))
    layers.append(build_norm_layer(norm_cfg, out_channels)[1])
    return nn.Sequential(*layers)
