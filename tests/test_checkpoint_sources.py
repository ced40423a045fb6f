"""Where checkpoint names point: each backbone class carries its sources; import order changes nothing.

The core class resolves local files and URLs only and names what a
model-zoo name needs; the host's registered class resolves ``mmcls://``
through its own host's table (mmcv 1.x's on 0.x, mmengine's on 1.x). No
module global is involved, which the fresh-process tests check by importing
the core and the host in different orders. Offline: downloads are replaced
by an error naming the URL, or served from a pre-filled cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

import resnest_plugin
from resnest_plugin.models import ResNeSt as CoreResNeSt
from resnest_plugin.weights import (HOST_FREE_SOURCES, CheckpointSources, checkpoint_location,
                                    load_pretrained)

from checkpoint_helpers import captured_records, mmcls_layout, offline_hub_cache
from host_helpers import PluginResNeSt, host_mmcls_models, pretrained_plugin_backbone
from model_helpers import randomise

HOST_MODULE = f"resnest_plugin.hosts.{resnest_plugin.HOST}"
ZOO_NAME = "mmcls://resnest50"

# Run in a fresh interpreter: each step prints one outcome. Downloads raise
# "download <url>", so a host-resolved name shows the URL it points to.
_PRELUDE = f"""
import importlib, json, torch
torch.hub.download_url_to_file = lambda url, *a, **k: (_ for _ in ()).throw(RuntimeError("download " + url))
outcomes = []

def core():
    from resnest_plugin.models import ResNeSt
    try:
        ResNeSt(depth=50).init_weights({ZOO_NAME!r})
    except ValueError as error:
        outcomes.append("core refused: " + str(error))
    else:
        outcomes.append("core loaded")

def host():
    module = importlib.import_module({HOST_MODULE!r})
    if {resnest_plugin.HOST!r} == "mmpose0":
        model, args = module.ResNeSt(depth=50), ({ZOO_NAME!r},)
    else:
        model, args = module.ResNeSt(depth=50, init_cfg=dict(type="Pretrained", checkpoint={ZOO_NAME!r})), ()
    try:
        model.init_weights(*args)
    except RuntimeError as error:
        outcomes.append("host " + str(error))
"""
# Hide the installed mmpose from ``import resnest_plugin`` (it then imports the
# core alone, resnest_plugin.HOST is None), then show it again for the host import.
_CORE_ALONE = """
from importlib import metadata
real_version = metadata.version
def no_mmpose(name):
    if name == "mmpose":
        raise metadata.PackageNotFoundError(name)
    return real_version(name)
metadata.version = no_mmpose
import resnest_plugin
assert resnest_plugin.HOST is None, resnest_plugin.HOST
metadata.version = real_version
"""
#: Order -> (the steps, which class each outcome is of).
ORDERS = {
    "core-alone-then-host": (_CORE_ALONE + "core(); host(); core()", ["core", "host", "core"]),
    "host-then-core": ("host(); core()", ["host", "core"]),
    "package-then-both": ("import resnest_plugin; core(); host(); core()", ["core", "host", "core"]),
}


def _outcomes(steps: str, torch_home: Path) -> List[str]:
    code = _PRELUDE + steps + "\nprint(json.dumps(outcomes))"
    env = dict(os.environ, TORCH_HOME=str(torch_home))  # an empty cache: nothing is found there
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_import_order_changes_nothing_in_a_fresh_process(order: str, tmp_path: Path) -> None:
    steps, classes = ORDERS[order]
    url = host_mmcls_models()["resnest50"]
    outcomes = _outcomes(steps, tmp_path)
    assert [o.split(":")[0] if o.startswith("core") else o for o in outcomes] == [
        "core refused" if kind == "core" else f"host download {url}" for kind in classes], outcomes
    assert all(ZOO_NAME in o for o in outcomes if o.startswith("core refused")), outcomes


def test_core_class_is_host_free_and_says_what_a_zoo_name_needs() -> None:
    assert CoreResNeSt.checkpoint_sources is HOST_FREE_SOURCES
    assert PluginResNeSt.checkpoint_sources.host == resnest_plugin.HOST
    with pytest.raises(ValueError) as error:
        CoreResNeSt(depth=50).init_weights(ZOO_NAME)
    message = str(error.value)
    assert ZOO_NAME in message and "model-zoo tables" in message
    assert "resnest_plugin.ResNeSt" in message and "local path" in message


def test_host_class_resolves_mmcls_through_its_own_table() -> None:
    table = host_mmcls_models()
    sources = PluginResNeSt.checkpoint_sources
    for depth in (50, 101, 200, 269):
        assert checkpoint_location(f"mmcls://resnest{depth}", sources) == table[f"resnest{depth}"]
    with pytest.raises(ValueError, match=r"unknown model 'mmcls://resnest51'.*resnest101"):
        checkpoint_location("mmcls://resnest51", sources)


def test_host_class_loads_a_zoo_name_from_the_hub_cache_and_reports_on_the_host_logger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = randomise(CoreResNeSt(depth=50), seed=11)
    offline_hub_cache(monkeypatch, tmp_path, host_mmcls_models()["resnest50"],
                      mmcls_layout(source.state_dict()))
    host_logger = PluginResNeSt.checkpoint_sources.get_logger()
    with captured_records(host_logger) as records:
        model = pretrained_plugin_backbone(ZOO_NAME, depth=50)
    assert torch.equal(model.layer4[2].conv2.fc2.weight, source.layer4[2].conv2.fc2.weight)
    assert any("all keys and shapes match" in r.getMessage() and ZOO_NAME in r.getMessage()
               for r in records), [r.getMessage() for r in records]
    assert host_logger.name != "resnest_plugin"  # the host's (mmpose's / MMLogger), not the core's


def test_open_mmlab_names_resolve_against_the_tables_and_home_handed_over(tmp_path: Path) -> None:
    sources = CheckpointSources(
        host="test", zoo_tables={"open-mmlab": lambda: {"relative": "weights/r50.pth",
                                                        "remote": "https://example.org/r50.pth"}},
        zoo_home=lambda: str(tmp_path))
    assert checkpoint_location("open-mmlab://relative", sources) == str(tmp_path / "weights" / "r50.pth")
    assert checkpoint_location("openmmlab://remote", sources) == "https://example.org/r50.pth"
    with pytest.raises(ValueError,
                       match=r"cannot resolve 'mmcls://resnest50'.*host 'test'.*no 'mmcls' table"):
        checkpoint_location(ZOO_NAME, sources)
    with pytest.raises(FileNotFoundError, match="r50.pth"):
        load_pretrained(CoreResNeSt(depth=50), "open-mmlab://relative", sources=sources)
