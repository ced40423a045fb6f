"""Flattening of resolved configs, for the config-diff tests of both stacks."""
from __future__ import annotations

from typing import Any, Iterator, Tuple

__all__ = ["flatten"]


def flatten(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """Yield ``(dotted.key, leaf)`` for every leaf of nested dicts / lists / tuples."""
    if isinstance(node, dict):
        if not node:
            yield prefix, {}
        for key, value in node.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        if not node:
            yield prefix, type(node)()
        for index, value in enumerate(node):
            yield from flatten(value, f"{prefix}.{index}")
    else:
        yield prefix, node
