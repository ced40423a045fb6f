"""ResNeSt backbone: bottleneck and backbone (the host-free core; arch table in :mod:`.arch`).

Provenance:
    Paper: Zhang et al., "ResNeSt: Split-Attention Networks", arXiv 2004.08955
    (ResNet-D stem and downsampling, arXiv 1812.01187; stride on the 3x3
    conv done by a 3x3 average pool after the split conv, "avd").
    Module layout, parameter names and initialisation follow MMPose 0.x's
    ``ResNeSt`` (``ResNetV1d`` + split-attention ``Bottleneck``) so that its
    state dicts, including the released COCO checkpoints, load strictly.
    Per-depth stem widths follow the official release / timm / mmcls.
    Written anew for this plugin: no subclass of MMPose's ResNet.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .arch import ARCH_SETTINGS, ResNeStArch
from .fused_inference import conv_bn, is_foldable_norm, is_plain_conv, use_fused_inference
from .initialisers import constant_init, kaiming_init
# mmcv's layer builders where mmcv is installed (MMPose's norm names, its
# conv_cfg / norm_cfg), a torch-only equivalent otherwise (.layers).
from .layers import build_conv_layer, build_norm_layer
from .split_attention import NamedChildCaller, SplitAttentionConv2d, is_channels_last
from .weights import load_pretrained

__all__ = ["ARCH_SETTINGS", "ResNeStArch", "ResNeStBottleneck", "ResNeSt"]


class ResNeStBottleneck(NamedChildCaller):
    """ResNeSt bottleneck: 1x1 conv, split-attention 3x3 conv, 1x1 conv.

    Args:
        in_channels: Input channels of the block.
        out_channels: Output channels (``expansion`` x the bottleneck width).
        stride: Stride of the block (on the 3x3 path, "pytorch" style).
        dilation: Dilation of the 3x3 conv.
        downsample: Projection of the identity branch, if shapes change.
        groups: Cardinality of the split conv.
        width_per_group: Width per cardinal group when ``groups > 1``;
            ``2s2x40d`` means radix 2, groups 2, width_per_group 40.
        base_channels: Bottleneck width of the first stage (64).
        radix: Splits per cardinal group.
        reduction_factor: Squeeze ratio of the split attention.
        avg_down_stride: Stride with a 3x3 average pool after the split conv
            instead of a strided split conv.
        expansion: Ratio of ``out_channels`` to the bottleneck width.
        with_cp: Recompute the block in backward to save memory.
        conv_cfg: mmcv config of the convs.
        norm_cfg: mmcv config of the norm layers.
    """

    # getattr with a computed name: TorchScript would reject these (see NamedChildCaller).
    __jit_unused_properties__ = ["norm1", "norm3"]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        width_per_group: int = 4,
        base_channels: int = 64,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        expansion: int = 4,
        with_cp: bool = False,
        conv_cfg: Optional[dict] = None,
        norm_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        if out_channels % expansion:
            raise ValueError(f"out_channels={out_channels} is not a multiple of expansion={expansion}")
        mid_channels = out_channels // expansion
        if groups != 1:
            # ResNeXt-style width: groups x width_per_group, scaled per stage
            # (the rule of MMPose / mmcls; official: int(planes * d / 64) * groups).
            if mid_channels % base_channels:
                raise ValueError(
                    f"bottleneck width {mid_channels} is not a multiple of base_channels={base_channels}")
            mid_channels = groups * width_per_group * mid_channels // base_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        self.stride = stride
        self.with_cp = with_cp
        self.avg_down_stride = avg_down_stride and stride > 1

        self.conv1 = build_conv_layer(conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = SplitAttentionConv2d(
            mid_channels, mid_channels, kernel_size=3,
            stride=1 if self.avg_down_stride else stride,
            padding=dilation, dilation=dilation, groups=groups, radix=radix,
            reduction_factor=reduction_factor, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if self.avg_down_stride:
            # "avd" (arXiv 2004.08955 Sec. 4): the 3x3 conv keeps stride 1
            # and this pool downsamples, which preserves spatial information.
            self.avd_layer = nn.AvgPool2d(3, stride, padding=1)
        self.conv3 = build_conv_layer(conv_cfg, mid_channels, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def norm1(self) -> nn.Module:
        """Norm layer after ``conv1``."""
        return getattr(self, self.norm1_name)

    @property
    def norm3(self) -> nn.Module:
        """Norm layer after ``conv3`` (zero-initialised by default)."""
        return getattr(self, self.norm3_name)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if torch.jit.is_scripting():
            out = self.call_child(out, self.norm1_name)
        else:
            out = self.norm1(out)
        out = self.conv2(self.relu(out))
        if hasattr(self, "avd_layer"):  # static in TorchScript: the layer exists iff avg_down_stride
            out = self.avd_layer(out)
        out = self.conv3(out)
        if torch.jit.is_scripting():
            out = self.call_child(out, self.norm3_name)
        else:
            out = self.norm3(out)
        identity = x if self.downsample is None else self.downsample(x)
        # In place, as MMPose: the norm's backward does not need its output.
        return out.add_(identity)

    @torch.jit.unused
    def fusable(self) -> bool:
        """Whether :meth:`fused_forward` can stand in for ``forward`` (in eval)."""
        return (is_plain_conv(self.conv1) and is_plain_conv(self.conv3) and is_foldable_norm(self.norm1)
                and is_foldable_norm(self.norm3) and type(self.relu) is nn.ReLU and self.conv2.fusable()
                and _fusable_downsample(self.downsample))

    @torch.jit.unused
    def fused_forward(self, x: torch.Tensor, input_reusable: bool = False) -> torch.Tensor:
        """``forward`` for eval-mode CPU inference without autograd: each conv
        with its folded norm, ReLU and (last conv) residual add as one oneDNN
        op (:mod:`.fused_inference`).

        Args:
            x: Block input.
            input_reusable: The caller will not use ``x`` again, so the
                output may be written into it (blocks without downsample).
        """
        out = conv_bn(x, self.conv1, self.norm1, relu=True)
        out = self.conv2.fused_forward(out)
        if self.avg_down_stride:
            out = self.avd_layer(out)
        identity = x
        if self.downsample is not None:
            *pools, conv, norm = list(self.downsample)
            for pool in pools:
                identity = pool(identity)
            identity = conv_bn(identity, conv, norm)
        reuse = self.downsample is not None or input_reusable
        return conv_bn(out, self.conv3, self.norm3, relu=True, residual=identity, into_residual=reuse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: Input of shape ``(B, in_channels, H, W)``.

        Returns:
            Output of shape ``(B, out_channels, H / stride, W / stride)``.
        """
        if torch.jit.is_scripting():
            out = self._residual(x)  # scripted models are for inference: no checkpointing
        elif self.with_cp and x.requires_grad:
            # use_reentrant=False: the non-deprecated mode, also correct when
            # only parameters (not the input) require gradients.
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)


def _fusable_downsample(downsample: Optional[nn.Module]) -> bool:
    if downsample is None:
        return True
    layers = list(downsample)
    return (isinstance(downsample, nn.Sequential) and is_plain_conv(layers[-2])
            and is_foldable_norm(layers[-1]) and all(isinstance(m, nn.AvgPool2d) for m in layers[:-2]))


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


def _make_downsample(
    in_channels: int,
    out_channels: int,
    stride: int,
    conv_cfg: Optional[dict],
    norm_cfg: dict,
) -> nn.Sequential:
    """ResNet-D projection shortcut: avg-pool then stride-1 1x1 conv + norm.

    The pool is only present when ``stride != 1``, which shifts the conv's
    index from 0 to 1 (MMPose's key layout: ``downsample.{0,1}`` in stage 1,
    ``downsample.{1,2}`` after).
    """
    layers = []
    if stride != 1:
        # arXiv 1812.01187 (ResNet-D): pooling before the 1x1 conv keeps the
        # 3/4 of activations a stride-2 1x1 conv would skip.
        layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
    layers.append(build_conv_layer(conv_cfg, in_channels, out_channels, 1, bias=False))
    layers.append(build_norm_layer(norm_cfg, out_channels)[1])
    return nn.Sequential(*layers)


class ResNeSt(nn.Module):
    """ResNeSt backbone (Split-Attention Networks, arXiv 2004.08955).

    A ResNet-D (deep 3x3 stem, avg-pool shortcut) whose bottleneck 3x3 conv
    is a split-attention conv. Notation ``2s1x64d``: radix 2, 1 cardinal
    group, 64 channels of bottleneck width in the first stage.

    Registered in MMPose's model registry as ``resnest_plugin.ResNeSt``
    (MMPose's own ``ResNeSt`` is left untouched).

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
        out_indices: Stages whose outputs are returned; one index gives a
            tensor, several a tuple (MMPose 0.x convention).
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

    #: Eval-mode float32 CPU inference without autograd (``torch.no_grad``, as
    #: in MMPose's test loop) runs a fused fast path (:meth:`_fast_forward`):
    #: channels_last inside, each norm folded into its conv from the current
    #: statistics, ReLU and residual add fused into the oneDNN convs; ~1.4x
    #: the plain path on CPU (benchmarks/). Same function; float32 rounding
    #: differs (reassociated sums, ~1e-6 of the feature scale, as MMPose's own
    #: model shows between NCHW and channels_last). Set to ``False`` (on the
    #: instance or the class) for MMPose's arithmetic op for op, bit-identical
    #: outputs. Training, autograd, other devices and dtypes, norms that cannot
    #: be folded (GN...) always take the plain path; a model whose norms were
    #: folded by ``mmcv.cnn.fuse_conv_bn`` takes the fast one regardless.
    fast_inference: bool = True

    #: On CPU, run the plain path (training, autograd) in channels_last
    #: internally: oneDNN's convolutions and their gradients are faster there
    #: (~1.1x a training step) and the split attention keeps the format.
    #: Outputs are returned NCHW. ``False`` (with ``fast_inference = False``)
    #: gives MMPose's arithmetic op for op, bit-identical to its built-in.
    cpu_channels_last: bool = True

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
            expansion=expansion, with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.res_layers = []
        stage_in, stage_out = stem_channels, base_channels * expansion
        for index, num_blocks in enumerate(self.stage_blocks):
            stride, dilation = strides[index], dilations[index]
            downsample = None
            if stride != 1 or stage_in != stage_out:
                downsample = _make_downsample(stage_in, stage_out, stride, conv_cfg, norm_cfg)
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
                :mod:`resnest_plugin.models.weights`).

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
            load_pretrained(self, pretrained)
        else:
            raise TypeError(f"pretrained must be a str or None, got {type(pretrained).__name__}")

    @torch.jit.unused
    def _takes_fast_path(self, x: torch.Tensor) -> bool:
        """Whether this call runs :meth:`_fast_forward` (see :attr:`fast_inference`)."""
        if not use_fused_inference(x, self):
            return False
        norms_folded = not any(isinstance(m, _BatchNorm) for m in self.modules())
        if not (self.fast_inference or norms_folded):
            return False
        stem_ok = all(len(unit) == 3 and is_plain_conv(unit[0]) and is_foldable_norm(unit[1])
                      and type(unit[2]) is nn.ReLU for unit in self.stem)
        return stem_ok and all(block.fusable() for block in self._blocks())

    @torch.jit.unused
    def _blocks(self) -> List[ResNeStBottleneck]:
        return [block for name in self.res_layers for block in getattr(self, name)]

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> Any:
        """``forward`` for eval-mode CPU inference without autograd.

        channels_last from the input on (oneDNN's convolutions and the split
        attention's reductions are fastest there, and no layer leaves it), and
        every conv + norm (+ ReLU, + residual add) as one oneDNN op, with the
        norm folded from its current statistics (:mod:`.fused_inference`).
        """
        x = x.contiguous(memory_format=torch.channels_last)
        for unit in self.stem:
            x = conv_bn(x, unit[0], unit[1], relu=True)
        x = self.maxpool(x)
        outs = []
        for index, name in enumerate(self.res_layers):
            for position, block in enumerate(getattr(self, name)):
                # Inside a stage a block's input is the previous block's output,
                # used by nobody else: the block may write its output into it.
                x = block.fused_forward(x, input_reusable=position > 0)
            if index in self.out_indices:
                # Back to NCHW: the caller gets what the plain path returns. MMPose's
                # heatmap head would run ~15% faster on channels_last, but some heads
                # .view() their features (e.g. cid_head, mtut_head), which fails on it.
                outs.append(x.contiguous())
        return outs[0] if len(outs) == 1 else tuple(outs)

    @torch.jit.unused
    def _check_batch(self, x: torch.Tensor) -> None:
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
        """Compute the features of the stages named by ``out_indices``.

        Eval-mode float32 CPU inference without autograd takes a fused fast
        path (:meth:`_fast_forward`) when :attr:`fast_inference` is set (the
        default) or the norms were folded into the convs
        (``mmcv.cnn.fuse_conv_bn``, as ``tools/test.py --fuse-conv-bn`` does).
        Everything else runs the plain path: MMPose's operations, in
        channels_last on CPU when :attr:`cpu_channels_last` is set (the
        default), outputs returned in the input's memory format.

        Args:
            x: Images of shape ``(B, in_channels, H, W)``.

        Returns:
            One tensor if a single stage is requested, else a tuple of
            tensors (a list in TorchScript, which has no variable-length
            tuples).
        """
        to_nchw = False
        if not torch.jit.is_scripting():
            self._check_batch(x)
            if self._takes_fast_path(x):
                return self._fast_forward(x)
            if self.cpu_channels_last and x.device.type == "cpu" and not is_channels_last(x):
                x = x.contiguous(memory_format=torch.channels_last)
                to_nchw = True
        x = self.maxpool(self.stem(x))
        outs: List[torch.Tensor] = []
        stage = 0
        # The stages are the children layer1, layer2, ... in registration order;
        # iterating the children (not getattr with a computed name) scripts.
        for name, layer in self.named_children():
            if name.startswith("layer"):
                x = layer(x)
                if stage in self.out_indices:
                    outs.append(x.contiguous() if to_nchw else x)
                stage += 1
        if len(outs) == 1:
            return outs[0]
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
