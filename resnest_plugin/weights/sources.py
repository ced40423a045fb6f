"""Where a checkpoint name points: a local file, a URL, or an OpenMMLab model-zoo entry.

``mmcls://NAME`` and ``open-mmlab://NAME`` are looked up in OpenMMLab's
model-zoo tables, which live in the host's packages (mmcv 1.x
``mmcv.runner.checkpoint``, mmengine ``mmengine.runner.checkpoint``), and
load reports go to the host's logger. The weight handling imports neither:
each host's registered backbone class carries a :class:`CheckpointSources`
(its ``checkpoint_sources`` class attribute) and the loader takes it from
there, explicitly. The core class carries :data:`HOST_FREE_SOURCES`: local
files and URLs load, reports go to the ``resnest_plugin`` logger, and a
model-zoo name raises, naming it and what it needs. No module global is
ever set, so what a name resolves to never depends on import order.

Provenance: resolution follows mmcv 1.7 ``mmcv/runner/checkpoint.py``
(``load_from_mmcls``, ``load_from_openmmlab``, ``load_from_http``) and
mmengine 0.10 ``mmengine/runner/checkpoint.py`` (same functions); URLs are
cached where ``torch.hub.load_state_dict_from_url`` caches them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple
from urllib.parse import urlparse

import torch

__all__ = ["CheckpointSources", "HOST_FREE_SOURCES", "ZOO_SCHEMES", "checkpoint_location",
           "plugin_logger", "resolve_checkpoint"]

#: Checkpoint-name prefix -> the model-zoo table it is looked up in
#: (``openmmlab://`` is mmcv's / mmengine's alias of ``open-mmlab://``).
ZOO_SCHEMES = {"mmcls://": "mmcls", "open-mmlab://": "open-mmlab", "openmmlab://": "open-mmlab"}


def plugin_logger() -> logging.Logger:
    """The ``resnest_plugin`` logger: where load reports go without a host."""
    return logging.getLogger("resnest_plugin")


@dataclass(frozen=True)
class CheckpointSources:
    """A host's model-zoo tables, zoo home and logger, as the loader needs them.

    Attributes:
        host: Who supplies them (``"mmpose0"``, ``"mmpose1"``; ``"none"`` for
            the host-free default), for messages.
        zoo_tables: Table name (``"mmcls"``, ``"open-mmlab"``) -> a function
            returning that table, ``{name: url or path}`` (mmcv's / mmengine's
            ``get_mmcls_models`` / ``get_external_models``). Read on use,
            not at import. Empty: model-zoo names are refused.
        zoo_home: Returns the folder that relative ``open-mmlab://`` entries
            are under (``MMCV_HOME`` / ``MMENGINE_HOME``); ``None`` without a host.
        get_logger: Returns the logger load reports go to.
    """

    host: str = "none"
    zoo_tables: Mapping[str, Callable[[], Mapping[str, str]]] = field(default_factory=dict)
    zoo_home: Optional[Callable[[], str]] = None
    get_logger: Callable[[], logging.Logger] = plugin_logger


#: Local files and URLs only; reports to the ``resnest_plugin`` logger.
HOST_FREE_SOURCES = CheckpointSources()


def _zoo_entry(checkpoint: str, sources: CheckpointSources) -> Optional[Tuple[str, str]]:
    """``(table name, entry)`` of a model-zoo name, ``None`` for other names.

    Raises:
        ValueError: If ``sources`` has no such table or the table no such name.
    """
    prefix = next((prefix for prefix in ZOO_SCHEMES if checkpoint.startswith(prefix)), None)
    if prefix is None:
        return None
    table, name = ZOO_SCHEMES[prefix], checkpoint[len(prefix):]
    if table not in sources.zoo_tables:
        raise ValueError(
            f"cannot resolve {checkpoint!r}: {prefix} names are looked up in OpenMMLab's model-zoo "
            f"tables, which an MMPose host hands over, and this backbone's checkpoint_sources (host "
            f"{sources.host!r}) have no {table!r} table. "
            "Build it through the installed MMPose (type='resnest_plugin.ResNeSt' in a config, or "
            "resnest_plugin.ResNeSt, with mmpose 0.x or 1.x installed), or pass a local path or an "
            "http(s):// URL")
    urls = sources.zoo_tables[table]()
    if name not in urls:
        known = sorted(key for key in urls if "resnest" in key)
        raise ValueError(f"unknown model {checkpoint!r}: the {sources.host} host's {prefix} table has "
                         f"no {name!r} (ResNeSt entries: {known})")
    return table, urls[name]


def checkpoint_location(checkpoint: str, sources: CheckpointSources = HOST_FREE_SOURCES) -> str:
    """Return the URL or local path a checkpoint name stands for, without downloading.

    Args:
        checkpoint: Local path, ``http(s)://`` URL, ``mmcls://NAME`` or
            ``open-mmlab://NAME``.
        sources: The host's tables (the backbone's ``checkpoint_sources``).

    Returns:
        An ``http(s)://`` URL or a local path (not checked to exist).

    Raises:
        ValueError: For an unknown ``scheme://``, a model-zoo name ``sources``
            cannot resolve, or one its table lacks.
    """
    entry = _zoo_entry(checkpoint, sources)
    if entry is not None:
        table, location = entry
        if table == "open-mmlab" and not location.startswith(("http://", "https://")):
            # mmcv / mmengine: a relative entry is a path under their home folder.
            if sources.zoo_home is None:
                raise ValueError(f"cannot resolve {checkpoint!r}: its entry {location!r} is relative "
                                 f"to a zoo home folder, which the {sources.host} host does not give")
            return os.path.join(sources.zoo_home(), location)
        return location
    if checkpoint.startswith(("http://", "https://")):
        return checkpoint
    if "://" in checkpoint:
        raise ValueError(
            f"unsupported checkpoint scheme in {checkpoint!r}: expected a local path, an http(s):// URL, "
            "mmcls://NAME or open-mmlab://NAME")
    return str(Path(checkpoint).expanduser())


def resolve_checkpoint(checkpoint: str, sources: CheckpointSources = HOST_FREE_SOURCES) -> Path:
    """Turn a checkpoint name into a local file, downloading URLs once.

    URLs are cached in ``<torch.hub.get_dir()>/checkpoints`` - the folder
    mmcv and torch.hub use - so a file downloaded by either is reused. In
    distributed runs rank 0 downloads while the others wait (mmcv's
    ``load_from_http``).

    Args:
        checkpoint: Local path, ``http(s)://`` URL, ``mmcls://NAME`` or
            ``open-mmlab://NAME``.
        sources: The host's tables (the backbone's ``checkpoint_sources``).

    Returns:
        Path of the local file.

    Raises:
        ValueError: See :func:`checkpoint_location`.
        FileNotFoundError: If a local path does not exist.
    """
    location = checkpoint_location(checkpoint, sources)
    if location.startswith(("http://", "https://")):
        return _download(location)
    path = Path(location)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    return path


def _dist_info() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` outside one.

    What mmcv's and mmengine's ``get_dist_info`` return, read from torch directly.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _download(url: str) -> Path:
    # Same cache file as mmcv's load_url / torch.hub.load_state_dict_from_url.
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    rank, world_size = _dist_info()
    if rank == 0 and not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    if world_size > 1:
        torch.distributed.barrier()
    if not cached.is_file():
        raise FileNotFoundError(f"download of {url!r} did not produce {str(cached)!r}")
    return cached
