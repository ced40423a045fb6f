"""A sharply-trained pose model in about a minute of CPU: the head overfit on the bundled people.

The deploy tests and ``benchmarks/deploy_benchmark.py`` need heatmaps with
clear peaks (random weights give noise, whose arg-max any rounding moves),
at a fraction of ``make demo``'s cost (whole model, 120 iterations, ~4 min).
Here the backbone keeps its initial weights and is run once; only the head
(three deconvolutions and the 1x1 heatmap conv) is trained, with Adam, on the
12 annotated people of the bundled mini COCO and their mirror images (so the
flip test sees what it was trained on), towards MMPose's Gaussian targets
(sigma 2, MSE weighted by visibility). Host-free: it works on the
:class:`~resnest_plugin.deploy.graph.ExportableModel` of either generation,
at a reduced input size to keep the head's cost small.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
import torch
from torch import nn

from resnest_plugin.deploy.boxes import geometry_for
from resnest_plugin.deploy.calibration import BUNDLED_COCO, bundled_people
from resnest_plugin.deploy.graph import ExportableModel, PoseGraph

__all__ = ["overfit_head", "resized", "save_checkpoint"]


def resized(model: ExportableModel, input_size: Tuple[int, int]) -> ExportableModel:
    """``model`` at another ``(W, H)`` input (heatmaps a quarter of it): same network."""
    width, height = input_size
    return dataclasses.replace(model, input_size=(width, height), heatmap_size=(width // 4, height // 4))


def _targets(model: ExportableModel, generation: str, sigma: float = 2.0) -> Tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    """Crops, Gaussian target heatmaps and target weights of the bundled people (GT boxes)."""
    coco = json.loads((BUNDLED_COCO / "test_coco.json").read_text())
    annotations = [a for a in coco["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
    geometry = geometry_for(generation, model.input_size, model.heatmap_size, model.box_padding)
    width, height = model.heatmap_size
    stride = model.input_size[0] / width
    ys, xs = np.mgrid[0:height, 0:width]
    crops, heatmaps, weights = [], [], []
    for (path, (x, y, w, h)), annotation in zip(bundled_people(), annotations):
        centers, scales = geometry.center_scale(np.array([[x, y, x + w, y + h]], dtype=np.float32))
        matrix = geometry.warp_matrix(centers[0], scales[0])
        image = cv2.imread(str(path))
        crops.append(cv2.warpAffine(image, matrix, tuple(model.input_size), flags=cv2.INTER_LINEAR))
        joints = np.array(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        crop_xy = joints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        maps = np.exp(-((xs[None] - crop_xy[:, :1, None] / stride) ** 2
                        + (ys[None] - crop_xy[:, 1:, None] / stride) ** 2) / (2 * sigma ** 2))
        heatmaps.append(maps.astype(np.float32))
        weights.append((joints[:, 2] > 0).astype(np.float32))
    return np.stack(crops), np.stack(heatmaps), np.stack(weights)


def overfit_head(model: ExportableModel, generation: str, steps: int = 150, lr: float = 2e-3,
                 seed: int = 0) -> float:
    """Train ``model.network.head`` in place on the bundled people; return the final loss.

    Args:
        model: The host's model (reduced input size recommended, :func:`resized`).
        generation: ``"mmpose0"`` or ``"mmpose1"`` (box arithmetic of the crops).
        steps: Adam steps on the whole set (24 crops: 12 people and their mirror images).
        lr: Adam learning rate.
        seed: Seed of the head's re-initialisation.

    Returns:
        The MSE of the last step.
    """
    torch.manual_seed(seed)
    crops, heatmaps, weights = _targets(model, generation)
    flip = model.flip.flip_indices
    mirrored_maps = heatmaps[:, list(flip)][..., ::-1]
    crops = np.concatenate([crops, crops[:, :, ::-1]])
    heatmaps = torch.from_numpy(np.ascontiguousarray(np.concatenate([heatmaps, mirrored_maps])))
    weights = torch.from_numpy(np.concatenate([weights, weights[:, list(flip)]]))[..., None, None]
    prepare = PoseGraph(nn.Identity(), model.normalisation, dataclasses.replace(model.flip, enabled=False),
                        None, model.input_size, model.heatmap_size)
    network = model.network
    network.eval()
    with torch.no_grad():
        features = network.backbone(prepare.preprocess(torch.from_numpy(np.ascontiguousarray(crops))))
    head = network.head
    head.train()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (((head(features) - heatmaps) * weights) ** 2).mean()
        loss.backward()
        optimizer.step()
    # Train-mode BatchNorm updated its running statistics on this same set at every step.
    head.eval()
    return float(loss)


def save_checkpoint(model: ExportableModel, path: Path, head_prefix: str) -> Path:
    """Save ``model.network`` as the host's checkpoint (``backbone.*`` and ``head_prefix``)."""
    state = {}
    for key, value in model.network.state_dict().items():
        state[head_prefix + key[len("head."):] if key.startswith("head.") else key] = value
    torch.save({"meta": {"note": "head overfit on the bundled mini COCO"}, "state_dict": state}, path)
    return path

