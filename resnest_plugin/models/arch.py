"""The per-depth facts of ResNeSt: stage depths and stem widths.

Its own module so that the architecture (:mod:`.resnest`) and the weight
handling (:mod:`resnest_plugin.weights.layout`, which detects a checkpoint's
depth from its block counts) both read it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

__all__ = ["ARCH_SETTINGS", "ResNeStArch"]


@dataclass(frozen=True)
class ResNeStArch:
    """Per-depth facts of a ResNeSt.

    Attributes:
        stage_blocks: Number of bottlenecks in each of the four stages.
        stem_channels: Output width of the deep stem in the ImageNet models
            of the paper / official release / timm / mmcls.
    """

    stage_blocks: Tuple[int, int, int, int]
    stem_channels: int


# Stage depths: arXiv 2004.08955 Table 7 / official resnest.torch.
ARCH_SETTINGS = {
    50: ResNeStArch((3, 4, 6, 3), stem_channels=64),
    101: ResNeStArch((3, 4, 23, 3), stem_channels=128),
    200: ResNeStArch((3, 24, 36, 3), stem_channels=128),
    269: ResNeStArch((3, 30, 48, 8), stem_channels=128),
}
