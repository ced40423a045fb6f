"""Conv and norm layers from config dicts, with a named error for an unknown norm type.

With mmcv installed (both MMPose generations), the layers come from mmcv's
``build_conv_layer`` / ``build_norm_layer``, so every norm registered there
(BN, SyncBN, GN, a user's own) works and the child names (``bn1``, ``gn1``)
are MMPose's. Without mmcv (a bare PyTorch machine, e.g. the GPU device
check in ``benchmarks/device_check.py``), a torch-only equivalent builds the
common types with the same names, arguments and ``requires_grad`` handling.

Either way a bad ``norm_cfg`` raises :class:`ValueError` naming the type and
the accepted ones. mmcv's own messages do not: mmcv 1.x says ``Unrecognized
norm type XN``, and mmcv 2.x (through mmengine's registry) ``Cannot find None
in registry under scope name mmpose``.

:class:`NamedChildCaller` is how the modules apply those type-named norms in
a forward that TorchScript compiles as it is.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["NamedChildCaller", "build_conv_layer", "build_norm_layer", "known_norm_types"]

# Torch-only builders: mmcv's type names and name abbreviations
# (mmcv/cnn/bricks/norm.py: infer_abbr gives "bn" for BN/SyncBN, "gn", "in", "ln").
_PLAIN_NORMS: Dict[str, Tuple[str, Callable[..., nn.Module]]] = {
    "BN": ("bn", nn.BatchNorm2d),
    "BN2d": ("bn", nn.BatchNorm2d),
    "SyncBN": ("bn", nn.SyncBatchNorm),
    "GN": ("gn", lambda channels, **kw: nn.GroupNorm(num_channels=channels, **kw)),
    "IN": ("in", nn.InstanceNorm2d),
    "IN2d": ("in", nn.InstanceNorm2d),
    "LN": ("ln", nn.LayerNorm),
}
_PLAIN_CONVS = (None, "Conv", "Conv2d")

try:  # mmcv is the hosts' builder; the core only needs it when it is there.
    from mmcv.cnn import build_conv_layer as _mmcv_conv_layer
    from mmcv.cnn import build_norm_layer as _mmcv_norm_layer
except ImportError:  # pragma: no cover - exercised on machines without mmcv
    _mmcv_conv_layer = _mmcv_norm_layer = None


def known_norm_types() -> Tuple[str, ...]:
    """The norm types ``norm_cfg`` may name here, sorted.

    Returns:
        mmcv 1.x's ``NORM_LAYERS`` names, the norm layers of mmcv 2.x's
        (mmengine) ``MODELS`` registry among mmcv's standard ones, or the
        torch-only builders' types without mmcv.
    """
    if _mmcv_norm_layer is None:
        return tuple(sorted(_PLAIN_NORMS))
    try:  # mmcv 1.x: a registry of norms only.
        from mmcv.cnn import NORM_LAYERS
        return tuple(sorted(NORM_LAYERS.module_dict))
    except ImportError:  # mmcv 2.x: norms share mmengine's MODELS registry with every model.
        from mmengine.registry import MODELS
        standard = ("BN", "BN1d", "BN2d", "BN3d", "SyncBN", "GN", "LN", "IN", "IN1d", "IN2d", "IN3d")
        return tuple(sorted(name for name in standard if MODELS.get(name) is not None))


def _unknown_norm(layer_type: Any) -> ValueError:
    return ValueError(f"norm_cfg type {layer_type!r} is not a registered norm layer: expected one of "
                      f"{list(known_norm_types())}")


def build_norm_layer(norm_cfg: dict, num_features: int, postfix: Any = "") -> Tuple[str, nn.Module]:
    """Build a norm layer and its child name (``bn1``, ``gn0`` ...), as mmcv does.

    Args:
        norm_cfg: ``dict(type=..., requires_grad=..., **layer kwargs)``.
        num_features: Channels normalised.
        postfix: Appended to the name's abbreviation.

    Returns:
        ``(name, layer)``.

    Raises:
        ValueError: ``norm_cfg`` is not a dict with a registered ``type``; the
            message names the type and the accepted ones.
    """
    if not isinstance(norm_cfg, dict) or "type" not in norm_cfg:
        raise ValueError(f"norm_cfg={norm_cfg!r}: expected a dict with a 'type' key, e.g. "
                         "dict(type='BN', requires_grad=True)")
    layer_type = norm_cfg["type"]
    if layer_type == "GN" and "num_groups" not in norm_cfg:  # mmcv: a bare AssertionError
        raise ValueError(f"norm_cfg={norm_cfg!r}: GroupNorm needs num_groups, e.g. "
                         "dict(type='GN', num_groups=32, requires_grad=True)")
    if _mmcv_norm_layer is not None:
        try:
            return _mmcv_norm_layer(norm_cfg, num_features, postfix=postfix)
        except KeyError as error:  # mmcv's own message does not name the choices (module docstring)
            if layer_type in known_norm_types():
                raise
            raise _unknown_norm(layer_type) from error
    if layer_type not in _PLAIN_NORMS:
        raise _unknown_norm(layer_type)
    kwargs = {key: value for key, value in norm_cfg.items() if key not in ("type", "requires_grad")}
    abbreviation, factory = _PLAIN_NORMS[layer_type]
    layer = factory(num_features, **kwargs)
    for parameter in layer.parameters():
        parameter.requires_grad = norm_cfg.get("requires_grad", True)
    return f"{abbreviation}{postfix}", layer


def build_conv_layer(conv_cfg: Optional[dict], *args: Any, **kwargs: Any) -> nn.Module:
    """Build a conv layer from ``conv_cfg`` (``None`` means ``nn.Conv2d``), as mmcv does.

    Args:
        conv_cfg: ``None`` or ``dict(type=...)``.
        *args: ``nn.Conv2d`` positional arguments.
        **kwargs: ``nn.Conv2d`` keyword arguments.

    Returns:
        The conv layer.

    Raises:
        ValueError: Without mmcv, a ``conv_cfg`` type other than Conv/Conv2d.
    """
    if _mmcv_conv_layer is not None:
        return _mmcv_conv_layer(conv_cfg, *args, **kwargs)
    layer_type = None if conv_cfg is None else conv_cfg.get("type")
    if layer_type not in _PLAIN_CONVS:
        raise ValueError(f"conv_cfg type {layer_type!r} needs mmcv's conv registry (mmcv is not "
                         "installed): expected None, 'Conv' or 'Conv2d'")
    extra = {} if conv_cfg is None else {k: v for k, v in conv_cfg.items() if k != "type"}
    return nn.Conv2d(*args, **kwargs, **extra)


class NamedChildCaller(nn.Module):
    """Base for modules whose norm layers have mmcv's type-dependent names.

    mmcv's ``build_norm_layer`` names a norm by its type (``bn1`` for BN,
    ``gn1`` for GN, ...). ``getattr(self, self.norm1_name)`` would reach it,
    but TorchScript accepts ``getattr`` only with a literal name; the forward
    passes call :meth:`call_child` instead, which eager code, TorchScript,
    tracing and dynamo all take as it is.
    """

    def call_child(self, x: torch.Tensor, wanted: str) -> torch.Tensor:
        """Apply the child module named ``wanted`` to ``x``.

        A loop over the (few) children with a string comparison each; in
        TorchScript and under dynamo it is unrolled at compile time.

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
