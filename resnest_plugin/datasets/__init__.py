"""Datasets of resnest_plugin, registered in MMPose's dataset registry on import."""
from .checked_coco import CheckedTopDownCocoDataset
from .registry import DATASETS, SCOPE

if "CheckedTopDownCocoDataset" not in DATASETS.module_dict:  # a reload must not register twice
    DATASETS.register_module(name="CheckedTopDownCocoDataset", module=CheckedTopDownCocoDataset)

__all__ = ["CheckedTopDownCocoDataset", "DATASETS", "SCOPE"]
