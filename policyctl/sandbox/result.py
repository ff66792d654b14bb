"""What a script may hand back: plain JSON data (checked by exact type) that is a valid decision."""

from __future__ import annotations

import math
from typing import Any

from policyctl.sandbox.errors import InvalidDecision, SandboxLimitError
from policyctl.sandbox.limits import MAX_RESULT_CHARS, MAX_RESULT_DEPTH, MAX_RESULT_NODES

# The same list as policyctl.model.records.ACTIONS; repeated so the worker does not import
# the model package (and jsonschema with it) just for five words. A test keeps them equal.
ACTIONS = ("allow", "deny", "route", "arbitrate", "negotiate")
DECISION_KEYS = frozenset({"action", "params"})
INT_BOUND = 2**63


def check_plain(value: Any, *, max_depth: int = MAX_RESULT_DEPTH, max_nodes: int = MAX_RESULT_NODES,
                max_chars: int = MAX_RESULT_CHARS, file: str | None = None) -> None:
    """Refuse anything but dict/list/str/int/float/bool/None, by exact type, bounded, without cycles.

    Exact types, because a subclass (or any other object) carries the script's own code:
    its __eq__, __hash__ or __str__ would run later in the gateway, outside every limit.
    Nothing of `value` is called here: only type(), len() on exact builtins, and iteration
    of exact dicts and lists.
    """
    budget = {"nodes": 0, "chars": 0}
    on_path: set[int] = set()

    def walk(v: Any, depth: int, path: str) -> None:
        budget["nodes"] += 1
        if budget["nodes"] > max_nodes:
            raise SandboxLimitError(f"the result has more than {max_nodes} values", file=file)
        t = type(v)
        if v is None or t is bool:
            return
        if t is int:
            if not -INT_BOUND <= v < INT_BOUND:
                raise SandboxLimitError(f"{path}: integer does not fit in 64 bits", file=file)
            return
        if t is float:
            if not math.isfinite(v):
                raise InvalidDecision(f"{path}: {v!r} is not a JSON number", file=file)
            return
        if t is str:
            budget["chars"] += len(v)
            if budget["chars"] > max_chars:
                raise SandboxLimitError(f"the result holds more than {max_chars} characters of text", file=file)
            return
        if t is not dict and t is not list:
            hint = " (use a list)" if t is tuple else ""
            raise InvalidDecision(f"{path}: a {t.__name__} is not plain JSON data{hint}; "
                                  "return dicts, lists, strings, numbers, booleans and None", file=file)
        if depth >= max_depth:
            raise SandboxLimitError(f"{path}: the result is nested deeper than {max_depth} levels", file=file)
        if id(v) in on_path:
            raise InvalidDecision(f"{path}: the result contains a cycle", file=file)
        on_path.add(id(v))
        if t is dict:
            for key, item in v.items():
                if type(key) is not str:
                    raise InvalidDecision(f"{path}: key {_short(key)} is not a string", file=file)
                budget["chars"] += len(key)
                walk(item, depth + 1, f"{path}.{key}")
        else:
            for i, item in enumerate(v):
                walk(item, depth + 1, f"{path}[{i}]")
        on_path.discard(id(v))

    walk(value, 0, "result")


def check_decision(result: Any, input: dict[str, Any], *, file: str | None = None) -> dict[str, Any] | None:
    """The script's answer as a decision `{"action", "params"}`, or None for no opinion.

    Raises InvalidDecision naming the field: an unknown action, a route without params,
    an arbitration whose winner is not one of the input's agents.
    """
    if result is None:
        return None
    # Again on this side of the pipe: what a worker sends is bounded like what a script returns.
    check_plain(result, file=file)
    if type(result) is not dict:
        raise InvalidDecision(f"decide() returned a {type(result).__name__}; return a dict "
                              "like {'action': 'allow'} or None for no opinion", file=file)
    unknown = sorted(set(result) - DECISION_KEYS)
    if unknown:
        raise InvalidDecision(f"result.{unknown[0]}: unknown key; a decision has only "
                              "'action' and 'params'", file=file)
    action = result.get("action")
    if action not in ACTIONS:
        raise InvalidDecision(f"result.action: {_short(action)} is not one of {', '.join(ACTIONS)}", file=file)
    params = result.get("params", {})
    if type(params) is not dict:
        raise InvalidDecision(f"result.params: expected a dict, got {type(params).__name__}", file=file)
    if action == "route" and not params:
        raise InvalidDecision("result.params: a route needs params (what to change, e.g. "
                              "{'action': {'protocol': 'sftp'}})", file=file)
    if action == "arbitrate":
        agents = input.get("agents")
        ids = [a.get("id") for a in agents if isinstance(a, dict)] if isinstance(agents, list) else []
        winner = params.get("winner")
        if type(winner) is not str or winner not in ids:
            raise InvalidDecision(f"result.params.winner: {_short(winner)} is not one of the input's "
                                  f"agents ({', '.join(map(str, ids)) or 'none'})", file=file)
        if "order" in params:
            order = params["order"]
            if type(order) is not list or any(type(x) is not str or x not in ids for x in order):
                raise InvalidDecision("result.params.order: expected a list of the input's agent ids", file=file)
            if len(set(order)) != len(order):
                raise InvalidDecision("result.params.order: an agent appears twice", file=file)
    return {"action": action, "params": params}


def _short(value: Any) -> str:
    text = repr(value) if type(value) in (str, int, float, bool, type(None)) else f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."
