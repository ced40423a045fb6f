"""Export-time rewrites of a heatmap network: the same function in nodes that quantise well.

Host-free. Applied by :meth:`resnest_plugin.deploy.graph.ExportableModel.pose_graph`
to a copy of the network (the host's model is never changed):

* :func:`fold_deconv_batchnorms`: the BatchNorm after each head deconvolution
  folded into it (the TorchScript exporter folds norms into ``Conv`` only);
* :func:`subpixel_deconvs`: each ``ConvTranspose2d(4, 2, 1)`` of the head as one
  ``Conv`` plus an interleave (:class:`SubPixelDeconv`).

Both keep the outputs within float32 rounding (``tests/test_deploy_graph.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SubPixelDeconv", "fold_deconv_batchnorms", "subpixel_deconvs"]


def fold_deconv_batchnorms(module: nn.Module) -> nn.Module:
    """Fold each eval-mode ``BatchNorm2d`` that directly follows a ``ConvTranspose2d``, in place.

    The TorchScript exporter folds BatchNorm into a preceding ``Conv`` but not
    into a ``ConvTranspose`` (the heads' deconvolution layers), and
    onnxruntime does not fuse that pair either; folded, the INT8 export
    quantises one node instead of a node plus a float32 norm. Only
    ``nn.Sequential`` neighbours are folded (the layout of both generations'
    heatmap heads); the norm becomes ``nn.Identity``.

    Args:
        module: A model in eval mode.

    Returns:
        ``module``.
    """
    for sequence in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequence._modules)
        for first, second in zip(names, names[1:]):
            deconv, norm = sequence._modules[first], sequence._modules[second]
            if not (isinstance(deconv, nn.ConvTranspose2d) and isinstance(norm, nn.BatchNorm2d)
                    and deconv.groups == 1 and norm.track_running_stats and not norm.training):
                continue
            with torch.no_grad():
                factor = (norm.weight if norm.affine else torch.ones_like(norm.running_var)) \
                    / torch.sqrt(norm.running_var + norm.eps)
                shift = (norm.bias if norm.affine else torch.zeros_like(norm.running_mean)) \
                    - norm.running_mean * factor
                bias = deconv.bias if deconv.bias is not None else torch.zeros_like(shift)
                # ConvTranspose2d weights are (in, out, kh, kw): scale the output channels.
                deconv.weight.mul_(factor.view(1, -1, 1, 1))
                deconv.bias = nn.Parameter(bias * factor + shift)
            sequence._modules[second] = nn.Identity()
    return module


class SubPixelDeconv(nn.Module):
    """A ``ConvTranspose2d(kernel 4, stride 2, padding 1)`` as one ``Conv2d`` and an interleave.

    Output pixel ``(2m + a, 2n + b)`` of that transposed conv sees input rows
    ``m - 1 + a, m + a`` and columns ``n - 1 + b, n + b`` with kernel taps
    ``(3, 1)`` (phase 0) or ``(2, 0)`` (phase 1) per axis. One 2x2 conv with
    padding 1 computes the four phases as ``4 * C_out`` channels on an
    ``(H + 1) x (W + 1)`` grid; phase ``(a, b)`` is its window starting at
    ``(a, b)``. Same function and multiply-adds as the transposed conv, but a
    ``Conv``, which onnxruntime quantises (``QLinearConv``); it has no INT8
    ``ConvTranspose``, which then stays float32 and took 38% of the INT8
    ResNeSt-50 pose model's time (measured, batch 16).

    Args:
        deconv: The transposed conv (kernel 4, stride 2, padding 1, no output
            padding, dilation 1, groups 1), weights already folded.
    """

    #: Kernel taps of phase 0 and phase 1 for the 2x2 window's rows (and columns).
    TAPS = ((3, 1), (2, 0))

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = deconv.weight.detach()  # (in, out, 4, 4)
        channels_in, channels_out = weight.shape[:2]
        phases = []
        for rows in self.TAPS:
            for cols in self.TAPS:
                taps = weight[:, :, list(rows)][:, :, :, list(cols)]  # (in, out, 2, 2)
                phases.append(taps.transpose(0, 1))
        self.conv = nn.Conv2d(channels_in, 4 * channels_out, 2, padding=1,
                              bias=deconv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat(phases, dim=0))
            if deconv.bias is not None:
                self.conv.bias.copy_(deconv.bias.detach().repeat(4))
        self.channels_out = channels_out

    @staticmethod
    def fits(module: nn.Module) -> bool:
        """Whether ``module`` is a transposed conv this class reproduces."""
        return (isinstance(module, nn.ConvTranspose2d) and tuple(module.kernel_size) == (4, 4)
                and tuple(module.stride) == (2, 2) and tuple(module.padding) == (1, 1)
                and tuple(module.output_padding) == (0, 0) and tuple(module.dilation) == (1, 1)
                and module.groups == 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, 2H, 2W)``."""
        height, width = x.shape[-2:]
        out = self.conv(x)
        c = self.channels_out
        phases = [out[:, (2 * a + b) * c:(2 * a + b + 1) * c, a:a + height, b:b + width]
                  for a in (0, 1) for b in (0, 1)]
        # (N, C, [a, b], H, W) -> (N, C, H, a, W, b) -> (N, C, 2H, 2W)
        stacked = torch.stack(phases, dim=2).reshape(-1, c, 2, 2, height, width)
        return stacked.permute(0, 1, 4, 2, 5, 3).reshape(-1, c, 2 * height, 2 * width)


def subpixel_deconvs(module: nn.Module) -> nn.Module:
    """Replace every :meth:`SubPixelDeconv.fits` transposed conv in an ``nn.Sequential``, in place.

    Args:
        module: A model in eval mode, norms already folded (:func:`fold_deconv_batchnorms`).

    Returns:
        ``module``.
    """
    for sequence in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for name, child in list(sequence._modules.items()):
            if SubPixelDeconv.fits(child):
                sequence._modules[name] = SubPixelDeconv(child)
    return module
