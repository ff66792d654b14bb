"""A draft: conditions, a remedy, the Rego module and fixtures that encode them, and its verification."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from policyctl.cluster.core import human
from policyctl.model.region import Region
from policyctl.model.values import tag


def value_at(input: dict[str, Any], path: str) -> Any:
    node: Any = input
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One test of an input: `field op value`. Fields are dotted input paths, `count(agents)` or `role`."""

    field: str
    op: str  # == != > <= has_role
    value: Any

    def holds(self, input: dict[str, Any]) -> bool:
        if self.field == "role":
            roles = {a.get("role") for a in input.get("agents") or [] if isinstance(a, dict)}
            return (self.value in roles) == (self.op == "has_role")
        got = len(input.get("agents") or []) if self.field == "count(agents)" else value_at(input, self.field)
        if self.op in ("==", "!="):
            same = got is not _MISSING and tag(got) == tag(self.value)
            return same if self.op == "==" else not same
        if got is _MISSING or isinstance(got, bool) or not isinstance(got, int | float):
            return False
        return got > self.value if self.op == ">" else got <= self.value

    def rego(self, var: str = "") -> list[str]:
        if self.field == "role":
            v = var or f"agent_{_ident(str(self.value))}"
            if self.op == "has_role":
                return [f"some {v} in input.agents", f"{v}.role == {json.dumps(self.value)}"]
            return [f"not any_role({json.dumps(self.value)})"]
        ref = "count(input.agents)" if self.field == "count(agents)" else f"input.{self.field}"
        if self.op == "!=":
            parts = json.dumps(self.field.split("."))
            return [f"object.get(input, {parts}, null) != {json.dumps(self.value)}"]
        return [f"{ref} {self.op} {_literal(self.value)}"]

    def words(self) -> str:
        parts = self.field.split(".")
        # "kind", "type" and "id" alone do not say whose: keep the parent ("resource kind")
        name = " ".join(parts[-2:] if len(parts) > 1 and parts[-1] in ("kind", "type", "id") else parts[-1:]).replace("_", " ")
        if self.field == "kind" and self.op == "==":
            return f"an {self.value}" if str(self.value)[:1] in "aeiou" else f"a {self.value}"
        if self.field == "role":
            return f"an agent with role {self.value}" if self.op == "has_role" else f"no agent with role {self.value}"
        if self.field == "count(agents)":
            return f"more than {self.value} agents" if self.op == ">" else f"at most {self.value} agents"
        if self.op == "==":
            return f"{name} {self.value}"
        if self.op == "!=":
            return f"{name} not {self.value}"
        return f"{name} {'above' if self.op == '>' else 'at most'} {human(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value, "rego": self.rego(), "words": self.words()}


def _literal(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _ident(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def nice_threshold(value: float, below: list[float], above: list[float], *, failures_above: bool = True) -> float:
    """The roundest bound t with every `below` value at or under it and every `above` value over it,
    rounded toward covering the failures, never away from them.

    The data only says the fault's true bound lies somewhere in [max(below), min(above)).
    Real bounds are round (2 GiB, 8 MB, 100 rows) and the failures nearest to them are the
    rarest in a sample, so a bound drawn at the failures' edge leaves the true failures
    between the two uncovered. With failures above (`x > t`) the smallest round number in
    the gap is taken; with failures below (`x <= t`) the largest.
    """
    lo = max(below) if below else -math.inf
    hi = min(above) if above else math.inf
    if lo >= hi:
        return value
    if not math.isfinite(lo) or not math.isfinite(hi):
        edge = hi if failures_above else lo
        if not math.isfinite(edge):
            return value
        # no ok value on the far side: the edge of the failures themselves, rounded outward
        for digits in range(1, 10):
            c = _floor(edge, digits) if failures_above else _ceil(edge, digits)
            if lo <= c < hi:
                return c
        return value
    found = value
    for digits in range(1, 16):
        c = _ceil(lo, digits) if failures_above else _floor(hi, digits)
        if not failures_above and c >= hi:
            c = _step_down(hi, digits)
        if lo <= c < hi:
            found = c
            break
    # Limits in software are as often binary as decimal (2 GiB, 8 MiB, 64 KiB): a power of two in
    # the gap is as round as the decimal found, and the one nearer the ok side covers more.
    powers = [float(2**n) for n in range(4, 64) if lo <= 2**n < hi]
    candidates = [found, *powers] if lo <= found < hi else powers
    if not candidates:
        return value
    return min(candidates) if failures_above else max(candidates)


def _to_digits(x: float, digits: int, how: Any) -> float:
    """x rounded by `how` (math.ceil or math.floor) to `digits` significant digits, exactly for integers."""
    if x == 0 or not math.isfinite(x):
        return x
    e = digits - 1 - math.floor(math.log10(abs(x)))
    try:
        if e >= 0:
            return float(how(x * 10**e)) / 10**e
        unit = 10 ** (-e)
        return float(how(x / unit) * unit)
    except OverflowError:  # subnormal or huge magnitudes: leave the value as it is
        return x


def _ceil(x: float, digits: int) -> float:
    return _to_digits(x, digits, math.ceil)


def _floor(x: float, digits: int) -> float:
    return _to_digits(x, digits, math.floor)


def _step_down(x: float, digits: int) -> float:
    return _to_digits(x, digits, lambda v: math.ceil(v) - 1)


def region_metadata(region: Region) -> list[str]:
    """METADATA lines for custom.region (JSON flow style, which is YAML): the failure region the rule
    answers, so every replay tells its in-region changes from collateral the same way."""
    if not region.tests:
        return []
    return ["#   region:"] + [f"#     - {json.dumps(t.to_dict(), sort_keys=True)}" for t in region.tests]


def with_region(module_text: str, region: Region) -> str:
    """A drafted module with its METADATA's custom.region set to `region` (replacing one it had)."""
    lines = module_text.split("\n")
    out: list[str] = []
    skipping = False
    for line in lines:
        if skipping:
            if line.startswith("#     - ") or line.startswith("#       "):
                continue
            skipping = False
        if line.strip() == "#   region:":
            skipping = True
            continue
        out.append(line)
        if line.rstrip() == "# custom:":
            out.extend(region_metadata(region))
    return "\n".join(out)


@dataclass
class Remedy:
    action: str  # route | arbitrate | deny
    params: dict[str, Any]
    why: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Draft:
    """One drafted rule module for one cluster, verified or rejected with reasons."""

    name: str
    fingerprint: str
    title: str
    rule_id: str
    bodies: list[list[Condition]]
    remedy: Remedy
    message: str
    description: str
    module_path: str
    module_text: str
    fixtures_path: str
    fixtures: list[dict[str, Any]]
    drafter: str
    verification: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    reasons: list[str] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)
    # the cluster's failure region (from its explanation, not from this rule), written to METADATA
    region: Region = field(default_factory=Region)
    # every candidate the drafter verified for this cluster, in order, with why each lost
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def conditions_in_words(self) -> list[str]:
        return [" and ".join(c.words() for c in body) for body in self.bodies]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "fingerprint": self.fingerprint, "title": self.title, "rule_id": self.rule_id,
            "drafter": self.drafter, "verified": self.verified, "reasons": self.reasons,
            "conditions": [[c.to_dict() for c in body] for body in self.bodies],
            "conditions_in_words": self.conditions_in_words(),
            "remedy": {"action": self.remedy.action, "params": self.remedy.params, "why": self.remedy.why,
                       "evidence": self.remedy.evidence},
            "message": self.message, "module_path": self.module_path, "module": self.module_text,
            "fixtures_path": self.fixtures_path, "fixtures": len(self.fixtures), "verification": self.verification,
            "region": self.region.to_list(), "attempts": self.attempts,
        }
