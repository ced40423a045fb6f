"""Models of resnest_plugin, registered in MMPose's registry on import."""
from .registry import MODELS, SCOPE
from .resnest import ARCH_SETTINGS, ResNeSt, ResNeStBottleneck
from .split_attention import RadixSoftmax, SplitAttentionConv2d

if "ResNeSt" not in MODELS.module_dict:  # a reload must not register twice
    MODELS.register_module(name="ResNeSt", module=ResNeSt)

__all__ = [
    "ARCH_SETTINGS", "MODELS", "SCOPE", "RadixSoftmax", "ResNeSt", "ResNeStBottleneck",
    "SplitAttentionConv2d",
]
