"""Which MMPose generation hosts the plugin, and the one-line error for the wrong one.

The architecture and the weight formats (:mod:`resnest_plugin.models`) know
nothing of MMPose. What differs between MMPose 0.x (mmcv 1.x registries,
a bare tensor for one ``out_indices``) and MMPose 1.x (mmengine registries,
``init_cfg``, always a tuple) lives in one small module per host:
:mod:`resnest_plugin.hosts.mmpose0` and :mod:`resnest_plugin.hosts.mmpose1`.
``import resnest_plugin`` imports the one that matches the installed
``mmpose`` (read from its distribution metadata, so nothing heavy is
imported to decide) and never raises; a config imports its host module
explicitly, so a config of the other generation fails at once with
:class:`StackMismatchError`, naming the stack it needs and how to set it up.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from packaging.version import Version

__all__ = ["HOSTS", "child_registry", "register_once", "PIP_INSTALLS", "SCOPE", "SETUP_COMMANDS", "StackMismatchError",
           "installed_from_clone", "installed_host", "require_host", "stack_advice"]

#: The scope of the plugin's child registries: configs say ``type='resnest_plugin.ResNeSt'``.
SCOPE = "resnest_plugin"

#: Host name -> the MMPose release line it serves.
HOSTS = {"mmpose0": "MMPose 0.x (mmpose 0.29.0, mmcv-full 1.7.0)",
         "mmpose1": "MMPose 1.x (mmpose 1.3.2, mmengine 0.10.7, mmcv 2.1.0)"}
#: Host name -> the command that sets its stack up, and the interpreter it leaves.
SETUP_COMMANDS = {"mmpose0": ("make setup", ".venv/bin/python"),
                  "mmpose1": ("make setup STACK=mmpose1", ".venv-mmpose1/bin/python")}
#: Host name -> what a pip user installs into their own environment (docs/installation.md).
PIP_INSTALLS = {
    "mmpose0": ("pip install mmpose==0.29.0 mmdet==2.28.2 and mmcv-full==1.7.0 built for your torch "
                "(torch >= 2.14 needs its C++ standard patched)"),
    "mmpose1": ("pip install mmengine==0.10.7 mmpose==1.3.2 mmdet==3.3.0 and mmcv==2.1.0 built for "
                "your torch (torch >= 2.14 needs its C++ standard patched)"),
}
_INSTALL_DOC = "docs/installation.md of resnest_plugin"


class StackMismatchError(RuntimeError):
    """A config or module of one MMPose generation was used on the other (or on none)."""


def installed_mmpose_version() -> Optional[Version]:
    """Return the installed ``mmpose`` distribution's version, or ``None`` if absent."""
    try:
        return Version(metadata.version("mmpose"))
    except metadata.PackageNotFoundError:
        return None


def installed_host() -> Optional[str]:
    """Return ``"mmpose0"`` or ``"mmpose1"`` for the installed MMPose, ``None`` without one."""
    version = installed_mmpose_version()
    if version is None:
        return None
    return "mmpose0" if version.major == 0 else "mmpose1"


def installed_from_clone() -> bool:
    """Whether this package runs from a source checkout (editable install) rather than a wheel.

    A checkout has ``scripts/setup_env.sh`` beside the package; an installed
    wheel (site-packages, a ``--target`` folder) does not.
    """
    return (Path(__file__).resolve().parents[2] / "scripts" / "setup_env.sh").is_file()


def stack_advice(host: str) -> str:
    """What to run to get ``host``'s stack: the clone's set-up command, or the pip route.

    Args:
        host: ``"mmpose0"`` or ``"mmpose1"``.

    Returns:
        ``"set that stack up with `make setup` and run with .venv/bin/python"``
        inside a checkout; the versions to pip-install (and the docs page)
        for a wheel install, where there is no Makefile.
    """
    if installed_from_clone():
        command, python = SETUP_COMMANDS[host]
        return f"set that stack up with `{command}` and run with {python}"
    return f"install it into this environment: {PIP_INSTALLS[host]}; see {_INSTALL_DOC}"


def require_host(host: str, what: str) -> None:
    """Raise unless ``host`` is the installed MMPose generation.

    Args:
        host: ``"mmpose0"`` or ``"mmpose1"``.
        what: What needs it, for the message (e.g. ``"this config"``).

    Raises:
        ValueError: ``host`` is not a known host name.
        StackMismatchError: Another generation (or no MMPose) is installed;
            the one-line message names the stack needed and its set-up command.
    """
    if host not in HOSTS:
        raise ValueError(f"host {host!r} not understood: expected one of {sorted(HOSTS)}")
    installed = installed_host()
    if installed == host:
        return
    version = installed_mmpose_version()
    have = f"mmpose {version} is installed" if version else "mmpose is not installed"
    raise StackMismatchError(f"{what} needs {HOSTS[host]}, but {have} in this interpreter: "
                             f"{stack_advice(host)}")


_Registered = TypeVar("_Registered")


def child_registry(parent: Any, make: Callable[..., Any]) -> Any:
    """Return the ``resnest_plugin``-scoped child of one of MMPose's registries, creating it once.

    Both mmcv 1.x and mmengine assert that a scope is added to a parent only
    once, so a second creation (``importlib.reload`` of a host) reuses the
    existing child. The registry class differs per generation: the host
    passes its own constructor.

    Args:
        parent: An MMPose registry (``MODELS``, ``DATASETS``) of the host's generation.
        make: Builds the child: ``make(name, parent=..., scope=...)``, e.g.
            ``mmcv.utils.Registry`` or a ``functools.partial`` of mmengine's
            ``Registry`` with its ``locations``.

    Returns:
        The child registry, named like its parent.
    """
    existing = parent.children.get(SCOPE)
    if existing is not None:
        return existing
    return make(parent.name, parent=parent, scope=SCOPE)


def register_once(registry: Any, name: str, module: _Registered) -> _Registered:
    """Register ``module`` under ``name`` unless the registry already holds that name.

    Never ``force=True``: after ``importlib.reload`` of a host the registry
    keeps its first class, and the host module's name must follow it so that
    ``resnest_plugin.ResNeSt`` stays the class configs build.

    Args:
        registry: The host's scoped child registry (mmcv's or mmengine's).
        name: The name configs use after the ``resnest_plugin.`` scope.
        module: The class to register.

    Returns:
        The class the registry holds under ``name`` (``module`` on first registration).
    """
    if name not in registry.module_dict:
        registry.register_module(name=name, module=module)
    return registry.module_dict[name]
