"""Helpers shared by the checkpoint tests of both stacks (tests/test_weights.py and the hosts')."""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, TypeVar

import pytest
import torch
from torch import nn

from resnest_plugin.weights import CheckpointLoadWarning

__all__ = ["IMAGE", "assert_same_features", "captured_records", "mmcls_layout", "no_load_warnings",
           "offline_hub_cache", "one_thread", "save"]

IMAGE = (1, 3, 64, 64)
T = TypeVar("T")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's tiny forwards on one thread, restored afterwards.

    Measured: a 1x3x64x64 float64 ResNeSt-101 forward took 0.38 s on one
    thread and 8.3 s on two while the other core was busy (OpenMP threads
    wait on each other); the inputs are too small to gain from threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save(obj: object, path: Path) -> str:
    """``torch.save`` ``obj`` to ``path``; return the path as a string (a checkpoint name)."""
    torch.save(obj, path)
    return str(path)


def assert_same_features(ours: nn.Module, reference: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                         reference_model: nn.Module) -> None:
    """Stage-4 features of ``ours`` equal ``reference(reference_model, x)`` within 1e-5 (float64).

    float64, so that the tolerance tests the arithmetic rather than float32 rounding.
    """
    x = torch.randn(*IMAGE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for model in (ours, reference_model):
        model.double().eval()  # not chained: MMPose 0.x's ResNet.train() returns None
    with torch.no_grad():
        actual = ours(x)
        expected = reference(reference_model, x)
    # 1.x backbones (ours and MMPose's) return a tuple of stage outputs.
    actual, expected = (out[-1] if isinstance(out, tuple) else out for out in (actual, expected))
    assert actual.shape == expected.shape, f"expected {tuple(expected.shape)}, got {tuple(actual.shape)}"
    diff = (actual - expected).abs().max().item()
    assert diff <= 1e-5, f"features differ by {diff:.3g} (max |feature| {expected.abs().max().item():.3g})"


def no_load_warnings(run: Callable[[], T]) -> T:
    """Run ``run()`` and fail if it raised any :class:`CheckpointLoadWarning`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    load_warnings = [w for w in caught if issubclass(w.category, CheckpointLoadWarning)]
    assert not load_warnings, f"unexpected load warnings: {[str(w.message) for w in load_warnings]}"
    return result


def mmcls_layout(backbone: Mapping[str, torch.Tensor]) -> Dict[str, object]:
    """A backbone state dict as an mmcls classifier checkpoint holds it (``mmcls://`` files)."""
    return {"state_dict": {**{f"backbone.{key}": value for key, value in backbone.items()},
                           "head.fc.weight": torch.randn(1000, 2048), "head.fc.bias": torch.randn(1000)}}


def offline_hub_cache(monkeypatch: pytest.MonkeyPatch, torch_home: Path, url: str, payload: object) -> Path:
    """Serve ``url`` from a fresh torch.hub cache under ``torch_home``; any download fails the test.

    Args:
        monkeypatch: The test's fixture (``TORCH_HOME`` and the download are restored after it).
        torch_home: An empty folder to use as ``TORCH_HOME``.
        url: The URL whose cache file to write (mmcv / torch.hub name it by its basename).
        payload: What the cache file holds.

    Returns:
        The cache file.
    """
    def no_download(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"tests must not download {url}")

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    return Path(save(payload, cache / url.rsplit("/", 1)[-1]))


@contextlib.contextmanager
def captured_records(logger: logging.Logger) -> Iterator[List[logging.LogRecord]]:
    """Collect what ``logger`` handles at INFO and above, whether or not it propagates (MMLogger)."""
    records: List[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
