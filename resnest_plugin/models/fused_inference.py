"""CPU inference fast path: eval BatchNorm folded into the conv, ReLU and residual add fused.

In eval mode a BatchNorm is an affine map per channel, so ``BN(conv(x))``
equals a conv with scaled weights and a bias (the fold ``tools/test.py
--fuse-conv-bn`` applies once, with ``mmcv.cnn.fuse_conv_bn``). Done here on
the fly, from the current parameters at every call, so the model stays as it
is (same modules, same state dict, training unaffected). The ReLU after a
conv, and the residual add + ReLU after a block's last conv, run inside the
oneDNN convolution as post-ops (``torch.ops.mkldnn._convolution_pointwise``,
the kernels ``torch.compile``'s CPU backend uses): each activation map is
written once instead of three or four times.

Numerics: ReLU and the add as post-ops give bit-identical results; the fold
changes rounding (weights scaled before the dot product instead of the
output after), differences of a few float32 ulps relative to the values.

Provenance: folding as in ``mmcv.cnn.fuse_conv_bn`` / ``torch.fx``'s
``fuse_conv_bn_eval``; post-op fusion as torch inductor's ``mkldnn_fusion``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv_bn", "is_foldable_norm", "is_plain_conv", "reference_conv_bn", "use_fused_inference"]

_HAS_MKLDNN_OPS = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def use_fused_inference(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether the fast path applies to a call of ``module`` on ``x``.

    Only for eval-mode inference without autograd (the fused oneDNN ops
    have no backward) on CPU, and never while torch.compile, TorchScript or
    the ONNX exporter trace the model (they see the plain graph and fuse it
    themselves).

    Args:
        x: The input.
        module: The module about to run.

    Returns:
        ``True`` to take the fast path.
    """
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return (_HAS_MKLDNN_OPS and not module.training and not torch.is_grad_enabled()
            and x.device.type == "cpu" and x.dtype == torch.float32)


def is_plain_conv(module: nn.Module) -> bool:
    """A ``nn.Conv2d`` itself (not a subclass with its own forward), zero padding."""
    return type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def is_foldable_norm(module: nn.Module) -> bool:
    """Eval-mode BatchNorm with running statistics, or the Identity left by a fold."""
    if isinstance(module, nn.Identity):
        return True
    return (isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) and not module.training
            and module.track_running_stats and module.running_mean is not None)


def _folded(conv: nn.Conv2d, norm: nn.Module) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Weight and bias of the conv with the norm folded in."""
    if isinstance(norm, nn.Identity):
        return conv.weight, conv.bias
    # y = (conv(x) + b - mean) * g / sqrt(var + eps) + beta
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps) if norm.affine else \
        torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale if norm.affine else -norm.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv.weight * scale.view(-1, 1, 1, 1), bias


def conv_bn(
    x: torch.Tensor,
    conv: nn.Conv2d,
    norm: nn.Module,
    relu: bool = False,
    residual: Optional[torch.Tensor] = None,
    into_residual: bool = False,
) -> torch.Tensor:
    """``act(norm(conv(x)) [+ residual])`` as one oneDNN convolution.

    Args:
        x: Input (any memory format; ``channels_last`` is fastest).
        conv: A plain conv (:func:`is_plain_conv`).
        norm: A foldable norm (:func:`is_foldable_norm`).
        relu: Apply ReLU at the end.
        residual: Tensor added before the ReLU (same shape and memory
            format as the output).
        into_residual: Write the result into ``residual`` (the caller no
            longer needs it): one output buffer less to allocate and fill,
            ~10% faster for the wide 1x1 convs of the first stage.

    Returns:
        The output, in the memory format oneDNN picks for ``x``'s format
        (``residual`` itself with ``into_residual``).
    """
    weight, bias = _folded(conv, norm)
    padding: List[int] = list(conv.padding)
    stride: List[int] = list(conv.stride)
    dilation: List[int] = list(conv.dilation)
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, padding, stride, dilation, conv.groups, "relu" if relu else "none", [], "")
    if into_residual:
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            residual, x, weight, bias, padding, stride, dilation, conv.groups, "add", None,
            "relu" if relu else None, [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, weight, bias, padding, stride, dilation, conv.groups, "add", None,
        "relu" if relu else None, [], "")


def reference_conv_bn(x: torch.Tensor, conv: nn.Conv2d, norm: nn.Module, relu: bool = False,
                      residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The unfused computation :func:`conv_bn` replaces (for tests)."""
    out = norm(F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    if residual is not None:
        out = out + residual
    return torch.relu(out) if relu else out
