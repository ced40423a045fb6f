"""Conv/norm builders of the core: named errors, and the torch-only path equal to mmcv's."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from resnest_plugin.models import ResNeSt, layers


@pytest.fixture
def without_mmcv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's builders as on a machine without mmcv (e.g. the GPU device check)."""
    monkeypatch.setattr(layers, "_mmcv_norm_layer", None)
    monkeypatch.setattr(layers, "_mmcv_conv_layer", None)


def _torch_class(module: torch.nn.Module) -> type:
    """The torch.nn class a module is (mmcv 1.x's SyncBN is a thin subclass of torch's)."""
    return next(cls for cls in type(module).__mro__ if cls.__module__.startswith("torch.nn"))


@pytest.mark.parametrize("mmcv_present", [True, False])
def test_unknown_norm_type_names_it_and_the_accepted_types(mmcv_present: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not mmcv_present:
        monkeypatch.setattr(layers, "_mmcv_norm_layer", None)
    with pytest.raises(ValueError) as error:
        ResNeSt(depth=50, norm_cfg=dict(type="XN"))
    message = str(error.value)
    assert "'XN'" in message and "'BN'" in message and "'GN'" in message and "'SyncBN'" in message


def test_unknown_norm_type_through_the_hosts_registry_names_it() -> None:
    """As MMPose's tools build it (0.x used to say "Unrecognized norm type XN"; 1.x "Cannot find None")."""
    from host_helpers import build_from_config

    with pytest.raises(ValueError) as error:
        build_from_config(dict(type="resnest_plugin.ResNeSt", depth=50, norm_cfg=dict(type="XN")))
    assert "'XN'" in str(error.value) and "'BN'" in str(error.value)


def test_norm_cfg_without_a_type_is_named() -> None:
    with pytest.raises(ValueError, match=r"norm_cfg=\{'requires_grad': True\}: expected a dict with a 'type'"):
        layers.build_norm_layer(dict(requires_grad=True), 8)


def test_group_norm_without_num_groups_is_named() -> None:
    """mmcv only asserts; the message names the config and the missing key."""
    with pytest.raises(ValueError, match=r"norm_cfg=\{'type': 'GN'\}: GroupNorm needs num_groups"):
        ResNeSt(depth=50, norm_cfg=dict(type="GN"))


def test_a_registered_norm_with_bad_arguments_keeps_its_own_error() -> None:
    """A known type with a wrong keyword is the layer's own complaint, not "unknown type"."""
    with pytest.raises(TypeError, match="momentun"):
        layers.build_norm_layer(dict(type="BN", momentun=0.1), 8)


@pytest.mark.parametrize("norm_cfg", [dict(type="BN", requires_grad=True),
                                      dict(type="BN", requires_grad=False),
                                      dict(type="GN", num_groups=32),
                                      dict(type="SyncBN")])
def test_torch_only_builders_match_mmcvs(norm_cfg: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same child names, layer types, parameter shapes, requires_grad and outputs as with mmcv."""
    torch.manual_seed(0)
    with_mmcv = ResNeSt(depth=50, norm_cfg=norm_cfg)
    monkeypatch.setattr(layers, "_mmcv_norm_layer", None)
    monkeypatch.setattr(layers, "_mmcv_conv_layer", None)
    torch.manual_seed(0)
    torch_only = ResNeSt(depth=50, norm_cfg=norm_cfg)
    ours = {name: _torch_class(module) for name, module in torch_only.named_modules()}
    theirs = {name: _torch_class(module) for name, module in with_mmcv.named_modules()}
    assert ours == theirs
    assert {k: (v.shape, v.requires_grad) for k, v in torch_only.named_parameters()} == \
        {k: (v.shape, v.requires_grad) for k, v in with_mmcv.named_parameters()}
    if norm_cfg["type"] == "SyncBN":
        return  # SyncBatchNorm runs only in a process group
    torch_only.load_state_dict(with_mmcv.state_dict())
    images = torch.randn(2, 3, 64, 48)
    torch.testing.assert_close(torch_only.eval()(images), with_mmcv.eval()(images), rtol=0, atol=0)


def test_torch_only_conv_refuses_registry_types(without_mmcv: None) -> None:
    with pytest.raises(ValueError, match="conv_cfg type 'DCNv2' needs mmcv's conv registry"):
        layers.build_conv_layer(dict(type="DCNv2"), 8, 8, 3)


def test_core_imports_builds_and_runs_without_mmcv() -> None:
    """In a process where mmcv cannot be imported, the core still builds and runs ResNeSt-50."""
    # As on a bare PyTorch machine: mmcv/mmengine unimportable, no mmpose distribution.
    code = ("import sys; sys.modules['mmcv'] = None; sys.modules['mmengine'] = None\n"
            "import importlib.metadata as md\n"
            "real_version = md.version\n"
            "def version(name):\n"
            "    if name == 'mmpose':\n"
            "        raise md.PackageNotFoundError(name)\n"
            "    return real_version(name)\n"
            "md.version = version\n"
            "import torch\n"
            "from resnest_plugin.models import ResNeSt\n"
            "net = ResNeSt(depth=50).eval()\n"
            "print(tuple(net(torch.randn(1, 3, 64, 48))[-1].shape))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('mmcv', 'mmpose', 'mmengine'))"
            " and sys.modules[m] is not None))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shape, imported = result.stdout.strip().splitlines()
    assert shape == "(1, 2048, 2, 2)"
    assert imported == "[]"
