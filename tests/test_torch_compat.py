"""resnest_plugin.torch_compat and the torch floor, on every supported torch (1.13 to 2.15).

Host-free and without conftest fixtures: the support-matrix rows run this file in bare
venvs (torch, numpy, packaging, pytest) with ``pytest --noconftest``.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, List, Tuple

import pytest
import torch

import resnest_plugin
from resnest_plugin import torch_compat
from resnest_plugin.models import FastResNeSt, ResNeSt, fuse_for_cpu_inference
from resnest_plugin.version import MIN_TORCH

PACKAGE_ROOT = str(Path(resnest_plugin.__file__).resolve().parents[1])


def _close(outs: Tuple[torch.Tensor, ...], refs: Tuple[torch.Tensor, ...]) -> bool:
    return len(outs) == len(refs) and all(
        torch.allclose(out, ref, atol=1e-4 * float(ref.abs().max())) for out, ref in zip(outs, refs))


def _models() -> Tuple[ResNeSt, FastResNeSt]:
    torch.manual_seed(0)
    plain = ResNeSt(depth=50, out_indices=(2, 3)).eval()
    fast = FastResNeSt(depth=50, out_indices=(2, 3))
    fast.load_state_dict(plain.state_dict())
    return plain, fast.eval()


@pytest.fixture
def fresh_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the probe results and the once-only log keys (restored afterwards)."""
    monkeypatch.setattr(torch_compat, "_pointwise_problem", [])
    monkeypatch.setattr(torch_compat, "_logged", set())


def test_is_compiling_is_torch_own_flag_and_false_in_eager() -> None:
    assert torch_compat.is_compiling() is False
    compiler = getattr(torch, "compiler", None)
    if hasattr(compiler, "is_compiling"):  # torch >= 2.3
        assert torch_compat._IS_COMPILING is compiler.is_compiling
    elif hasattr(torch._utils, "is_compiling"):  # torch 2.1/2.2
        assert torch_compat._IS_COMPILING is torch._utils.is_compiling
    else:  # torch 1.13: no torch.compile to ask
        assert not hasattr(torch, "compile")


def test_is_compiling_is_true_while_torch_compile_traces() -> None:
    if not hasattr(torch, "compile"):  # torch 1.13
        assert torch_compat.is_compiling() is False
        return

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return x * (2.0 if torch_compat.is_compiling() else 1.0)

    compiled = torch.compile(scaled, backend="eager", fullgraph=True)
    assert compiled(torch.ones(1)).item() == 2.0
    assert scaled(torch.ones(1)).item() == 1.0


def test_pointwise_probe_answers_for_this_torch(fresh_probes: None) -> None:
    problem = torch_compat._probe_mkldnn_pointwise()
    assert torch_compat.mkldnn_pointwise_ok() is (problem is None)
    if problem is None:  # the ops the fused model calls are there and compute conv + post-ops
        assert torch_compat.ONEDNN and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    else:
        assert "oneDNN" in problem or "_convolution_pointwise" in problem


def test_missing_pointwise_op_gives_the_plain_path_and_one_log_line(
        fresh_probes: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls: List[int] = []

    def missing() -> str:
        calls.append(1)
        return "simulated: torch.ops.mkldnn has no _convolution_pointwise"

    monkeypatch.setattr(torch_compat, "_probe_mkldnn_pointwise", missing)
    plain, fast = _models()
    x = torch.randn(2, 3, 64, 48)
    with caplog.at_level(logging.WARNING, logger="resnest_plugin"), torch.no_grad():
        reference = plain(x)
        first, second = fast(x), fast(x)
        assert fast.fused_inference_model(x) is None  # the fast model took the plain path
        fused = fuse_for_cpu_inference(plain)(x)  # an explicit fused model runs F.conv2d instead
    assert _close(first, reference) and _close(second, reference) and _close(fused, reference)
    lines = [r for r in caplog.records if "fused CPU inference falls back" in r.getMessage()]
    assert len(lines) == 1 and "simulated" in lines[0].getMessage()
    assert calls == [1]  # probed once


def test_fused_inference_runs_the_pointwise_ops_where_they_exist(fresh_probes: None) -> None:
    plain, fast = _models()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        reference, out = plain(x), fast(x)
        fused = fast.fused_inference_model(x)
    assert _close(out, reference)
    assert (fused is not None) is torch_compat.mkldnn_pointwise_ok()


def test_without_onednn_forwards_stay_nchw_and_say_so_once(
        fresh_probes: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _, fast = _models()
    fast.train()
    x = torch.randn(2, 3, 64, 48)
    assert fast.runs_channels_last(x) is torch_compat.ONEDNN
    monkeypatch.setattr(torch_compat, "ONEDNN", False)
    with caplog.at_level(logging.WARNING, logger="resnest_plugin"):
        assert not fast.runs_channels_last(x) and not fast.runs_channels_last(x)
        outs = fast(x)
    sum(out.sum() for out in outs).backward()
    assert all(out.is_contiguous() for out in outs)
    assert len([r for r in caplog.records if "stay NCHW" in r.getMessage()]) == 1


def test_add_safe_globals_only_where_torch_has_an_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    added: List[Any] = []
    monkeypatch.setattr(torch.serialization, "add_safe_globals", added.extend, raising=False)
    assert torch_compat.add_safe_globals(iter([int])) is True and added == [int]
    monkeypatch.delattr(torch.serialization, "add_safe_globals")
    assert torch_compat.add_safe_globals([float]) is False and added == [int]


def test_safe_globals_context_only_where_torch_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    has_context = hasattr(torch.serialization, "safe_globals") and hasattr(torch.serialization, "get_safe_globals")
    assert (torch_compat.safe_globals_context([]) is not None) is has_context
    monkeypatch.delattr(torch.serialization, "safe_globals", raising=False)
    assert torch_compat.safe_globals_context([]) is None


def test_weights_only_globals_are_torch_own_list() -> None:
    allowed = torch_compat.weights_only_globals()
    assert allowed is not None
    assert allowed["torch._utils._rebuild_tensor_v2"] is torch._utils._rebuild_tensor_v2
    assert "collections.OrderedDict" in allowed and "torch.Size" in allowed
    assert not any(name.startswith(("os.", "posix.", "subprocess.", "builtins.eval")) for name in allowed)


def _run(code: str, *blocked: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=PACKAGE_ROOT, timeout=300)


def test_torch_below_the_floor_is_one_line_import_error() -> None:
    result = _run("""
        import torch
        torch.__version__ = '1.12.1'
        try:
            import resnest_plugin
        except ImportError as error:
            print(str(error))
        else:
            raise SystemExit('imported on torch 1.12.1')
        """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "torch 1.12.1" in lines[0] and f"torch >= {MIN_TORCH}" in lines[0], lines[0]


def test_floor_is_the_lowest_tested_torch_and_this_torch_passes() -> None:
    assert MIN_TORCH == "1.13"
    assert resnest_plugin._release(str(torch.__version__)) >= resnest_plugin._release(MIN_TORCH)
    assert resnest_plugin._release("1.12.1+cu116") < resnest_plugin._release(MIN_TORCH)
    assert resnest_plugin._release("2.6.0a0+git1234") > resnest_plugin._release("2.5.1")


def test_without_torch_the_package_imports_and_names_torch_when_used() -> None:
    result = _run("""
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoTorch())
        import resnest_plugin
        import resnest_plugin.hosts
        assert resnest_plugin.HOST is None
        for name in ("ResNeSt", "models"):
            try:
                getattr(resnest_plugin, name)
            except ImportError as error:
                print(error)
            else:
                raise SystemExit(f"resnest_plugin.{name} without torch")
        try:
            import resnest_plugin.weights
        except ImportError as error:
            print(error)
        else:
            raise SystemExit("import resnest_plugin.weights without torch")
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch imported"
        """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert all("torch" in line and f">= {MIN_TORCH}" in line for line in lines), lines
