"""Bounds on what reaches the Rego engine: deep nesting crashes it, huge inputs stall it."""

from __future__ import annotations

from typing import Any

from policyctl.errors import InputLimitError

MAX_INPUT_BYTES = 256 * 1024
MAX_INPUT_DEPTH = 32
MAX_INPUT_NODES = 20_000


def check_input_shape(value: Any, *, max_depth: int = MAX_INPUT_DEPTH, max_nodes: int = MAX_INPUT_NODES) -> None:
    """Refuse values nested deeper than max_depth or with more than max_nodes elements.

    The walk recurses only into containers and stops past max_depth, so a hostile
    100,000-level input cannot exhaust the Python stack; it runs on every decision, so
    scalars are counted with their parent rather than visited.
    """
    if isinstance(value, dict | list) and _count(value, 1, max_depth) + 1 > max_nodes:
        raise InputLimitError(f"input has more than {max_nodes} values; split it or trim it")


def _count(item: dict[str, Any] | list[Any], depth: int, max_depth: int) -> int:
    if depth > max_depth:
        raise InputLimitError(f"input is nested deeper than {max_depth} levels")
    children = item.values() if isinstance(item, dict) else item
    n = len(children)
    for v in children:
        if isinstance(v, dict | list):
            n += _count(v, depth + 1, max_depth)
    return n


def check_input_size(text: bytes | str, *, max_bytes: int = MAX_INPUT_BYTES) -> None:
    if len(text) > max_bytes:
        raise InputLimitError(f"input is {len(text)} bytes; the limit is {max_bytes}")
