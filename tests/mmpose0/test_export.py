"""ONNX export of a full MMPose 0.x TopDown model with our backbone, checked with onnxruntime.

The backbone alone is exported on both stacks in ``tests/test_onnx_export.py``.

Oracle: the same model in PyTorch (eval). The exported graph must give the
same heatmaps, for the batch size it was traced with and another one
(dynamic batch axis), and contain no PyTorch-only operators.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmcv import Config
from mmpose.models import build_posenet
from torch import nn

import resnest_plugin  # noqa: F401  (registers resnest_plugin.ResNeSt)
from resnest_plugin.models import ResNeSt
from resnest_plugin.torch_compat import onnx_export_options

from model_helpers import randomise

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "configs" / "top_down" / "resnest" / "coco" / "resnest50_coco_256x192.py"


class HeatmapModel(nn.Module):
    """``TopDown.forward_dummy`` (images -> heatmaps) as ``forward``, the graph MMPose's
    ``tools/deployment/pytorch2onnx.py`` exports."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_dummy(images)


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter (dynamo=False): torch 2.x's default dynamo
    # exporter needs the onnxscript package, which this project does not pin.
    torch.onnx.export(model, (example,), str(path), opset_version=17, **onnx_export_options(),
                      input_names=["images"], output_names=["heatmaps"],
                      dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}})


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def topdown() -> nn.Module:
    """The 256x192 ResNeSt-50 TopDown model of our config, random non-trivial weights."""
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.pretrained = None
    model = build_posenet(cfg.model)
    assert isinstance(model.backbone, ResNeSt)
    randomise(model, seed=0, spread=0.1)
    return model.eval()


def test_topdown_onnx_heatmaps_match_pytorch(topdown: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "topdown_resnest50.onnx"
    wrapped = HeatmapModel(topdown).eval()
    # Small input (64x48 instead of 256x192): same graph, a fraction of the CPU time.
    example = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    _export(wrapped, example, path)

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    ops = {node.op_type for node in graph.graph.node}
    assert {"Conv", "ConvTranspose", "Softmax", "GlobalAveragePool"} <= ops or \
        {"Conv", "ConvTranspose", "Softmax", "ReduceMean"} <= ops, sorted(ops)
    assert not any(node.domain not in ("", "ai.onnx") for node in graph.graph.node), \
        "graph holds non-standard operators"

    session = _session(path)
    for batch in (1, 3):  # the traced batch and another one (dynamic axis)
        images = torch.randn(batch, 3, 64, 48, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = wrapped(images).numpy()
        (actual,) = session.run(None, {"images": images.numpy()})
        assert actual.shape == expected.shape and expected.shape[:2] == (batch, 17)
        assert np.abs(expected).max() > 1e-3, "degenerate heatmaps"
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_mmpose_stock_pytorch2onnx_tool_exports_our_config(topdown: nn.Module, tmp_path: Path) -> None:
    """MMPose's own tools/deployment/pytorch2onnx.py, unchanged, on our config
    (through torch's default dynamo exporter, which needs onnxscript)."""
    import mmpose

    checkpoint = tmp_path / "random.pth"
    torch.save({"state_dict": topdown.state_dict(), "meta": {}}, str(checkpoint))
    output = tmp_path / "topdown.onnx"
    tool = Path(mmpose.__file__).parent / ".mim" / "tools" / "deployment" / "pytorch2onnx.py"
    completed = subprocess.run(
        [sys.executable, str(tool), str(CONFIG), str(checkpoint), "--output-file", str(output),
         "--shape", "1", "3", "256", "192", "--verify"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "The numerical values are same between Pytorch and ONNX" in completed.stdout
    graph = onnx.load(str(output))
    # The tool insists on opset 11; the dynamo exporter writes at least 18 regardless.
    assert graph.opset_import[0].version >= 17
    images = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = topdown.forward_dummy(images).numpy()
    (actual,) = _session(output).run(None, {graph.graph.input[0].name: images.numpy()})
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
