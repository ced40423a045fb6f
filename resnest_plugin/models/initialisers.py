"""The two weight initialisers MMPose's ResNet uses, without a host import.

MMPose 0.x takes ``kaiming_init`` / ``constant_init`` from ``mmcv.cnn``,
MMPose 1.x from ``mmengine.model`` (they moved with mmcv 2.0). Both are the
same few lines; written here so the architecture imports neither generation.
Same calls, same order, hence the same random draws as MMPose's built-in
``ResNeSt`` under one seed (``tests/test_resnest_host.py`` relies on it).
"""
from __future__ import annotations

from torch import nn

__all__ = ["constant_init", "kaiming_init"]


def kaiming_init(module: nn.Module, a: float = 0.0, mode: str = "fan_out",
                 nonlinearity: str = "relu", bias: float = 0.0) -> None:
    """Kaiming-normal weight, constant bias (mmcv's / mmengine's ``kaiming_init``).

    Args:
        module: A module with ``weight`` (and optionally ``bias``).
        a: Negative slope of the rectifier after this layer.
        mode: ``"fan_out"`` (mmcv's default) or ``"fan_in"``.
        nonlinearity: The non-linearity after this layer.
        bias: Value of the bias.
    """
    if getattr(module, "weight", None) is not None:
        nn.init.kaiming_normal_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def constant_init(module: nn.Module, val: float, bias: float = 0.0) -> None:
    """Constant weight and bias (mmcv's / mmengine's ``constant_init``).

    Args:
        module: A module with ``weight`` (and optionally ``bias``).
        val: Value of the weight.
        bias: Value of the bias.
    """
    if getattr(module, "weight", None) is not None:
        nn.init.constant_(module.weight, val)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)
