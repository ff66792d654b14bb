"""Fault selectors: the `when` of a fault compiled to a predicate over one input."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from policyctl.model.values import tag
from policyctl.simulate.values import Path, SpecError, parse_path

OPERATORS = ("eq", "ne", "in", "not_in", "includes", "gt", "gte", "lt", "lte", "exists")
_COUNT = re.compile(r"^count\(\s*([^()\s]+)\s*\)$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:\.(?:[A-Za-z_][A-Za-z0-9_-]*|\d+))*$")
_MISSING: Any = object()

Test = Callable[[list[Any]], bool]
One = Callable[[Any], bool]
Predicate = Callable[[dict[str, Any]], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def collect(value: Any, path: Path) -> list[Any]:
    """Every value at `path`; a list on the way fans out, so `agents.role` is each agent's role."""
    out: list[Any] = []
    _collect(value, path, 0, out)
    return out


def _collect(value: Any, path: Path, i: int, out: list[Any]) -> None:
    n = len(path)
    while i < n:
        part = path[i]
        if isinstance(value, dict):
            key = str(part) if isinstance(part, int) else part
            if key not in value:
                return
            value = value[key]
        elif isinstance(value, list):
            if isinstance(part, int):
                if not -len(value) <= part < len(value):
                    return
                value = value[part]
            else:
                for item in value:
                    _collect(item, path, i, out)
                return
        else:
            return
        i += 1
    if isinstance(value, list):
        out.extend(value)
    else:
        out.append(value)


def _equals(arg: Any) -> One:
    if isinstance(arg, str):
        return lambda v: v == arg and type(v) is str
    if isinstance(arg, bool) or arg is None:
        return lambda v: v is arg
    if _number(arg):
        return lambda v: v == arg and _number(v)
    want = tag(arg)
    return lambda v: tag(v) == want


# A condition holds when "any" value at its path passes `one`, when "none" does (ne, not_in),
# or when the whole "list" of values passes `many` (includes, exists, counts).
Condition = tuple[str, One | None, Test | None]


def _operator(op: str, arg: Any, where: Path) -> Condition:
    if op in ("gt", "gte", "lt", "lte"):
        if not _number(arg):
            hint = " (write the number without quotes)" if isinstance(arg, str) and _numeric(arg) else ""
            raise SpecError(where, f"{op} compares numbers, got {arg!r}{hint}")
        x = float(arg)
        if op == "gt":
            return "any", lambda v: _number(v) and v > x, None
        if op == "gte":
            return "any", lambda v: _number(v) and v >= x, None
        if op == "lt":
            return "any", lambda v: _number(v) and v < x, None
        return "any", lambda v: _number(v) and v <= x, None
    if op in ("in", "not_in", "includes"):
        if not isinstance(arg, list) or not arg:
            raise SpecError(where, f"{op} takes a non-empty list, got {arg!r}")
        tags = frozenset(tag(a) for a in arg)
        if op == "includes":
            return "list", None, lambda vs: tags <= {tag(v) for v in vs}

        def member(v: Any) -> bool:
            return tag(v) in tags
        return ("any" if op == "in" else "none"), member, None
    if op == "exists":
        if not isinstance(arg, bool):
            raise SpecError(where, f"exists takes true or false, got {arg!r}")
        return "list", None, lambda vs: bool(vs) is arg
    if isinstance(arg, dict | list):
        raise SpecError(where, f"{op} compares with a single value, got {arg!r} (for a list of values use in)")
    return ("any" if op == "eq" else "none"), _equals(arg), None


def _as_list(condition: Condition) -> Test:
    mode, one, many = condition
    if mode == "list":
        assert many is not None
        return many
    assert one is not None
    if mode == "any":
        return lambda vs: any(one(v) for v in vs)
    return lambda vs: not any(one(v) for v in vs)


def _check(path: Path, condition: Condition, count: bool) -> Predicate:
    """One condition as a predicate; nested objects are walked directly, lists fan out."""
    mode, one, _ = condition
    if count:
        test = _as_list(condition)
        return lambda input: test([len(collect(input, path))])
    if mode == "list" or one is None:
        many = _as_list(condition)
        return lambda input: many(collect(input, path))
    generic = _as_list(condition)
    missing = mode == "none"
    negate = mode == "none"
    keys = tuple(str(p) if isinstance(p, int) else p for p in path)
    test_one = one

    def check(input: dict[str, Any]) -> bool:
        # The common case, a scalar under plain objects, without building a list.
        value: Any = input
        for key in keys:
            if type(value) is not dict:
                return generic(collect(input, path))
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return missing
        if type(value) is list:
            return generic(collect(input, path))
        return test_one(value) is not negate
    return check


def check_sent(target: str, known_paths: frozenset[str], where: Path, sender: str = "no traffic sends") -> None:
    """SpecError unless some traffic sends the field `target` (or fields under it); suggests a close one."""
    norm = ".".join(p for p in target.split(".") if not p.isdigit())
    if norm in known_paths or any(p.startswith(norm + ".") for p in known_paths):
        return
    close = difflib.get_close_matches(norm, sorted(known_paths), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise SpecError(where, f"{sender} the field {norm!r}; a typo? ({hint}fields sent: {', '.join(sorted(known_paths))})")


def input_path(text: Any, where: Path) -> Path:
    """A dotted input path such as `resource.id` (no count()), parsed; SpecError otherwise."""
    if not isinstance(text, str) or not _PATH.match(text):
        raise SpecError(where, f"{text!r} is not a dotted input path such as action.protocol or resource.id")
    return parse_path(text)


def compile_when(when: dict[str, Any], known_paths: frozenset[str] | None,
                 base: Path = ()) -> tuple[Predicate, list[str]]:
    """A predicate that holds when every condition holds, and the input paths it reads.

    Keys are dotted input paths (`action.protocol`, `agents.role`) or `count(path)`; a value is
    an equality, or a mapping of operators that must all hold. A path through a list holds
    when any element satisfies the condition (`ne` and `not_in`: when none does).
    """
    checks: list[Predicate] = []
    paths: list[str] = []
    for key, cond in when.items():
        where = (*base, str(key))
        if not isinstance(key, str):
            raise SpecError(where, f"{key!r} is not a dotted input path such as action.protocol")
        m = _COUNT.match(key)
        target = m.group(1) if m else key
        if not _PATH.match(target):
            raise SpecError(where, f"{key!r} is not a dotted input path such as action.protocol or count(agents)")
        if known_paths is not None:
            check_sent(target, known_paths, where)
        if isinstance(cond, dict):
            if not cond:
                raise SpecError(where, f"an empty condition; write a value or one of: {', '.join(OPERATORS)}")
            ops = list(cond.items())
        else:
            ops = [("eq", cond)]
        path = parse_path(target)
        for op, arg in ops:
            if op not in OPERATORS:
                raise SpecError(where, f"unknown operator {op!r} (use one of: {', '.join(OPERATORS)})")
            if m and op in ("includes", "exists"):
                raise SpecError(where, f"{op} does not apply to a count")
            checks.append(_check(path, _operator(op, arg, where), bool(m)))
        paths.append(target)

    if len(checks) == 1:
        return checks[0], paths

    def predicate(input: dict[str, Any]) -> bool:
        for check in checks:  # noqa: SIM110 - a plain loop is cheaper than all() over a generator, per event
            if not check(input):
                return False
        return True
    return predicate, paths
