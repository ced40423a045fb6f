"""CPU inference ops: eval BatchNorm folded into the conv (once), ReLU and residual add fused.

In eval mode a BatchNorm is an affine map per channel, so ``BN(conv(x))``
equals a conv with scaled weights and a bias (the fold ``tools/test.py
--fuse-conv-bn`` applies, with ``mmcv.cnn.fuse_conv_bn``). A
:class:`FoldedConvNorm` does it once and keeps the result; the model stays
as it is (same modules, same state dict, training unaffected). It folds
again when the conv's or the norm's tensors change: their ``_version``
counters, which every in-place write bumps (``load_state_dict``'s
``copy_``, optimizer steps, and BatchNorm's ``num_batches_tracked += 1`` in
each training forward; the running statistics themselves are updated by the
kernel without a bump), their storage (``.to()``, ``.double()``), and the
modules themselves (``fuse_conv_bn`` swaps the norm for an ``Identity``).
The ReLU after a conv, and the residual add + ReLU after a block's last
conv, run inside the oneDNN convolution as post-ops
(``torch.ops.mkldnn._convolution_pointwise``, the kernels ``torch.compile``'s
CPU backend uses): each activation map is written once instead of three or
four times.

Where torch lacks those ops (before 2.0) or a build lacks oneDNN,
:func:`~resnest_plugin.torch_compat.mkldnn_pointwise_ok` says so once in the
log: the fast model then takes the plain path
(:func:`use_fused_inference` is ``False``), and a :class:`FoldedConvNorm`
called anyway (an explicit :func:`~.fused_resnest.fuse_for_cpu_inference`)
runs ``F.conv2d`` with the folded weights, then the add and the ReLU.

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

from .. import torch_compat

__all__ = ["FoldedConvNorm", "is_foldable_norm", "is_plain_conv", "reference_conv_bn", "use_fused_inference"]


def use_fused_inference(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether the fused ops apply to a call of ``module`` on ``x``.

    Only for eval-mode inference without autograd (the fused oneDNN ops
    have no backward) on CPU in float32, where this torch has the ops
    (:func:`~resnest_plugin.torch_compat.mkldnn_pointwise_ok`, probed on the
    first such call), and never while torch.compile, TorchScript or the ONNX
    exporter trace the model (they see the plain graph and fuse it themselves).

    Args:
        x: The input.
        module: The module about to run.

    Returns:
        ``True`` where the fused ops may run.
    """
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch_compat.is_compiling():
        return False
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and torch_compat.mkldnn_pointwise_ok())


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
        return conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    # y = (conv(x) + b - mean) * g / sqrt(var + eps) + beta
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps) if norm.affine else \
        torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale if norm.affine else -norm.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv.weight * scale.view(-1, 1, 1, 1), bias


def _sources(conv: nn.Module, norm: nn.Module) -> List[torch.Tensor]:
    """Every tensor the fold reads (``num_batches_tracked``: the stamp of a training forward)."""
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    tensors = [conv.weight, conv.bias] + [getattr(norm, name, None) for name in names]
    return [t for t in tensors if t is not None]


class FoldedConvNorm:
    """A conv and the norm after it as one oneDNN convolution, folded once.

    The pair is looked up by name in its owner at each call, so a module
    swapped in later (``mmcv.cnn.fuse_conv_bn``) is seen; the folded weights
    are kept until a stamp of the inputs changes (module docstring).

    Args:
        owner: The module holding the conv and the norm as children.
        conv: Child name of the conv (a plain ``nn.Conv2d``, :func:`is_plain_conv`).
        norm: Child name of the norm (:func:`is_foldable_norm`).
    """

    def __init__(self, owner: nn.Module, conv: str, norm: str) -> None:
        self.owner = owner
        self.conv_name = conv
        self.norm_name = norm
        self._stamp: Tuple[object, ...] = ()
        self._pinned: Tuple[object, ...] = ()  # keeps ids and storages of the stamp unique
        self._weights: Tuple[torch.Tensor, Optional[torch.Tensor]] = (torch.empty(0), None)

    def weights(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The folded weight and bias, refolded if the conv or the norm changed.

        Returns:
            ``(weight, bias)`` of the conv with the norm folded in.
        """
        conv, norm = self.owner._modules[self.conv_name], self.owner._modules[self.norm_name]
        tensors = _sources(conv, norm)
        stamp = (id(conv), id(norm), getattr(norm, "eps", 0.0)) + tuple(
            (t.data_ptr(), t._version) for t in tensors)
        if stamp != self._stamp:
            with torch.no_grad():
                weight, bias = _folded(conv, norm)
                self._weights = (weight.contiguous(), bias)
            self._stamp = stamp
            self._pinned = (conv, norm, [t.detach() for t in tensors])
        return self._weights

    def __call__(self, x: torch.Tensor, relu: bool = False, residual: Optional[torch.Tensor] = None,
                 into_residual: bool = False) -> torch.Tensor:
        """``act(norm(conv(x)) [+ residual])`` as one oneDNN convolution.

        Args:
            x: Input (any memory format; ``channels_last`` is fastest).
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
        weight, bias = self.weights()
        conv = self.owner._modules[self.conv_name]
        padding: List[int] = list(conv.padding)
        stride: List[int] = list(conv.stride)
        dilation: List[int] = list(conv.dilation)
        if not torch_compat.mkldnn_pointwise_ok():
            return _unfused(F.conv2d(x, weight, bias, stride, padding, dilation, conv.groups), relu, residual,
                            into_residual)
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


def _unfused(out: torch.Tensor, relu: bool, residual: Optional[torch.Tensor], into_residual: bool) -> torch.Tensor:
    """The post-ops of :meth:`FoldedConvNorm.__call__` as separate ops, on the conv's output ``out``."""
    if residual is not None:
        out = residual.add_(out) if into_residual else out.add_(residual)
    return out.relu_() if relu else out


def reference_conv_bn(x: torch.Tensor, conv: nn.Conv2d, norm: nn.Module, relu: bool = False,
                      residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The unfused computation :class:`FoldedConvNorm` replaces (for tests).

    Args:
        x: Input.
        conv: The conv.
        norm: The norm after it.
        relu: Apply ReLU at the end.
        residual: Tensor added before the ReLU.

    Returns:
        ``act(norm(conv(x)) [+ residual])``.
    """
    out = norm(F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    if residual is not None:
        out = out + residual
    return torch.relu(out) if relu else out
