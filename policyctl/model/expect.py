"""`expect` matching: a fixture's expectation is a subset of the decision."""

from __future__ import annotations

from typing import Any

from policyctl.model.schema import format_path


def mismatches(expect: Any, actual: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """Where `actual` differs from `expect`, as readable lines; empty when it matches.

    Objects match as subsets (every expected key present and matching); arrays
    and scalars must be equal. `1` and `1.0` are equal, `true` and `1` are not.
    """
    where = format_path(path) or "decision"
    if isinstance(expect, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expect.items():
            if key not in actual:
                out.append(f"{format_path((*path, key))}: expected {value!r}, missing")
            else:
                out.extend(mismatches(value, actual[key], (*path, key)))
        return out
    if isinstance(expect, list):
        if not isinstance(actual, list) or len(expect) != len(actual):
            return [f"{where}: expected {expect!r}, got {actual!r}"]
        out = []
        for i, (e, a) in enumerate(zip(expect, actual, strict=True)):
            out.extend(mismatches(e, a, (*path, i)))
        return out
    if isinstance(expect, bool) or isinstance(actual, bool):
        same = type(expect) is type(actual) and expect == actual
    else:
        same = expect == actual
    return [] if same else [f"{where}: expected {expect!r}, got {actual!r}"]
