"""A trained top-down checkpoint -> the export's model, weights only, strictly.

Host-free: the host module passes its model and the prefix its head's keys
carry (MMPose 0.x ``TopDown.keypoint_head``, 1.x ``TopdownPoseEstimator.head``).
Reading goes through :func:`resnest_plugin.weights.read_checkpoint`
(``torch.load(weights_only=True)``), never a plain unpickling.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

from ..weights import extract_state_dict, read_checkpoint

__all__ = ["HEAD_PREFIXES", "file_sha256", "load_pose_weights"]

#: Head-key prefix of each generation's top-down model: the released 0.x
#: checkpoints say ``keypoint_head.``, the 1.x ones ``head.``; the sub-keys
#: (``deconv_layers.*``, ``final_layer.*``) are the same.
HEAD_PREFIXES = ("keypoint_head.", "head.")


def file_sha256(path: Union[str, Path]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _renamed(state: Dict[str, torch.Tensor], head_prefix: str) -> Dict[str, torch.Tensor]:
    """Rename the other generation's head prefix to ``head_prefix``."""
    other = [prefix for prefix in HEAD_PREFIXES if prefix != head_prefix]
    renamed = {}
    for key, value in state.items():
        for prefix in other:
            if key.startswith(prefix):
                key = head_prefix + key[len(prefix):]
                break
        renamed[key] = value
    return renamed


def load_pose_weights(model: nn.Module, path: Union[str, Path], head_prefix: str) -> None:
    """Load a top-down checkpoint into ``model``, every key matched.

    Args:
        model: The host's top-down model (backbone + head).
        path: Checkpoint file (``{'state_dict': ...}`` as MMPose writes it, or a
            bare state dict).
        head_prefix: This host's head-key prefix, one of :data:`HEAD_PREFIXES`;
            keys with the other generation's prefix are renamed.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        resnest_plugin.weights.UnsafeCheckpointError: If the file needs unsafe globals.
        ValueError: If keys or shapes do not match the model (named, with the
            first few of each kind).
    """
    state = _renamed(dict(extract_state_dict(read_checkpoint(path), str(path))), head_prefix)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
             for key, value in expected.items() if key in state and state[key].shape != value.shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit the config's model: "
            f"{len(missing)} missing keys {missing[:4]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:4]}, {len(wrong)} shape mismatches {wrong[:4]} "
            "(is it the checkpoint of this config's depth and input size?)")
    model.load_state_dict(state, strict=True)
