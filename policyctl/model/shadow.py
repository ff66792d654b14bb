"""The shadow report: totals, transition matrices per rule and per fixture file, worst examples. No I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from policyctl.errors import Problem

ERROR = "ERROR"
MAX_EXAMPLES = 5
BLAST_TOP = 10


def transition(base: str, cand: str) -> str:
    return f"{base}→{cand}"


@dataclass
class Example:
    """One record worth a reviewer's eye, with what each revision decided."""

    kind: str  # failing_fixture | collateral | exposed | prevented
    ref: str   # fixture id or event id
    where: str  # file:line
    input: dict[str, Any]
    base: dict[str, Any]
    candidate: dict[str, Any]
    detail: list[str] = field(default_factory=list)
    rank: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "where": self.where, "input": self.input,
                "base": _brief(self.base), "candidate": _brief(self.candidate), "detail": self.detail}


def _brief(decision: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: decision.get(k) for k in ("action", "params", "source") if k in decision}
    if decision.get("reasons"):
        out["rules"] = [r.get("rule") for r in decision["reasons"]]
    if decision.get("fired"):
        out["fired"] = decision["fired"]
    if decision.get("error"):
        out["error"] = decision["error"]
    return out


@dataclass
class Partial:
    """What one worker saw of one chunk; partials merge into the report."""

    totals: Counter[str] = field(default_factory=Counter)
    matrix: Counter[str] = field(default_factory=Counter)
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)
    by_file: dict[str, Counter[str]] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    fixture_results: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # logged events whose decision changes, by "action_type", "kind", "role" and "agent": the blast radius
    changed_by: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.totals[key] += n

    def add_change(self, input: dict[str, Any]) -> None:
        action: dict[str, Any] = input["action"] if isinstance(input.get("action"), dict) else {}
        self.changed_by.setdefault("kind", Counter())[str(input.get("kind"))] += 1
        self.changed_by.setdefault("action_type", Counter())[str(action.get("type", "(none)"))] += 1
        agents = [a for a in input.get("agents") or [] if isinstance(a, dict)]
        for role in sorted({str(a.get("role")) for a in agents}):
            self.changed_by.setdefault("role", Counter())[role] += 1
        for agent in sorted({str(a.get("id")) for a in agents}):
            self.changed_by.setdefault("agent", Counter())[agent] += 1

    def add_transition(self, t: str, rule: str | None, file: str | None) -> None:
        self.matrix[t] += 1
        if rule:
            self.by_rule.setdefault(rule, Counter())[t] += 1
        if file:
            self.by_file.setdefault(file, Counter())[t] += 1

    def add_example(self, example: Example) -> None:
        bucket = self.examples.setdefault(example.kind, [])
        bucket.append(example)
        if len(bucket) > MAX_EXAMPLES * 2:
            bucket.sort(key=lambda e: -e.rank)
            del bucket[MAX_EXAMPLES:]

    def merge(self, other: Partial) -> None:
        self.totals.update(other.totals)
        self.matrix.update(other.matrix)
        for rule, c in other.by_rule.items():
            self.by_rule.setdefault(rule, Counter()).update(c)
        for file, c in other.by_file.items():
            self.by_file.setdefault(file, Counter()).update(c)
        for examples in other.examples.values():
            for e in examples:
                self.add_example(e)
        self.fixture_results.extend(other.fixture_results)
        for dim, c in other.changed_by.items():
            self.changed_by.setdefault(dim, Counter()).update(c)
        if len(self.problems) < 1000:
            self.problems.extend(other.problems[: 1000 - len(self.problems)])


@dataclass
class ShadowReport:
    """The replay of fixtures and logs through a base and a candidate revision."""

    base: str
    candidate: str
    partial: Partial
    max_collateral_pct: float
    rule_clusters: dict[str, str | None] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    lines_rejected: int = 0

    def add_unread(self, skipped: int, problems: list[Problem]) -> None:
        """What the log readers could not use (records skipped, and where) is part of the replay's report,
        first among its problems: `policyctl shadow`, the merge gate and the bot's replay say it the same way."""
        self.lines_rejected += skipped
        self.partial.problems[:0] = problems

    @property
    def t(self) -> Counter[str]:
        return self.partial.totals

    @property
    def fixtures_failed(self) -> int:
        return self.t["fixtures_failed"]

    @property
    def collateral_pct(self) -> float:
        ok = self.t["successes"]
        return 100.0 * self.t["collateral"] / ok if ok else 0.0

    @property
    def prevented_pct(self) -> float:
        failures = self.t["failures"]
        return 100.0 * self.t["prevented"] / failures if failures else 0.0

    @property
    def over_budget(self) -> bool:
        return self.collateral_pct > self.max_collateral_pct

    @property
    def exit_code(self) -> int:
        return 1 if self.fixtures_failed or self.over_budget else 0

    @property
    def verdict(self) -> str:
        reasons = []
        if self.fixtures_failed:
            reasons.append(f"{self.fixtures_failed} fixture(s) fail")
        if self.over_budget:
            reasons.append(f"collateral {self.collateral_pct:.2f}% exceeds the budget of {self.max_collateral_pct:g}%")
        return "FAIL: " + "; ".join(reasons) if reasons else "PASS"

    def examples(self, kind: str) -> list[Example]:
        return sorted(self.partial.examples.get(kind, []), key=lambda e: (-e.rank, e.ref))[:MAX_EXAMPLES]

    def to_dict(self) -> dict[str, Any]:
        t = self.t
        return {
            "base": self.base, "candidate": self.candidate, "verdict": self.verdict, "exit_code": self.exit_code,
            "totals": {
                "records": t["records"], "fixtures": t["fixtures"], "fixtures_passed": t["fixtures_passed"],
                "fixtures_failed": t["fixtures_failed"], "events": t["events"], "failures": t["failures"],
                "successes": t["successes"], "denied": t["denied"], "changed": t["changed"], "unchanged": t["unchanged"],
                "prevented": t["prevented"], "newly_prevented": t["newly_prevented"], "exposed": t["exposed"],
                "collateral": t["collateral"], "in_region": t["in_region"], "errors_base": t["errors_base"], "errors_candidate": t["errors_candidate"],
                "lines_rejected": self.lines_rejected,
            },
            "prevented_pct": round(self.prevented_pct, 3),
            "collateral_pct": round(self.collateral_pct, 3),
            "max_collateral_pct": self.max_collateral_pct,
            "matrix": dict(sorted(self.partial.matrix.items())),
            "by_rule": {r: {"cluster": self.rule_clusters.get(r), "matrix": dict(sorted(c.items()))}
                        for r, c in sorted(self.partial.by_rule.items())},
            "by_fixture_file": {f: dict(sorted(c.items())) for f, c in sorted(self.partial.by_file.items())},
            "fixtures": sorted(self.partial.fixture_results, key=lambda r: (r["file"], r["line"])),
            "examples": {k: [e.to_dict() for e in self.examples(k)]
                         for k in ("failing_fixture", "collateral", "exposed", "prevented")},
            "problems": [p.to_dict() for p in self.partial.problems],
            "blast_radius": {dim: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:BLAST_TOP])
                             for dim, c in sorted(self.partial.changed_by.items())},
            "logs": self.logs,
        }
