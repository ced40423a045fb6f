"""Faster kernels for two steps of the split attention: pooling and the weighted sum.

The plain :class:`~.split_attention.SplitAttentionConv2d` runs MMPose's
operations (sum the splits, pool, weighted product, reduce). These compute
the same values with other roundings, for the layout and mode where that
pays: channels_last (NHWC) activations on the training path of
:class:`~.fast_resnest.FastSplitAttentionConv2d`, and the radix-2 sum of the
fused inference model (:mod:`.fused_inference`).

Provenance: the reshape + reduction formulation instead of per-split
``torch.split`` loops follows timm's ``layers/split_attn.py``; the NHWC view
of the weighted sum, the pool-then-sum order and the hand-written radix-2
backward are this plugin's (ResNeSt-50 training step 1.12 -> 1.17x MMPose's
built-in, benchmarks/, interleaved A/B, 10 repetitions).
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .. import torch_compat

__all__ = ["Radix2WeightedSum", "channels_last_weighted_sum", "is_channels_last", "pool_then_sum",
           "recording_autograd", "weighted_sum_radix2"]


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW-contiguous, as 1x1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def recording_autograd(x: torch.Tensor) -> bool:
    """Whether eager autograd records ``x``'s uses (not TorchScript, not tracing: the
    tracer, e.g. ONNX export, gets the plain operations, not a Python autograd op)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    return torch.is_grad_enabled() and x.requires_grad


def pool_then_sum(splits: torch.Tensor, radix: int) -> torch.Tensor:
    """:func:`~.split_attention.pool_split_sum` in the other order: pool each split, then sum.

    Reads ``splits`` once, where MMPose's order (sum the splits, then pool)
    makes an extra pass over them. Same value up to float rounding.

    Args:
        splits: Activated split-conv output ``(B, R*C, H, W)``, radix-major.
        radix: ``R``.

    Returns:
        ``(B, C, 1, 1)``.
    """
    if recording_autograd(splits):
        # Sum, then divide the small (B, R*C) result: on CPU exactly what mean()
        # (and adaptive_avg_pool2d(x, 1)) computes -- ATen's mean_out is sum_out
        # followed by div_ -- but the backward of a sum is a stride-0 expand of
        # the gradient, where mean's backward divides the expanded gradient into
        # a full NCHW tensor that then meets the channels_last gradient of the
        # weighted sum in a slow mixed-layout add (profiled: ~3% of a step).
        pooled = splits.sum(dim=[2, 3], keepdim=True) / float(splits.size(2) * splits.size(3))
    else:
        pooled = F.adaptive_avg_pool2d(splits, 1)  # one GlobalAveragePool in ONNX
    if radix == 1:
        return pooled
    return pooled.view(splits.size(0), radix, -1, 1, 1).sum(dim=1)


def channels_last_weighted_sum(splits: torch.Tensor, weights: torch.Tensor, radix: int) -> torch.Tensor:
    """:func:`~.split_attention.weighted_split_sum` that keeps the NHWC layout.

    Same products, same additions as MMPose's. Its five-dimensional product
    and reduction leave the format (the result is NCHW-contiguous, and the
    next conv converts it back); here the splits are viewed as
    ``(B, H, W, R, C)`` in the NHWC memory, the reduction runs over ``R``
    there, and the result is channels_last again.

    Args:
        splits: channels_last split-conv output ``(B, R*C, H, W)``, radix-major.
        weights: Per-split weights ``(B, R*C)``, radix-major.
        radix: ``R``.

    Returns:
        ``(B, C, H, W)``, channels_last.
    """
    batch, _, height, width = splits.shape
    channels = splits.size(1) // radix
    if radix == 1:
        return splits * weights.view(batch, channels, 1, 1)
    # A view for NHWC memory (reshape: a copy only for other layouts, e.g. 1x1 maps).
    nhwc = splits.permute(0, 2, 3, 1).reshape(batch, height, width, radix, channels)
    out = (nhwc * weights.view(batch, 1, 1, radix, channels)).sum(dim=3)  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W), channels_last memory


def weighted_sum_radix2(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum for radix 2, without autograd: ``x0 * w0 + x1 * w1``.

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


class Radix2WeightedSum(torch.autograd.Function):
    """The radix-2 weighted sum under autograd, with a hand-written backward.

    Autograd's backward of ``(splits * weights).sum(radix)`` allocates two
    full-size tensors (the gradient of the splits, and the product reduced
    for the gradient of the weights); its forward allocates a third (the
    product before the reduction). Here the forward is
    :func:`weighted_sum_radix2` (half the memory traffic) and one buffer holds
    first the product for the weights' gradient, then the splits' gradient,
    all on contiguous memory.

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
        if torch_compat.is_compiling():
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
