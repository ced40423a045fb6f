"""Datasets of resnest_plugin for MMPose 0.x (registered by :mod:`resnest_plugin.hosts.mmpose0`)."""
from .checked_coco import CheckedTopDownCocoDataset, DataPipelineError

__all__ = ["CheckedTopDownCocoDataset", "DataPipelineError"]
