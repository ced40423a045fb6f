"""Deploying a trained model without OpenMMLab: ONNX export and an onnxruntime runner.

Importing this package imports neither torch nor any OpenMMLab package: the
runner (:mod:`.runtime`) needs only numpy, opencv and onnxruntime, while the
exporter (:mod:`.export`) is imported on demand, in an MMPose venv.
"""
