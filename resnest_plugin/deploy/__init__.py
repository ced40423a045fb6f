"""Deploying a trained model without OpenMMLab: ONNX export and an onnxruntime runner.

Importing this package imports neither torch nor any OpenMMLab package: the
runner (:mod:`.runtime`) needs only numpy, opencv and onnxruntime, while the
exporter (:mod:`.export`) is imported on demand, in an MMPose venv.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PoseEstimator"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the exporter's `import resnest_plugin.deploy.export` does not load onnxruntime/OpenCV.
    if name == "PoseEstimator":
        from .runtime import PoseEstimator

        return PoseEstimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
