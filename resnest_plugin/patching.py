"""The machinery of the hosts' version-gated compatibility fixes (no fix lives here).

Each host's compat module (:mod:`resnest_plugin.hosts.mmpose0.compat` for MMPose 0.x,
:mod:`resnest_plugin.hosts.mmpose1.compat` for 1.x) lists its
:class:`Patch` es; :func:`apply_patches` installs those the installed
versions need, at most once per process. Nothing on disk is edited: every
fix is an attribute set or an allow-list entry made at import time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

from packaging.version import Version

__all__ = ["Patch", "applied_names", "apply_patches", "release"]


def release(version: str) -> Version:
    """``Version`` of a version string without local / pre-release parts.

    ``2.14.1+cu130`` -> 2.14.1 and ``2.1.0.dev20230416`` -> 2.1.0: nightlies
    already carry the behaviour of the release they lead up to.

    Args:
        version: A PEP 440 version string.
    """
    return Version(Version(version).base_version)


@dataclass(frozen=True)
class Patch:
    """One fix of the installed stack.

    Attributes:
        name: Short identifier, listed by ``applied()``.
        issue: Upstream issue / pull request where the breakage is reported.
        needed: Returns True when the installed versions have the bug.
        install: Applies the fix; only called when ``needed()`` is True.
    """

    name: str
    issue: str
    needed: Callable[[], bool]
    install: Callable[[], None]


def apply_patches(patches: Sequence[Patch], applied: List[str]) -> Tuple[str, ...]:
    """Install every patch of ``patches`` that is needed and not yet in ``applied``.

    Args:
        patches: The host's patches, in order.
        applied: The host's record of applied names (appended to).

    Returns:
        Names of all patches of ``patches`` active in this process, in order.
    """
    for patch in patches:
        if patch.name not in applied and patch.needed():
            patch.install()
            applied.append(patch.name)
    return applied_names(patches, applied)


def applied_names(patches: Sequence[Patch], applied: Sequence[str]) -> Tuple[str, ...]:
    """Names of ``patches`` recorded in ``applied``, in ``patches`` order."""
    return tuple(p.name for p in patches if p.name in applied)
