"""The host-free core: the plain model, its fast paths beside it, the arch table.

Nothing here imports MMPose or a registry. :class:`ResNeSt` is the plain
model (MMPose's arithmetic op for op); :class:`FastResNeSt` subclasses it
with the CPU fast paths (:mod:`.fast_resnest`), and
:func:`fuse_for_cpu_inference` is the explicit fused-inference transform
(:mod:`.fused_resnest`). The hosts (:mod:`resnest_plugin.hosts`) register
subclasses of :class:`FastResNeSt` with the installed MMPose generation.
"""
from .. import require_torch

require_torch()  # one line naming torch and the floor, not a bare "No module named 'torch'"

from .arch import ARCH_SETTINGS, ResNeStArch
from .bottleneck import ResNeStBottleneck
from .fast_resnest import FastResNeSt, FastSplitAttentionConv2d
from .fused_resnest import FusedResNeSt, fuse_for_cpu_inference
from .resnest import ResNeSt
from .split_attention import RadixSoftmax, SplitAttentionConv2d

__all__ = [
    "ARCH_SETTINGS", "FastResNeSt", "FastSplitAttentionConv2d", "FusedResNeSt", "RadixSoftmax", "ResNeSt",
    "ResNeStArch", "ResNeStBottleneck", "SplitAttentionConv2d", "fuse_for_cpu_inference",
]
