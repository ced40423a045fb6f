"""What the weight handling needs from the installed MMPose generation, injected by its host.

The weight handling (:mod:`.weights`) resolves ``mmcls://`` /
``open-mmlab://`` names through OpenMMLab's model-zoo tables and reports on
the host's logger. Where those live differs by generation (mmcv 1.x
``mmcv.runner.checkpoint`` and ``get_root_logger``; mmengine
``mmengine.runner.checkpoint`` and ``MMLogger``), so the core never imports
them: the host module (:mod:`resnest_plugin.hosts.mmpose0` /
:mod:`~resnest_plugin.hosts.mmpose1`) installs a :class:`HostServices` on
import. Without a host the core still loads local files and URLs and logs
to the ``resnest_plugin`` logger; a model-zoo name then raises, saying why.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

__all__ = ["HostServices", "host_services", "set_host_services", "zoo_tables"]


def _no_zoo(scheme: str) -> Mapping[str, str]:
    raise ValueError(f"{scheme}:// names are resolved through OpenMMLab's model-zoo tables, which "
                     "need MMPose (0.x or 1.x) installed; pass a local path or an http(s):// URL")


def _no_home() -> str:
    raise ValueError("open-mmlab:// paths are relative to MMCV_HOME / MMENGINE_HOME, which need "
                     "MMPose (0.x or 1.x) installed")


@dataclass(frozen=True)
class HostServices:
    """The host's model-zoo tables and logger.

    Attributes:
        name: The host (``"mmpose0"``, ``"mmpose1"`` or ``"none"``).
        model_zoo: ``scheme -> {name: url}`` for ``"mmcls"`` and
            ``"open-mmlab"``; raises ``ValueError`` for other schemes.
        zoo_home: The folder relative ``open-mmlab://`` entries live in.
        logger: The logger load reports go to.
    """

    name: str
    model_zoo: Callable[[str], Mapping[str, str]]
    zoo_home: Callable[[], str]
    logger: Callable[[], logging.Logger]


_NO_HOST = HostServices("none", _no_zoo, _no_home, lambda: logging.getLogger("resnest_plugin"))
_current: Optional[HostServices] = None


def zoo_tables(mmcls: Callable[[], Mapping[str, str]],
               open_mmlab: Callable[[], Mapping[str, str]]) -> Callable[[str], Mapping[str, str]]:
    """A :attr:`HostServices.model_zoo` from the host's two table readers.

    Args:
        mmcls: Returns the ``mmcls://`` table (mmcv's / mmengine's ``get_mmcls_models``).
        open_mmlab: Returns the ``open-mmlab://`` table (``get_external_models``).
    """
    readers = {"mmcls": mmcls, "open-mmlab": open_mmlab}

    def model_zoo(scheme: str) -> Mapping[str, str]:
        if scheme not in readers:
            raise ValueError(f"model-zoo scheme {scheme!r} not understood: expected one of "
                             f"{sorted(readers)}")
        return readers[scheme]()

    return model_zoo


def set_host_services(services: HostServices) -> None:
    """Install the services of the host that imported the plugin.

    Args:
        services: The host's tables and logger.
    """
    global _current
    _current = services


def host_services() -> HostServices:
    """Return the installed host's services (the host-free defaults before any host)."""
    return _current or _NO_HOST
