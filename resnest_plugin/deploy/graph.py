"""The torch module that becomes the ONNX file: crops in, MMPose's test-time path, keypoints out.

Host-free: it knows nothing of MMPose's registries or configs. A host module
(``resnest_plugin/hosts/mmpose{0,1}/deploy_model.py``) builds the network from
a config and hands it here together with the numbers the config holds
(:class:`Normalisation`, :class:`FlipTest`, the decode rule, the sizes).

What it computes, and the MMPose code each step matches:

* ``crops`` uint8 ``(N, H, W, 3)`` BGR -> float RGB NCHW, normalised. MMPose 0.x
  ``ToTensor`` + ``NormalizeTensor`` divide by 255 first and normalise with the
  0-1 mean/std; 1.x ``PoseDataPreprocessor`` normalises the 0-255 values. Both
  orders are kept (:attr:`Normalisation.unit_scale`) so the float rounding is
  the host's.
* the network (backbone + head) -> heatmaps ``(N, K, h, w)``;
* with the flip test, the flipped crops go through the same network in the
  same batch; their heatmaps are mirrored back, their channels swapped by the
  flip pairs, optionally shifted one pixel right, and averaged with the plain
  ones. 0.x ``TopDown.forward_test`` + ``flip_back`` +
  ``output_flipped[:, :, :, 1:] = output_flipped[:, :, :, :-1]``; 1.x
  ``TopdownPoseEstimator.predict`` + ``flip_heatmaps(shift_heatmap=...)``.
* decoding (:func:`decode_heatmaps`): first arg-max, -1 where the maximum is
  <= 0, quarter-pixel shift toward the larger neighbour with the generation's
  boundary rule, times ``input_size / heatmap_size``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .contract import DECODES, VARIANTS
from .rewrites import fold_deconv_batchnorms, subpixel_deconvs

__all__ = ["ExportableModel", "FlipTest", "HeatmapNetwork", "Normalisation", "PoseGraph",
           "decode_heatmaps", "flip_indices_from_pairs"]


@dataclass(frozen=True)
class Normalisation:
    """How the graph turns uint8 BGR crops into the network's input.

    Attributes:
        mean: RGB mean on the 0-255 scale.
        std: RGB standard deviation on the 0-255 scale.
        unit_scale: Divide by 255 first and normalise with ``mean / 255`` and
            ``std / 255`` (MMPose 0.x ``ToTensor`` + ``NormalizeTensor``);
            ``False`` normalises the 0-255 values (1.x ``PoseDataPreprocessor``).
    """

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    unit_scale: bool


@dataclass(frozen=True)
class FlipTest:
    """The config's flip test.

    Attributes:
        enabled: Run the flipped pass and average (``test_cfg.flip_test``).
        shift_heatmap: Shift the mirrored heatmaps one pixel right
            (``test_cfg.shift_heatmap``).
        flip_indices: For each keypoint, the index of its mirror image
            (itself when unpaired).
    """

    enabled: bool
    shift_heatmap: bool
    flip_indices: Tuple[int, ...]


def flip_indices_from_pairs(num_keypoints: int, pairs: Sequence[Sequence[int]]) -> Tuple[int, ...]:
    """Flip pairs ``[[left, right], ...]`` -> the index of each keypoint's mirror image.

    Args:
        num_keypoints: K.
        pairs: Pairs of keypoint indices swapped by a horizontal flip.

    Returns:
        ``K`` indices; an unpaired keypoint maps to itself.

    Raises:
        ValueError: If an index is out of range or a keypoint is in two pairs.
    """
    indices = list(range(num_keypoints))
    seen = set()
    for left, right in pairs:
        for index in (left, right):
            if not 0 <= index < num_keypoints or index in seen:
                raise ValueError(f"flip pairs {list(map(list, pairs))}: index {index} is out of "
                                 f"range 0..{num_keypoints - 1} or in two pairs")
            seen.add(index)
        indices[left], indices[right] = right, left
    return tuple(indices)


class HeatmapNetwork(nn.Module):
    """``head(backbone(images))``: the heatmap network of a top-down model without its host.

    MMPose 0.x ``TopdownHeatmapSimpleHead.forward`` takes the 0.x backbone's
    tensor and 1.x ``HeatmapHead.forward`` the 1.x backbone's tuple (it uses
    the last), so one composition serves both.

    Args:
        backbone: The model's backbone (eval mode).
        head: The model's heatmap head (eval mode).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        """Normalised NCHW images -> heatmaps ``(N, K, h, w)``."""
        return self.head(self.backbone(images))


def _neighbour(flat: Tensor, index: Tensor, offset: int) -> Tensor:
    """``flat[..., index + offset]`` with the index clamped into range (masked by the caller)."""
    return flat.gather(-1, (index + offset).clamp(0, flat.shape[-1] - 1))


def decode_heatmaps(heatmaps: Tensor, rule: str) -> Tuple[Tensor, Tensor]:
    """MMPose's default heatmap decoding, in heatmap pixels.

    The arg-max is the first maximum of each flattened heatmap (numpy's
    ``argmax``; ONNX ``ArgMax`` with ``select_last_index=0``); where the
    maximum is <= 0 the location is -1 and is not refined (0.x
    ``_get_max_preds``, 1.x ``get_heatmap_maximum``). The refinement adds
    ``0.25 * sign(neighbour difference)`` per axis:

    * ``"mmpose0-default"`` (0.x ``keypoints_from_heatmaps(post_process='default')``):
      both axes only when ``1 < x < w - 1`` and ``1 < y < h - 1``;
    * ``"mmpose1-msra"`` (1.x ``refine_keypoints``): x when ``1 < x < w - 1``
      (and ``0 < y < h``), y when ``1 < y < h - 1`` (and ``0 < x < w``).

    Args:
        heatmaps: ``(N, K, h, w)`` float heatmaps.
        rule: One of :data:`resnest_plugin.deploy.contract.DECODES`.

    Returns:
        ``keypoints`` ``(N, K, 2)`` x/y in heatmap pixels and ``scores``
        ``(N, K)``, the maxima.

    Raises:
        ValueError: If ``rule`` is not a known decode rule.
    """
    if rule not in DECODES:
        raise ValueError(f"decode rule {rule!r}: expected one of {list(DECODES)}")
    height, width = int(heatmaps.shape[-2]), int(heatmaps.shape[-1])
    flat = heatmaps.flatten(2)
    # torch.argmax returns the first maximum, as numpy's argmax does.
    index = flat.argmax(dim=-1, keepdim=True)
    scores = flat.gather(-1, index)
    x = index % width
    y = torch.div(index, width, rounding_mode="floor")
    dx = _neighbour(flat, index, 1) - _neighbour(flat, index, -1)
    dy = _neighbour(flat, index, width) - _neighbour(flat, index, -width)
    x_inside = (x > 1) & (x < width - 1)
    y_inside = (y > 1) & (y < height - 1)
    if rule == "mmpose0-default":
        move_x = move_y = x_inside & y_inside
    else:  # "mmpose1-msra": 0 < y < h and 0 < x < w; y = 0 and x = 0 are in range but excluded
        move_x = x_inside & (y > 0)
        move_y = y_inside & (x > 0)
    zero = torch.zeros_like(dx)
    shift_x = torch.where(move_x, torch.sign(dx) * 0.25, zero)
    shift_y = torch.where(move_y, torch.sign(dy) * 0.25, zero)
    keypoints = torch.cat([x.to(heatmaps.dtype) + shift_x, y.to(heatmaps.dtype) + shift_y], dim=-1)
    found = scores > 0
    keypoints = torch.where(found, keypoints, torch.full_like(keypoints, -1.0))
    return keypoints, scores.squeeze(-1)


class PoseGraph(nn.Module):
    """Crops -> (keypoints, scores) or heatmaps: the module the exporter traces.

    Args:
        network: Normalised NCHW float images -> heatmaps (:class:`HeatmapNetwork`).
        normalisation: Input conversion (:class:`Normalisation`).
        flip: The flip test (:class:`FlipTest`).
        decode: A decode rule of :data:`~resnest_plugin.deploy.contract.DECODES`,
            or ``None`` for the heatmaps variant.
        input_size: ``(W, H)`` of the crops.
        heatmap_size: ``(w, h)`` of the heatmaps.
    """

    def __init__(self, network: nn.Module, normalisation: Normalisation, flip: FlipTest,
                 decode: Optional[str], input_size: Tuple[int, int],
                 heatmap_size: Tuple[int, int]) -> None:
        super().__init__()
        if decode is not None and decode not in DECODES:
            raise ValueError(f"decode rule {decode!r}: expected one of {list(DECODES)} or None")
        self.network = network
        self.flip = flip
        self.decode = decode
        self.input_size = tuple(input_size)
        self.heatmap_size = tuple(heatmap_size)
        divisor = 255.0 if normalisation.unit_scale else 1.0
        self.unit_scale = normalisation.unit_scale
        self.register_buffer("mean", torch.tensor(normalisation.mean).view(1, 3, 1, 1) / divisor)
        self.register_buffer("std", torch.tensor(normalisation.std).view(1, 3, 1, 1) / divisor)
        self.register_buffer("flip_index", torch.tensor(flip.flip_indices, dtype=torch.long))
        scale = [input_size[0] / heatmap_size[0], input_size[1] / heatmap_size[1]]
        # float32, as 1.x MSRAHeatmap.scale_factor; 0.x transform_preds scales in float64
        # from image coordinates, which the runner's box transform reproduces.
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def preprocess(self, crops: Tensor) -> Tensor:
        """uint8 ``(N, H, W, 3)`` BGR -> normalised float RGB ``(N, 3, H, W)``."""
        images = crops.permute(0, 3, 1, 2).flip(1).float()
        if self.unit_scale:
            images = images / 255.0
        return (images - self.mean) / self.std

    def heatmaps(self, crops: Tensor) -> Tensor:
        """uint8 crops -> heatmaps ``(N, K, h, w)``, flip test applied when enabled."""
        images = self.preprocess(crops)
        if not self.flip.enabled:
            return self.network(images)
        # One batch of plain + mirrored crops: the same per-sample arithmetic (eval-mode BN)
        # as MMPose's two passes, one network call.
        both = self.network(torch.cat([images, images.flip(3)], dim=0))
        batch = images.shape[0]
        plain, mirrored = both[:batch], both[batch:]
        mirrored = mirrored.flip(3).index_select(1, self.flip_index)
        if self.flip.shift_heatmap:
            mirrored = torch.cat([mirrored[..., :1], mirrored[..., :-1]], dim=-1)
        return (plain + mirrored) * 0.5

    def forward(self, crops: Tensor) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Crops -> ``(keypoints in crop pixels, scores)``, or heatmaps when ``decode`` is None."""
        heatmaps = self.heatmaps(crops)
        if self.decode is None:
            return heatmaps
        keypoints, scores = decode_heatmaps(heatmaps, self.decode)
        return keypoints * self.scale, scores


@dataclass
class ExportableModel:
    """What a host module reads from a config and checkpoint: the network and its numbers.

    Attributes:
        network: Normalised images -> heatmaps (:class:`HeatmapNetwork`), eval mode,
            weights loaded.
        normalisation: The config's input normalisation.
        flip: The config's flip test.
        decode: The generation's decode rule (one of ``DECODES``).
        input_size: ``[W, H]`` of the crops.
        heatmap_size: ``[w, h]`` of the heatmaps.
        keypoint_names: K keypoint names, in channel order.
        skeleton: ``[i, j]`` keypoint index pairs to draw.
        flip_pairs: ``[i, j]`` keypoint index pairs swapped by a horizontal flip.
        sigmas: K OKS sigmas.
        box_padding: Box -> crop scale padding of the test pipeline.
        mmpose_version: Version of the MMPose that built the model.
    """

    network: nn.Module
    normalisation: Normalisation
    flip: FlipTest
    decode: str
    input_size: Tuple[int, int]
    heatmap_size: Tuple[int, int]
    keypoint_names: List[str]
    skeleton: List[List[int]]
    flip_pairs: List[List[int]]
    sigmas: List[float]
    box_padding: float
    mmpose_version: str

    def pose_graph(self, variant: str, flip_test: Optional[bool] = None) -> PoseGraph:
        """The traced module of one variant.

        Args:
            variant: ``"keypoints"`` (decoded) or ``"heatmaps"``.
            flip_test: Override the config's flip test (``None`` keeps it).

        Returns:
            The :class:`PoseGraph`, in eval mode, on a copy of the network with the
            export's rewrites (:mod:`.rewrites`: the same function, fewer nodes).

        Raises:
            ValueError: If ``variant`` is unknown.
        """
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r}: expected one of {list(VARIANTS)}")
        flip = self.flip if flip_test is None else replace(self.flip, enabled=flip_test)
        network = subpixel_deconvs(fold_deconv_batchnorms(copy.deepcopy(self.network).eval()))
        graph = PoseGraph(network, self.normalisation, flip,
                          self.decode if variant == "keypoints" else None,
                          self.input_size, self.heatmap_size)
        return graph.eval()
