"""Value semantics shared by the stages: equality as Rego sees it, and numbers as a reviewer reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def tag(value: Any) -> tuple[str, Any]:
    """A hashable, type-tagged form of a JSON value: equal tags are equal in Rego.

    `true` never equals `1` and `"22"` never equals `22` (Python would say the first
    pair is equal); `1` equals `1.0`; objects and arrays compare by their canonical JSON.
    """
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return ("x", json.dumps(value, sort_keys=True, default=str))


MISSING: Any = object()  # what a path that is not in the input holds: equal to no JSON value


def value_at(input: dict[str, Any], path: str) -> Any:
    """The value at a dotted input path, or MISSING."""
    node: Any = input
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def human(value: float) -> str:
    """2200240000 -> 2.2G: thresholds a reviewer reads at a glance."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(value) >= size:
            return f"{value / (1e3 if unit == 'k' else size):.3g}{unit}"
    return f"{value:g}"


def merge_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with a route's `params` merged in: objects merge key by key, anything else is replaced.

    Only the objects on the merged paths are copied; the rest is shared with `base`. This is
    what "the params merged into the input" means everywhere (the simulator's attempted input,
    the client's and the MCP proxy's routed input).
    """
    out = dict(base)
    for key, value in params.items():
        current = out.get(key)
        out[key] = merge_params(current, value) if isinstance(value, Mapping) and isinstance(current, Mapping) else value
    return out
