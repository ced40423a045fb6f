"""ONNX export of the backbone, checked with onnxruntime, on both stacks.

Oracle: the same model in PyTorch (eval). Both the plain core and the class
the host registers (the fast model, whose fused CPU inference must stand
aside while the exporter traces) export the plain graph: four stage outputs,
standard operators only, the traced batch and another one (dynamic axis).
"""
from __future__ import annotations

from pathlib import Path
from typing import Type

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from resnest_plugin.models import ResNeSt
from resnest_plugin.torch_compat import onnx_export_options

from host_helpers import PluginResNeSt
from model_helpers import randomise

STAGES = [f"stage{i}" for i in range(1, 5)]


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", [ResNeSt, PluginResNeSt], ids=["plain", "registered"])
def test_backbone_onnx_with_several_outputs_matches_pytorch(model: Type[ResNeSt], tmp_path: Path) -> None:
    backbone = model(depth=50, out_indices=(0, 1, 2, 3))
    randomise(backbone, seed=2, spread=0.1)
    backbone.eval()
    images = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "resnest50.onnx"
    # The TorchScript-based exporter (dynamo=False): one pass, a few seconds on CPU.
    torch.onnx.export(backbone, (images,), str(path), opset_version=17, **onnx_export_options(),
                      input_names=["images"], output_names=STAGES,
                      dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in STAGES}})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert not any(node.domain not in ("", "ai.onnx") for node in graph.graph.node), \
        "graph holds non-standard operators (a fused oneDNN op leaked into the export?)"
    session = _session(path)
    for batch in (2, 3):
        x = torch.randn(batch, 3, 64, 48, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = [t.numpy() for t in backbone(x)]
        actual = session.run(None, {"images": x.numpy()})
        assert [a.shape for a in actual] == [e.shape for e in expected]
        assert [e.shape[1] for e in expected] == [256, 512, 1024, 2048]
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(e).max()))
