"""The export graph's host-free parts: the rewrites, the flip pairs, the preprocessing (both stacks).

Oracles: the unrewritten PyTorch modules (the rewrites must compute the same
function, also after ONNX export), hand-written index tables. The decoding
itself is compared with each MMPose generation's own functions in
``tests/mmpose{0,1}/test_deploy_export.py``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from resnest_plugin.deploy.graph import FlipTest, Normalisation, PoseGraph, flip_indices_from_pairs
from resnest_plugin.deploy.rewrites import SubPixelDeconv, fold_deconv_batchnorms, subpixel_deconvs
from resnest_plugin.torch_compat import onnx_export_options

from model_helpers import randomise


def _head() -> nn.Sequential:
    """The layout of both generations' heatmap heads: (deconv, BN, ReLU) x 2, then a 1x1 conv."""
    layers = []
    for channels_in in (32, 16):
        layers += [nn.ConvTranspose2d(channels_in, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    return nn.Sequential(nn.Sequential(*layers), nn.Conv2d(16, 5, 1))


def test_rewrites_keep_the_function_and_leave_no_deconv_or_norm(tmp_path: Path) -> None:
    head = randomise(_head(), seed=3).eval()
    rewritten = subpixel_deconvs(fold_deconv_batchnorms(copy.deepcopy(head)))
    kinds = {type(m) for m in rewritten.modules()}
    assert nn.ConvTranspose2d not in kinds and nn.BatchNorm2d not in kinds and SubPixelDeconv in kinds
    x = torch.randn(3, 32, 5, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = head(x), rewritten(x)
    assert actual.shape == expected.shape == (3, 5, 20, 16)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "head.onnx"
    torch.onnx.export(rewritten, (x,), str(path), **onnx_export_options(), opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"x": x[:2].numpy()})
    np.testing.assert_allclose(onnx_out, expected[:2].numpy(), rtol=1e-4, atol=1e-4)


def test_subpixel_deconv_refuses_other_transposed_convs() -> None:
    assert SubPixelDeconv.fits(nn.ConvTranspose2d(4, 4, 4, 2, 1))
    assert not SubPixelDeconv.fits(nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1))
    assert not SubPixelDeconv.fits(nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2))
    assert not SubPixelDeconv.fits(nn.Conv2d(4, 4, 3))


def test_flip_indices_from_pairs() -> None:
    assert flip_indices_from_pairs(5, [[1, 2], [3, 4]]) == (0, 2, 1, 4, 3)
    with pytest.raises(ValueError, match="index 5 is out of range 0..4"):
        flip_indices_from_pairs(5, [[1, 5]])
    with pytest.raises(ValueError, match="in two pairs"):
        flip_indices_from_pairs(5, [[1, 2], [2, 3]])


@pytest.mark.parametrize("unit_scale", [True, False], ids=["0.x-order", "1.x-order"])
def test_preprocess_is_bgr_to_rgb_then_the_mean_and_std(unit_scale: bool) -> None:
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    graph = PoseGraph(nn.Identity(), Normalisation(mean, std, unit_scale), FlipTest(False, False, (0,)), None,
                      (4, 2), (1, 1))
    crops = np.random.default_rng(0).integers(0, 256, (2, 2, 4, 3), dtype=np.uint8)
    expected = (crops[..., ::-1].astype(np.float64) - mean) / std
    actual = graph.preprocess(torch.from_numpy(crops)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
