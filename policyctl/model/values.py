"""Value semantics shared by the stages: equality as Rego sees it."""

from __future__ import annotations

import json
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
