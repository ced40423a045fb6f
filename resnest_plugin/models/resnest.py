"""ResNeSt backbone (the plain, host-free model; bottleneck in :mod:`.bottleneck`, arch table in :mod:`.arch`).

Provenance:
    Paper: Zhang et al., "ResNeSt: Split-Attention Networks", arXiv 2004.08955
    (ResNet-D stem and downsampling, arXiv 1812.01187).
    Module layout, parameter names and initialisation follow MMPose 0.x's
    ``ResNeSt`` (``ResNetV1d`` + split-attention ``Bottleneck``) so that its
    state dicts, including the released COCO checkpoints, load strictly, and
    the forward is MMPose's arithmetic op for op. Per-depth stem widths
    follow the official release / timm / mmcls. Written anew for this
    plugin: no subclass of MMPose's ResNet. The CPU fast paths subclass this
    model in :mod:`.fast_resnest`; nothing here knows of them.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .arch import ARCH_SETTINGS, ResNeStArch
from .bottleneck import ResNeStBottleneck, make_downsample
from .initialisers import constant_init, kaiming_init
# mmcv's layer builders where mmcv is installed (MMPose's norm names, its
# conv_cfg / norm_cfg), a torch-only equivalent otherwise (.layers).
from .layers import build_conv_layer, build_norm_layer
from .split_attention import SplitAttentionConv2d
from ..weights import HOST_FREE_SOURCES, load_pretrained

__all__ = ["ARCH_SETTINGS", "ResNeStArch", "ResNeStBottleneck", "ResNeSt"]


def _conv_norm_relu(
    in_channels: int,
    out_channels: int,
    stride: int,
    conv_cfg: Optional[dict],
    norm_cfg: dict,
) -> nn.Sequential:
    """3x3 conv -> norm -> ReLU: one unit of the deep stem.

    The layers and child names (``conv``, ``bn``/``gn``/..., ``activate``)
    are those of mmcv's ``ConvModule`` as MMPose's ResNetV1d builds it, so
    the state-dict keys (``stem.0.conv.weight``, ``stem.0.bn.*``) are
    MMPose's. A plain ``nn.Sequential`` instead of a ``ConvModule`` because
    ConvModule's forward reaches its norm by ``getattr`` with a computed
    name, which ``torch.jit.script`` rejects.
    """
    conv = build_conv_layer(conv_cfg, in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    norm_name, norm = build_norm_layer(norm_cfg, out_channels)
    # ConvModule's own initialisation, in its order (same random draws).
    kaiming_init(conv, a=0, nonlinearity="relu")
    constant_init(norm, 1, bias=0)
    return nn.Sequential(OrderedDict([("conv", conv), (norm_name, norm), ("activate", nn.ReLU(inplace=True))]))


class ResNeSt(nn.Module):
    """ResNeSt backbone (Split-Attention Networks, arXiv 2004.08955).

    A ResNet-D (deep 3x3 stem, avg-pool shortcut) whose bottleneck 3x3 conv
    is a split-attention conv. Notation ``2s1x64d``: radix 2, 1 cardinal
    group, 64 channels of bottleneck width in the first stage.

    The plain model: one forward, MMPose's arithmetic op for op (bit-identical
    to MMPose's built-in ``ResNeSt`` on the same weights), with no execution
    strategy of its own; it scripts, traces and compiles as it is. The hosts
    register a subclass of the fast model (:class:`~.fast_resnest.FastResNeSt`)
    as ``resnest_plugin.ResNeSt``; MMPose's own ``ResNeSt`` is left untouched.

    Args:
        depth: One of 50, 101, 200, 269.
        in_channels: Channels of the input image.
        stem_channels: Width of the deep stem; ``None`` takes the depth's
            default from :data:`ARCH_SETTINGS` (64 for 50, 128 otherwise).
            MMPose's released COCO checkpoints use 64 for every depth.
        base_channels: Bottleneck width of the first stage.
        expansion: Ratio of block output to bottleneck width.
        num_stages: Number of stages, 1 to 4.
        strides: Stride of the first block of each stage.
        dilations: Dilation of each stage.
        out_indices: Stages whose outputs are returned, as a tuple (each
            host adapts it to its MMPose generation's convention).
        groups: Cardinality of the split conv.
        width_per_group: Width per cardinal group when ``groups > 1``.
        radix: Splits per cardinal group.
        reduction_factor: Squeeze ratio of the split attention.
        avg_down_stride: Downsample with a 3x3 avg pool after the split conv.
        frozen_stages: Stages to freeze (0 = stem only); -1 freezes nothing.
        conv_cfg: mmcv config of the convs.
        norm_cfg: mmcv config of the norm layers (BN, SyncBN, GN, ...).
        norm_eval: Keep BatchNorm layers in eval mode during training.
        with_cp: Gradient checkpointing of each bottleneck.
        zero_init_residual: Zero-init the last norm of each bottleneck.
        pretrained_strict: How ``init_weights(path)`` treats a checkpoint that
            does not fit: ``True`` = any missing/unexpected/mismatched key is
            an error; ``None`` (default) = only a different stem width or depth
            is an error, other mismatches warn; ``False`` = everything that
            does not fit is skipped with a warning (MMPose's behaviour, e.g.
            the 128-stem ``mmcls://resnest101`` into a 64-stem model).

    Example:
        >>> import torch
        >>> from resnest_plugin.models import ResNeSt
        >>> model = ResNeSt(depth=50, out_indices=(0, 1, 2, 3)).eval()
        >>> for feature in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(feature.shape))
        (1, 256, 16, 16)
        (1, 512, 8, 8)
        (1, 1024, 4, 4)
        (1, 2048, 2, 2)
    """

    # No class-level annotations on the models' attributes: under postponed
    # evaluation an annotation is a string, and torch.jit.script of torch <= 2.1
    # fails on it ('str' object has no attribute '__module__', in
    # torch/_jit_internal.py is_final). Their types are in the comments.

    #: The class of each bottleneck's 3x3 conv. The fast model
    #: (:class:`~.fast_resnest.FastResNeSt`) puts its subclass here, as
    #: torchvision's quantizable ResNet passes its own block class.
    split_attention_class = SplitAttentionConv2d  # a SplitAttentionConv2d class

    #: Where ``init_weights`` resolves ``mmcls://`` / ``open-mmlab://`` names and
    #: logs its load report. The core knows no host: local files and URLs load,
    #: reports go to the ``resnest_plugin`` logger, and a model-zoo name raises,
    #: naming it. Each host's registered subclass sets its own (its zoo tables
    #: and logger), so nothing depends on what was imported first.
    checkpoint_sources = HOST_FREE_SOURCES  # a weights.CheckpointSources

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: Optional[int] = None,
        base_channels: int = 64,
        expansion: int = 4,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (3,),
        groups: int = 1,
        width_per_group: int = 4,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        frozen_stages: int = -1,
        conv_cfg: Optional[dict] = None,
        norm_cfg: Optional[dict] = None,
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        pretrained_strict: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ValueError(f"invalid depth {depth!r} for ResNeSt; expected one of {sorted(ARCH_SETTINGS)}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be in 1..4, got {num_stages}")
        if len(strides) != num_stages or len(dilations) != num_stages:
            raise ValueError(
                f"strides {tuple(strides)} and dilations {tuple(dilations)} need one entry per stage "
                f"(num_stages={num_stages})")
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f"out_indices {tuple(out_indices)} must lie in 0..{num_stages - 1}")
        if radix < 1:
            raise ValueError(f"radix must be an integer >= 1, got {radix!r}")
        if reduction_factor < 1:
            raise ValueError(f"reduction_factor must be a positive integer, got {reduction_factor!r}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")
        arch = ARCH_SETTINGS[depth]
        stem_channels = arch.stem_channels if stem_channels is None else stem_channels
        if stem_channels < 2 or stem_channels % 2:
            raise ValueError(f"stem_channels must be an even number >= 2, got {stem_channels}")
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else dict(norm_cfg)

        self.depth = depth
        self.stem_channels = stem_channels
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.pretrained_strict = pretrained_strict
        self.stage_blocks = arch.stage_blocks[:num_stages]

        # ResNet-D deep stem (arXiv 1812.01187): three 3x3 convs replace the 7x7.
        half = stem_channels // 2
        self.stem = nn.Sequential(
            _conv_norm_relu(in_channels, half, 2, conv_cfg, norm_cfg),
            _conv_norm_relu(half, half, 1, conv_cfg, norm_cfg),
            _conv_norm_relu(half, stem_channels, 1, conv_cfg, norm_cfg),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        block_options = dict(
            groups=groups, width_per_group=width_per_group, base_channels=base_channels,
            radix=radix, reduction_factor=reduction_factor, avg_down_stride=avg_down_stride,
            expansion=expansion, with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            split_attention=self.split_attention_class)
        self.res_layers = []
        stage_in, stage_out = stem_channels, base_channels * expansion
        for index, num_blocks in enumerate(self.stage_blocks):
            stride, dilation = strides[index], dilations[index]
            downsample = None
            if stride != 1 or stage_in != stage_out:
                downsample = make_downsample(stage_in, stage_out, stride, conv_cfg, norm_cfg)
            blocks = [ResNeStBottleneck(stage_in, stage_out, stride=stride, dilation=dilation,
                                        downsample=downsample, **block_options)]
            blocks += [ResNeStBottleneck(stage_out, stage_out, dilation=dilation, **block_options)
                       for _ in range(1, num_blocks)]
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
            stage_in, stage_out = stage_out, stage_out * 2
        self.feat_dim = stage_in
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        """Put frozen stages in eval mode and stop their gradients."""
        if self.frozen_stages < 0:
            return
        frozen = [self.stem] + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self, pretrained: Optional[str] = None) -> None:
        """Initialise the weights, or load them from a checkpoint.

        Called by MMPose's ``TopDown.init_weights`` with the config's
        ``pretrained``.

        Args:
            pretrained: ``None`` for random init (Kaiming for convs, ones for
                norms, zeros for the last norm of each block when
                ``zero_init_residual``), or a checkpoint path / URL /
                ``mmcls://`` name in any supported format (see
                :mod:`resnest_plugin.weights`).

        Raises:
            TypeError: If ``pretrained`` is neither ``None`` nor a string.
        """
        if pretrained is None:
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    kaiming_init(module)
                elif isinstance(module, (_BatchNorm, nn.GroupNorm)):
                    constant_init(module, 1)
            if self.zero_init_residual:
                # Zero-init of the last BN makes each block start as identity:
                # +0.2-0.3% top-1 (Goyal et al., arXiv 1706.02677, Sec. 5.1).
                for module in self.modules():
                    if isinstance(module, ResNeStBottleneck):
                        constant_init(module.norm3, 0)
        elif isinstance(pretrained, str):
            load_pretrained(self, pretrained, sources=self.checkpoint_sources)
        else:
            raise TypeError(f"pretrained must be a str or None, got {type(pretrained).__name__}")

    @torch.jit.unused
    def _check_batch(self, x: torch.Tensor) -> None:
        """Explain the BatchNorm error a training batch of one sample would raise deep inside."""
        if self.training and x.shape[0] == 1 and any(
                isinstance(m, _BatchNorm) and m.training for m in self.modules()):
            raise ValueError(
                "ResNeSt got a training batch of 1 sample: its split attention applies BatchNorm "
                "after global pooling, where one sample gives one value per channel and BatchNorm "
                "cannot compute a variance (zhanghang1989/ResNeSt#35). Use batches of >= 2 samples "
                "and drop the last partial batch (MMPose 0.x: data=dict(train_dataloader=dict("
                "drop_last=True)); MMPose 1.x: train_dataloader=dict(drop_last=True)), or "
                "norm_eval=True, or norm_cfg=dict(type='GN', num_groups=...).")

    def forward(self, x: torch.Tensor) -> Any:
        """Compute the features of the stages named by ``out_indices``: MMPose's operations.

        Args:
            x: Images of shape ``(B, in_channels, H, W)``.

        Returns:
            A tuple with one tensor per entry of ``out_indices``, in stage
            order (a list in TorchScript, which has no variable-length
            tuples).
        """
        if not torch.jit.is_scripting():
            self._check_batch(x)
        x = self.maxpool(self.stem(x))
        outs: List[torch.Tensor] = []
        stage = 0
        # The stages are the children layer1, layer2, ... in registration order;
        # iterating the children (not getattr with a computed name) scripts.
        for name, layer in self.named_children():
            if name.startswith("layer"):
                x = layer(x)
                if stage in self.out_indices:
                    outs.append(x)
                stage += 1
        if torch.jit.is_scripting():
            return outs
        return tuple(outs)

    def train(self, mode: bool = True) -> "ResNeSt":
        """Set training mode, keeping frozen stages and (with ``norm_eval``) BN in eval.

        Args:
            mode: Training mode flag.

        Returns:
            ``self``, as :meth:`torch.nn.Module.train` promises.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
