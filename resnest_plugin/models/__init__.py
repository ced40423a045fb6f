"""The host-free core: split attention, bottleneck, backbone, arch table, weight formats.

Nothing here imports MMPose or a registry; the hosts
(:mod:`resnest_plugin.hosts`) register :class:`ResNeSt` with the installed
MMPose generation.
"""
from .arch import ARCH_SETTINGS, ResNeStArch
from .resnest import ResNeSt, ResNeStBottleneck
from .split_attention import RadixSoftmax, SplitAttentionConv2d

__all__ = [
    "ARCH_SETTINGS", "RadixSoftmax", "ResNeSt", "ResNeStArch", "ResNeStBottleneck",
    "SplitAttentionConv2d",
]
