"""Split attention: the radix softmax and the split-attention convolution.

Provenance:
    Paper: Zhang et al., "ResNeSt: Split-Attention Networks", arXiv 2004.08955,
    Sec. 3 (split-attention block, cardinal groups, radix-major layout).
    Parameter names and the exact arithmetic follow MMPose 0.x
    ``mmpose/models/backbones/resnest.py`` (itself from mmcls), so that its
    released COCO checkpoints load unchanged. The reshape + reduction
    formulation instead of per-split ``torch.split`` loops follows timm's
    ``layers/split_attn.py``. Written anew for this plugin, which adds the
    channels_last-preserving weighted sum (NHWC view, reduction over the
    radix there), the pool-then-sum order for NHWC, and the fused inference
    path (:mod:`.fused_inference`).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .fused_inference import conv_bn, is_foldable_norm, is_plain_conv
from .layers import build_conv_layer, build_norm_layer

__all__ = [
    "NamedChildCaller", "RadixSoftmax", "Radix2WeightedSum", "SplitAttentionConv2d", "is_channels_last",
    "weighted_sum", "weighted_sum_radix2",
]


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


class NamedChildCaller(nn.Module):
    """Base for modules whose norm layers have mmcv's type-dependent names.

    mmcv's ``build_norm_layer`` names a norm by its type (``bn1`` for BN,
    ``gn1`` for GN, ...), and the modules reach it through a property doing
    ``getattr(self, self.norm1_name)``. TorchScript accepts ``getattr`` only
    with a literal name, so scripted code calls :meth:`call_child` instead.
    """

    def call_child(self, x: torch.Tensor, wanted: str) -> torch.Tensor:
        """Apply the child module named ``wanted`` to ``x``.

        In TorchScript the loop over the children is unrolled at compile
        time: a few string comparisons per call. Eager code uses the
        properties instead.

        Args:
            x: Input of the child.
            wanted: Attribute name of the child.

        Returns:
            The child's output.
        """
        for name, child in self.named_children():
            if name == wanted:
                x = child(x)
        return x


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the split conv and the split attention.

        Args:
            x: Input of shape ``(B, in_channels, H, W)``, either memory
                format; the output keeps the format of the split conv's
                output (``channels_last`` in, ``channels_last`` out).

        Returns:
            Output of shape ``(B, channels, H', W')``.
        """
        x = self.conv(x)
        if torch.jit.is_scripting():
            x = self.call_child(x, self.norm0_name)
        else:
            x = self.norm0(x)
        # NCHW: MMPose's order of operations (bit-identical results). channels_last
        # runs other kernels anyway (never bit-identical): there the cheaper order.
        return self.attend(self.relu(x), pool_first=is_channels_last(x))

    @torch.jit.unused
    def fusable(self) -> bool:
        """Whether :meth:`fused_forward` can stand in for ``forward`` (in eval)."""
        return is_plain_conv(self.conv) and is_foldable_norm(self.norm0) and type(self.relu) is nn.ReLU

    @torch.jit.unused
    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` for eval-mode CPU inference without autograd: split conv,
        folded norm and ReLU as one oneDNN op (:mod:`.fused_inference`)."""
        x = conv_bn(x, self.conv, self.norm0, relu=True)
        if self.radix != 2:
            return self.attend(x, pool_first=True)
        return self.attend(x, pool_first=True, inference_sum=True)

    def attend(self, x: torch.Tensor, pool_first: bool = False, inference_sum: bool = False) -> torch.Tensor:
        """Weight the splits of ``x`` by their attention and sum them.

        Args:
            x: Activated split-conv output ``(B, R*C, H, W)``, radix-major.
            pool_first: Pool each split, then sum the ``R*C`` means (reads
                ``x`` once) instead of MMPose's sum of the splits, then pool
                (an extra pass over ``x``). Same value up to float rounding;
                the default keeps MMPose's order, which makes the output
                bit-identical to MMPose's built-in on the same kernels (a
                50+-block network amplifies even 1-ulp differences).
            inference_sum: Radix 2 without autograd: weighted sum as one
                multiply and one in-place multiply-add on the channel halves
                (:func:`weighted_sum_radix2`), half the memory traffic.

        Returns:
            ``(B, C, H, W)``, same memory format as ``x``.
        """
        batch = x.size(0)
        if pool_first:
            if _recording_autograd(x):
                # Sum, then divide the small (B, R*C) result: on CPU exactly what mean()
                # (and adaptive_avg_pool2d(x, 1)) computes -- ATen's mean_out is sum_out
                # followed by div_ -- but the backward of a sum is a stride-0 expand of
                # the gradient, where mean's backward divides the expanded gradient into
                # a full NCHW tensor that then meets the channels_last gradient of the
                # weighted sum in a slow mixed-layout add (profiled: ~3% of a step).
                gap = x.sum(dim=[2, 3], keepdim=True) / float(x.size(2) * x.size(3))
            else:
                gap = F.adaptive_avg_pool2d(x, 1)  # (B, R*C, 1, 1); one GlobalAveragePool in ONNX
            if self.radix > 1:
                gap = gap.view(batch, self.radix, self.channels, 1, 1).sum(dim=1)  # (B, C, 1, 1)
        else:
            if self.radix > 1:
                x_sum = x.view(batch, self.radix, self.channels, x.size(2), x.size(3)).sum(dim=1)  # (B, C, H, W)
            else:
                x_sum = x
            gap = F.adaptive_avg_pool2d(x_sum, 1)  # (B, C, 1, 1)
        hidden = self.fc1(gap)
        if torch.jit.is_scripting():
            hidden = self.call_child(hidden, self.norm1_name)
        else:
            hidden = self.norm1(hidden)
        attention = self.fc2(self.relu(hidden))  # (B, G*R*c, 1, 1), group-major
        weights = self.rsoftmax(attention)  # (B, R*C), radix-major
        if inference_sum:
            return weighted_sum_radix2(x, weights)
        # "not is_scripting()" first: TorchScript, which cannot call autograd Functions,
        # then skips the branch at compile time.
        if (not torch.jit.is_scripting() and pool_first and self.radix == 2
                and (_recording_autograd(x) or _recording_autograd(weights))):
            return Radix2WeightedSum.apply(x, weights)
        return weighted_sum(x, weights, self.radix)


def weighted_sum_radix2(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """:func:`weighted_sum` for radix 2, without autograd: ``x0 * w0 + x1 * w1``.

    One multiply and one in-place multiply-add over the two channel halves
    (views), instead of a full-size product and a reduction: half the memory
    traffic. The multiply-add may round once (FMA) where the reference
    rounds twice. Keeps the memory format of ``x``. Not for autograd (the
    slices' backward would allocate two full-size gradients).

    Args:
        x: Split-conv output ``(B, 2*C, H, W)``, radix-major.
        weights: ``(B, 2*C)``, radix-major.

    Returns:
        ``(B, C, H, W)``.
    """
    channels = x.size(1) // 2
    w = weights.view(x.size(0), 2 * channels, 1, 1)
    out = x[:, :channels] * w[:, :channels]
    return out.addcmul_(x[:, channels:], w[:, channels:])


def _recording_autograd(x: torch.Tensor) -> bool:
    """Whether eager autograd records ``x``'s uses (not TorchScript, not tracing: the
    tracer, e.g. ONNX export, gets the plain operations, not a Python autograd op)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    return torch.is_grad_enabled() and x.requires_grad


class Radix2WeightedSum(torch.autograd.Function):
    """:func:`weighted_sum` for radix 2 under autograd, with a hand-written backward.

    Autograd's backward of ``(splits * weights).sum(radix)`` allocates two
    full-size tensors (the gradient of the splits, and the product reduced
    for the gradient of the weights); its forward allocates a third (the
    product before the reduction). Here the forward is
    :func:`weighted_sum_radix2` (half the memory traffic) and one buffer holds
    first the product for the weights' gradient, then the splits' gradient,
    all on contiguous memory. Together with the pooling by sum in
    :meth:`SplitAttentionConv2d.attend`: ResNeSt-50 training step 1.12 ->
    1.17 x MMPose's built-in (benchmarks/, interleaved A/B, 10 repetitions).

    Not twice differentiable (``once_differentiable``: a double backward
    raises a clear error).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x, weights)
        return weighted_sum_radix2(x, weights)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        x, weights = ctx.saved_tensors
        batch, height, width = x.size(0), x.size(2), x.size(3)
        channels = x.size(1) // 2
        buffer = torch.empty_like(x)  # memory format of x
        # The buffer as a contiguous (batch, pixels, radix, channels) array in the NHWC
        # case, (batch, radix, channels, pixels) otherwise: the products and reductions
        # below run on contiguous memory (and dynamo accepts out= only into such views).
        if is_channels_last(x):
            rows = buffer.permute(0, 2, 3, 1).view(batch, height * width, 2, channels)
            x_rows = x.permute(0, 2, 3, 1).view(batch, height * width, 2, channels)
            grad_rows = grad.permute(0, 2, 3, 1).reshape(batch, height * width, 1, channels)
            w_rows = weights.view(batch, 1, 2, channels)
            pixel_dim = 1
        else:
            rows = buffer.view(batch, 2, channels, height * width)
            x_rows = x.reshape(batch, 2, channels, height * width)
            grad_rows = grad.reshape(batch, 1, channels, height * width)
            w_rows = weights.view(batch, 2, channels, 1)
            pixel_dim = 3
        if torch.compiler.is_compiling():
            # Inductor cannot lower out= into these views (it picks its own strides for
            # the buffer); functional ops, which it fuses and plans memory for itself.
            grad_weights = (x_rows * grad_rows).sum(dim=pixel_dim).view(batch, 2 * channels)
            rows.copy_(grad_rows * w_rows)
            return buffer, grad_weights
        # d(out)/d(w_r) = sum over pixels of grad * x_r.
        torch.mul(x_rows, grad_rows, out=rows)
        grad_weights = rows.sum(dim=pixel_dim).view(batch, 2 * channels)
        # d(out)/d(x_r) = grad * w_r, written over the product (no longer needed).
        torch.mul(grad_rows, w_rows, out=rows)
        return buffer, grad_weights


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW-contiguous, as 1x1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def weighted_sum(x: torch.Tensor, weights: torch.Tensor, radix: int) -> torch.Tensor:
    """Sum of the radix splits of ``x`` weighted per channel, layout-preserving.

    Equals MMPose's ``torch.sum(weights.view(B, R, C, 1, 1) * splits, dim=1)``
    (same products, same additions). On ``channels_last`` input MMPose's
    five-dimensional product and reduction leave the format (the result is
    NCHW-contiguous, and the next conv converts it back); here the splits are
    viewed as ``(B, H, W, R, C)`` in the NHWC memory, the reduction runs over
    ``R`` there, and the result is ``channels_last`` again.

    Args:
        x: Split-conv output ``(B, R*C, H, W)``, radix-major ``(r, g, c)``.
        weights: Per-split weights ``(B, R*C)``, radix-major.
        radix: ``R``.

    Returns:
        ``(B, C, H, W)`` in the memory format of ``x``.
    """
    batch, _, height, width = x.shape
    channels = x.size(1) // radix
    if radix == 1:
        return x * weights.view(batch, channels, 1, 1)
    if is_channels_last(x):
        splits = x.permute(0, 2, 3, 1).view(batch, height, width, radix, channels)  # (B, H, W, R, C)
        out = (splits * weights.view(batch, 1, 1, radix, channels)).sum(dim=3)  # (B, H, W, C)
        return out.permute(0, 3, 1, 2)  # (B, C, H, W), channels_last memory
    splits = x.reshape(batch, radix, channels, height, width)  # (B, R, C, H, W), a view if contiguous
    return (splits * weights.view(batch, radix, channels, 1, 1)).sum(dim=1)  # (B, C, H, W)
