"""The fused CPU inference model: an explicit transform of a plain ResNeSt, built once.

``fuse_for_cpu_inference(model)`` returns a :class:`FusedResNeSt` that runs
the same function for eval-mode float32 CPU inference: channels_last from
the input on (oneDNN's convolutions and the split attention's reductions are
fastest there, and no layer leaves it), every conv + norm (+ ReLU, + residual
add) as one oneDNN op with the norm folded once (:mod:`.fused_inference`;
refolded when weights or statistics change), the radix-2 weighted sum as
one multiply and one multiply-add (:mod:`.split_attention_kernels`). ~1.4x
the plain model on CPU (benchmarks/). The fast model
(:class:`~.fast_resnest.FastResNeSt`, what the hosts register) builds one
the first time it runs in eval mode without autograd.

Provenance: the transform-once design follows ``mmcv.cnn.fuse_conv_bn`` and
torchvision's ``models/quantization/resnet.py`` (``fuse_model()`` beside a
plain float model); the fused ops are this plugin's (:mod:`.fused_inference`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from .bottleneck import ResNeStBottleneck
from .fused_inference import FoldedConvNorm, is_foldable_norm, is_plain_conv
from .resnest import ResNeSt
from .split_attention_kernels import channels_last_weighted_sum, pool_then_sum, weighted_sum_radix2

__all__ = ["FusedResNeSt", "fuse_for_cpu_inference", "unfusable_part"]


def _unfusable_pair(owner: nn.Module, conv: str, norm: str, where: str) -> Optional[str]:
    conv_module, norm_module = owner._modules[conv], owner._modules[norm]
    if not is_plain_conv(conv_module):
        return f"{where}.{conv} is a {type(conv_module).__name__}, not a plain nn.Conv2d"
    if not is_foldable_norm(norm_module):
        return (f"{where}.{norm} is a {type(norm_module).__name__} (training={norm_module.training}), "
                "not an eval-mode BatchNorm with running statistics or an Identity")
    return None


def unfusable_part(model: ResNeSt) -> Optional[str]:
    """Why ``model`` cannot be fused, or ``None`` if it can.

    Args:
        model: A plain (or fast) ResNeSt.

    Returns:
        The first module that blocks the fusion, named, or ``None``.
    """
    reasons = [_unfusable_pair(unit, "conv", list(unit._modules)[1], f"stem.{index}")
               for index, unit in enumerate(model.stem)]
    reasons += [f"stem.{index} is not conv -> norm -> ReLU" for index, unit in enumerate(model.stem)
                if len(unit) != 3 or type(unit[2]) is not nn.ReLU]
    for name in model.res_layers:
        for position, block in enumerate(getattr(model, name)):
            where = f"{name}.{position}"
            reasons += [_unfusable_pair(block, "conv1", block.norm1_name, where),
                        _unfusable_pair(block.conv2, "conv", block.conv2.norm0_name, f"{where}.conv2"),
                        _unfusable_pair(block, "conv3", block.norm3_name, where)]
            if block.downsample is not None:
                layers = list(block.downsample)
                if not all(isinstance(m, nn.AvgPool2d) for m in layers[:-2]):
                    reasons.append(f"{where}.downsample is not [pool,] conv, norm")
                reasons.append(_unfusable_pair(block.downsample, str(len(layers) - 2), str(len(layers) - 1),
                                               f"{where}.downsample"))
    return next((reason for reason in reasons if reason is not None), None)


class _FusedBottleneck:
    """One bottleneck of the fused model (see the module docstring)."""

    def __init__(self, block: ResNeStBottleneck) -> None:
        self.conv1 = FoldedConvNorm(block, "conv1", block.norm1_name)
        self.split_conv = FoldedConvNorm(block.conv2, "conv", block.conv2.norm0_name)
        self.split_attention = block.conv2  # its attention MLP runs as it is (1x1 maps)
        self.avd = block.avd_layer if block.avg_down_stride else None
        self.conv3 = FoldedConvNorm(block, "conv3", block.norm3_name)
        self.pools: List[nn.Module] = []
        self.shortcut: Optional[FoldedConvNorm] = None
        if block.downsample is not None:
            count = len(block.downsample)
            self.pools = list(block.downsample)[:-2]
            self.shortcut = FoldedConvNorm(block.downsample, str(count - 2), str(count - 1))

    def __call__(self, x: torch.Tensor, input_reusable: bool) -> torch.Tensor:
        """Run the block; with ``input_reusable`` the output may be written into ``x``."""
        splits = self.split_conv(self.conv1(x, relu=True), relu=True)
        radix = self.split_attention.radix
        weights = self.split_attention.attention(pool_then_sum(splits, radix))
        out = weighted_sum_radix2(splits, weights) if radix == 2 else \
            channels_last_weighted_sum(splits, weights, radix)
        if self.avd is not None:
            out = self.avd(out)
        identity = x
        if self.shortcut is not None:
            for pool in self.pools:
                identity = pool(identity)
            identity = self.shortcut(identity)
        reuse = self.shortcut is not None or input_reusable
        return self.conv3(out, relu=True, residual=identity, into_residual=reuse)


class FusedResNeSt(nn.Module):
    """Eval-mode float32 CPU inference of a ResNeSt with its norms folded once.

    Holds the source model (``self.model``; same parameters, nothing
    copied) and computes its function with the fused ops. Outputs: a tuple
    of NCHW tensors, like the plain model's (some MMPose heads ``.view()``
    their features, which fails on channels_last).

    Args:
        model: The plain (or fast) ResNeSt, in eval mode.

    Raises:
        ValueError: If a part of ``model`` cannot be fused (a GroupNorm, a
            BatchNorm in training mode, a custom conv); the message names it.
    """

    def __init__(self, model: ResNeSt) -> None:
        super().__init__()
        reason = unfusable_part(model)
        if reason is not None:
            raise ValueError(f"cannot fuse this ResNeSt for CPU inference: {reason}")
        self.model = model
        self.training = model.training  # without train(): that would reach into the model
        self._stem = [FoldedConvNorm(unit, "conv", list(unit._modules)[1]) for unit in model.stem]
        self._stages = [[_FusedBottleneck(block) for block in getattr(model, name)] for name in model.res_layers]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Compute the features of the model's ``out_indices``.

        Args:
            x: float32 CPU images ``(B, in_channels, H, W)``.

        Returns:
            One NCHW tensor per entry of ``out_indices``, in stage order.

        Raises:
            ValueError: For a model in training mode, or an input that is not
                float32 on the CPU.
        """
        if self.model.training:
            raise ValueError("FusedResNeSt computes eval-mode inference: call .eval() on it first")
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"FusedResNeSt runs float32 on the CPU, got {x.dtype} on {x.device}")
        with torch.no_grad():
            x = x.contiguous(memory_format=torch.channels_last)
            for unit in self._stem:
                x = unit(x, relu=True)
            x = self.model.maxpool(x)
            outs = []
            for index, blocks in enumerate(self._stages):
                for position, block in enumerate(blocks):
                    # Inside a stage a block's input is the previous block's output,
                    # used by nobody else: the block may write its output into it.
                    x = block(x, input_reusable=position > 0)
                if index in self.model.out_indices:
                    # Back to NCHW: the caller gets what the plain model returns. MMPose's
                    # heatmap head would run ~15% faster on channels_last, but some heads
                    # .view() their features (e.g. cid_head, mtut_head), which fails on it.
                    outs.append(x.contiguous())
        return tuple(outs)


def fuse_for_cpu_inference(model: ResNeSt) -> FusedResNeSt:
    """The fused CPU inference model of ``model`` (module docstring).

    Args:
        model: A plain (or fast) ResNeSt in eval mode with BatchNorm (or
            norms already folded by ``mmcv.cnn.fuse_conv_bn``).

    Returns:
        The inference model, sharing ``model``'s parameters.

    Raises:
        ValueError: If a part of ``model`` cannot be fused; the message names it.
    """
    return FusedResNeSt(model)
