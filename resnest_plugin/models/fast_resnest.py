"""The fast model: the plain ResNeSt with its CPU fast paths, each chosen in one place.

* **Fused inference** (:meth:`FastResNeSt.fused_inference_model`): in eval
  mode, float32 on the CPU, without autograd (``tools/test.py``), the
  forward runs the model's :class:`~.fused_resnest.FusedResNeSt`, built on
  the first such call and kept (norms folded once, refolded when weights or
  statistics change).
* **channels_last** (:meth:`FastResNeSt.runs_channels_last`): every other CPU
  forward (training, autograd) runs the plain layers in channels_last:
  oneDNN's convolutions and their gradients are faster there (~1.1x a
  training step). Outputs are returned NCHW.
* **Training kernels** (:meth:`FastSplitAttentionConv2d.forward`): on
  channels_last activations the split attention pools each split before
  summing and keeps the layout in its weighted sum; radix 2 under autograd
  uses the hand-written backward :class:`~.split_attention_kernels.Radix2WeightedSum`.
  On NCHW activations it runs the plain model's operations.

With ``fast_inference = False`` and ``cpu_channels_last = False`` (class or
instance attributes) nothing of this runs: MMPose's arithmetic op for op,
bit-identical to its built-in ``ResNeSt``. This module depends on the plain
model, never the reverse.

Provenance: the layout as torchvision's ``models/quantization/resnet.py``
(the variant subclasses the float model in its own file); the kernels and
the fused ops are this plugin's (:mod:`.split_attention_kernels`,
:mod:`.fused_inference`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from .. import torch_compat
from .fused_resnest import FusedResNeSt, unfusable_part
from .fused_inference import use_fused_inference
from .resnest import ResNeSt
from .split_attention import SplitAttentionConv2d, pool_split_sum, weighted_split_sum
from .split_attention_kernels import (Radix2WeightedSum, channels_last_weighted_sum, is_channels_last,
                                      pool_then_sum, recording_autograd)

__all__ = ["FastResNeSt", "FastSplitAttentionConv2d"]

# Where the fast model keeps its fused inference model: in __dict__, not as a
# submodule, so that it stays out of state_dict(), modules() and parameters().
_FUSED = "_fused_inference_cache"


class FastSplitAttentionConv2d(SplitAttentionConv2d):
    """Split attention with the channels_last training kernels (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the split conv and the split attention, with the kernels that suit the layout.

        Args:
            x: Input ``(B, in_channels, H, W)``, either memory format.

        Returns:
            ``(B, channels, H', W')``; channels_last in, channels_last out.
        """
        splits = self.split_conv(x)
        if not is_channels_last(splits):
            # NCHW: the plain model's operations (bit-identical to MMPose's).
            return weighted_split_sum(splits, self.attention(pool_split_sum(splits, self.radix)), self.radix)
        weights = self.attention(pool_then_sum(splits, self.radix))
        # TorchScript, which cannot call autograd Functions (nor torch_compat's
        # probes), skips the body of "if not torch.jit.is_scripting()" at compile
        # time. Under torch.compile the plain ops, which inductor fuses itself:
        # dynamo before torch 2.2 cannot trace a custom Function's backward
        # ("inline in skipfiles: Radix2WeightedSum.backward", a graph break that
        # fullgraph=True refuses).
        if not torch.jit.is_scripting():
            if (not torch_compat.is_compiling() and self.radix == 2
                    and (recording_autograd(splits) or recording_autograd(weights))):
                return Radix2WeightedSum.apply(splits, weights)
        return channels_last_weighted_sum(splits, weights, self.radix)


class FastResNeSt(ResNeSt):
    """The plain :class:`~.resnest.ResNeSt` with the CPU fast paths (module docstring).

    Same arguments, modules and state dict as the plain model. The hosts
    register subclasses of this class, not of the plain model: the class a
    config builds is what MMPose's stock ``tools/test.py`` and
    ``tools/train.py`` run, and they take no plugin flags, so this is where
    the fast paths are switched on by default. The plain
    :class:`~.resnest.ResNeSt` stays MMPose's arithmetic for everyone who
    builds it directly; ``fast_inference = False`` with ``cpu_channels_last =
    False`` gives that here too.
    """

    #: Eval-mode float32 CPU inference without autograd (``torch.no_grad``, as
    #: in MMPose's test loop) runs the fused inference model: ~1.4x the plain
    #: path on CPU (benchmarks/). Same function; float32 rounding differs
    #: (folded norms, reassociated sums: ~1e-6 of the feature scale, as
    #: MMPose's own model shows between NCHW and channels_last). Set to
    #: ``False`` (on the instance or the class) for the plain path. Models that
    #: cannot be fused (GN...) always take the plain path; one whose norms were
    #: folded by ``mmcv.cnn.fuse_conv_bn`` takes the fused one regardless.
    fast_inference = True  # bool

    #: On CPU, run the plain path (training, autograd) in channels_last inside.
    #: ``False`` (with ``fast_inference = False``) gives MMPose's arithmetic op
    #: for op, bit-identical to its built-in.
    cpu_channels_last = True  # bool

    split_attention_class = FastSplitAttentionConv2d  # a SplitAttentionConv2d class (see ResNeSt)

    def runs_channels_last(self, x: torch.Tensor) -> bool:
        """The channels_last choice: whether this (unfused) forward converts ``x`` to NHWC.

        Args:
            x: The input of the forward.

        Returns:
            ``True`` for NCHW CPU input while :attr:`cpu_channels_last` is set,
            on a torch built with oneDNN (:data:`~resnest_plugin.torch_compat.ONEDNN`,
            whose convolutions make NHWC pay; otherwise the plain path, logged once).
        """
        if not (self.cpu_channels_last and x.device.type == "cpu" and not is_channels_last(x)):
            return False
        if not torch_compat.ONEDNN:
            torch_compat.log_once("channels-last", "resnest_plugin: CPU forwards stay NCHW (the plain path): "
                                  "this torch was built without oneDNN (torch.backends.mkldnn.is_available() "
                                  "is False)")
            return False
        return True

    def fused_inference_model(self, x: torch.Tensor) -> Optional[FusedResNeSt]:
        """The fused-inference choice: the model that runs this call, or ``None`` for the plain path.

        Builds the :class:`~.fused_resnest.FusedResNeSt` on the first call
        that qualifies (:func:`~.fused_inference.use_fused_inference`) and
        keeps it until :meth:`train` is called (``.train()`` / ``.eval()``).

        Args:
            x: The input of the forward.

        Returns:
            The fused model, or ``None``.
        """
        if not use_fused_inference(x, self):
            return None
        if _FUSED not in self.__dict__:
            fusable = unfusable_part(self) is None
            self.__dict__[_FUSED] = (FusedResNeSt(self) if fusable else None,
                                     fusable and all(not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                                     for m in self.modules()))
        fused, folded_ahead = self.__dict__[_FUSED]
        return fused if fused is not None and (self.fast_inference or folded_ahead) else None

    def forward(self, x: torch.Tensor) -> Any:
        """The plain forward, on the fast path where one applies (module docstring).

        Args:
            x: Images ``(B, in_channels, H, W)``.

        Returns:
            A tuple with one tensor per entry of ``out_indices`` (NCHW for
            NCHW input), as the plain model returns.
        """
        fused = self.fused_inference_model(x)
        if fused is not None:
            return fused(x)
        if self.runs_channels_last(x):
            outs = super().forward(x.contiguous(memory_format=torch.channels_last))
            return tuple(out.contiguous() for out in outs)
        return super().forward(x)

    def train(self, mode: bool = True) -> "FastResNeSt":
        """Set training mode (see the plain model) and drop the fused model: it is built anew on use.

        Args:
            mode: Training mode flag.

        Returns:
            ``self``.
        """
        self.__dict__.pop(_FUSED, None)
        super().train(mode)
        return self

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle and deepcopy without the fused model (a copy builds its own)."""
        state = self.__dict__.copy()
        state.pop(_FUSED, None)
        return state

    def __prepare_scriptable__(self) -> ResNeSt:
        """What ``torch.jit.script`` compiles: the plain model over the same modules.

        TorchScript cannot compile ``super()`` calls nor the fused ops; the
        plain forward it compiles computes the same function (the split
        attention modules script as they are).

        Returns:
            A plain :class:`~.resnest.ResNeSt` sharing this model's children.
        """
        plain = ResNeSt.__new__(ResNeSt)
        plain.__dict__.update(self.__getstate__())
        plain._modules = dict(self._modules)  # its own dict: torch.jit.script rewrites it in place
        return plain
