"""A draft: conditions, a remedy, the Rego module and fixtures that encode them, and its verification. No I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from policyctl.model.cluster import Cluster
from policyctl.model.region import Region
from policyctl.model.values import MISSING, human, tag, value_at


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
            same = got is not MISSING and tag(got) == tag(self.value)
            return same if self.op == "==" else not same
        if got is MISSING or isinstance(got, bool) or not isinstance(got, int | float):
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
        if self.op in (">", "<=") and self.field != "count(agents)":
            # engines order values of different types differently (rego-cpp: null > 2000 is true):
            # the guard makes the rule hold only where `holds` does, for numbers, on every engine
            return [f"is_number({ref})", f"{ref} {self.op} {_literal(self.value)}"]
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
    cluster: Cluster = field(kw_only=True)  # the cluster it answers
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
