"""A failure region: the inputs that look like a cluster's failures on everything that explains them.

A fault that fires nine times in ten leaves "lucky" successes inside its own region, and
a rule that prevents the fault changes them by design. So every replay (the drafter's
verification, `policyctl shadow`, CI, `pr merge`, the PR body) counts a changed success
inside the region of the rule that changed it as `in_region`, apart from `collateral`.
The region comes from the clustering's explanation, never from the drafted rule itself,
and travels with the rule in its METADATA (`custom.region`), so each of those replays
computes the same figures from the same definition. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policyctl.errors import ValidationError
from policyctl.model.cluster import Cluster
from policyctl.model.values import MISSING, tag, value_at

OPS = ("==", "has_role", "roles_include", "in", ">", ">=", "<", "<=")
STRONG_SHARE = 0.8  # a value held by at least this share of a cluster's failures explains it


def _agents(input: dict[str, Any]) -> list[dict[str, Any]]:
    agents = input.get("agents")
    return [a for a in agents if isinstance(a, dict)] if isinstance(agents, list) else []


def field_value(input: dict[str, Any], path: str) -> Any:
    """The value at a dotted input path (MISSING if none); `count(agents)` is the number of agents."""
    if path == "count(agents)":
        return len(_agents(input))
    return value_at(input, path)


@dataclass(frozen=True)
class RegionTest:
    """One test of an input: `field op value`; `role` tests look at every agent."""

    field: str
    op: str
    value: Any

    def holds(self, input: dict[str, Any]) -> bool:
        if self.op in ("has_role", "roles_include"):
            roles = {a.get("role") for a in _agents(input)}
            wanted = self.value if isinstance(self.value, list) else [self.value]
            return all(r in roles for r in wanted)
        got = field_value(input, self.field)
        if got is MISSING:
            return False
        if self.op == "==":
            return bool(tag(got) == tag(self.value))
        if self.op == "in":
            return any(tag(got) == tag(v) for v in self.value)
        if isinstance(got, bool) or not isinstance(got, int | float):
            return False
        v = float(self.value)
        return {">": got > v, ">=": got >= v, "<": got < v, "<=": got <= v}[self.op]

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value}


@dataclass(frozen=True)
class Region:
    """A conjunction of tests; an empty region contains nothing."""

    tests: tuple[RegionTest, ...] = ()

    def contains(self, input: Any) -> bool:
        return bool(self.tests) and isinstance(input, dict) and all(t.holds(input) for t in self.tests)

    def to_list(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.tests]

    def words(self) -> str:
        parts = []
        for t in self.tests:
            if t.op in ("has_role", "roles_include"):
                roles = t.value if isinstance(t.value, list) else [t.value]
                parts.append("agents with roles " + " and ".join(map(str, roles)))
            elif t.op == "in":
                parts.append(f"{t.field} in {', '.join(map(str, t.value))}")
            else:
                parts.append(f"{t.field} {t.op} {t.value}")
        return " and ".join(parts) or "(empty)"

    @classmethod
    def from_list(cls, items: Any, *, where: str = "custom.region") -> Region:
        """Parse METADATA's `custom.region`; a bad entry is a ValidationError naming it."""
        if not isinstance(items, list):
            raise ValidationError("expected a list of {field, op, value}", path=where)
        tests = []
        for i, item in enumerate(items):
            path = f"{where}[{i}]"
            if not isinstance(item, dict) or set(item) - {"field", "op", "value"}:
                raise ValidationError("expected {field, op, value}", path=path)
            op = item.get("op")
            if op not in OPS:
                raise ValidationError(f"op {op!r} is not one of: {', '.join(OPS)}", path=f"{path}.op")
            if not isinstance(item.get("field"), str) or not item["field"]:
                raise ValidationError("expected a dotted input path", path=f"{path}.field")
            value = item.get("value")
            if op in (">", ">=", "<", "<=") and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValidationError(f"{op} needs a number, got {value!r}", path=f"{path}.value")
            if op == "in" and not isinstance(value, list):
                raise ValidationError("in needs a list", path=f"{path}.value")
            tests.append(RegionTest(item["field"], op, value))
        return cls(tuple(tests))


def region_of_cluster(cluster: Cluster) -> Region:
    """The region a cluster's explanation describes: its deadlock cycle, or its strong fields and bounds."""
    cycle = cluster.deadlock
    if cycle:
        tests = [RegionTest("role", "roles_include", sorted(cycle.roles))]
        if cycle.resource_kinds:
            tests.append(RegionTest("resource.kind", "in", list(cycle.resource_kinds)))
        return Region(tuple(tests))
    tests = []
    for c in cluster.distinguishing:
        if c.share < STRONG_SHARE:
            continue
        if c.field == "role":
            tests.append(RegionTest("role", "has_role", c.value))
        else:
            tests.append(RegionTest(c.field, "==", c.value))
    for n in cluster.numeric:
        tests.append(RegionTest(n.field, ">=" if n.direction == ">" else "<=", n.threshold))
    return Region(tuple(tests))
