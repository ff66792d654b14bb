"""Differential evaluation: the same policy set and inputs on two engines, every disagreement kept.

Two Rego implementations that disagree on an input are a finding either way: one of them
departs from OPA's semantics (cross-type comparisons, builtins), or the policy relies on
behaviour that no two engines share. The comparison is of what an agent would notice:
the action, its params, the rules that fired and the shadow candidates, or that the
evaluation failed (error codes differ between engines and are not compared).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyctl.engine import ENGINES, PolicySet, compile_policy_set, engine_named
from policyctl.errors import EvaluationError
from policyctl.repo import Snapshot

MAX_KEPT = 200


@dataclass(frozen=True)
class Disagreement:
    """One input on which the engines' decisions differ."""

    where: str  # file:line of the fixture or log line
    input: dict[str, Any]
    outcomes: dict[str, dict[str, Any]]  # engine -> comparable outcome

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "input": self.input, "outcomes": self.outcomes}

    def message(self) -> str:
        sides = "; ".join(f"{engine}: {_short(o)}" for engine, o in self.outcomes.items())
        return f"engines disagree: {sides}; input {json.dumps(self.input, sort_keys=True)[:300]}"

    def line(self) -> str:
        return f"{self.where}: {self.message()}"


@dataclass
class DifferentialReport:
    engines: tuple[str, ...]
    compared: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    total_disagreements: int = 0

    @property
    def ok(self) -> bool:
        return self.total_disagreements == 0

    def to_dict(self) -> dict[str, Any]:
        return {"engines": list(self.engines), "compared": self.compared, "disagreements": self.total_disagreements,
                "examples": [d.to_dict() for d in self.disagreements]}

    def summary(self) -> str:
        a, b = self.engines
        if self.ok:
            return f"differential: {a} and {b} agree on all {self.compared} inputs"
        return (f"differential: {a} and {b} disagree on {self.total_disagreements} of {self.compared} inputs"
                + (f" (first {len(self.disagreements)} shown)" if len(self.disagreements) < self.total_disagreements else ""))


def outcome(policies: PolicySet, input: dict[str, Any]) -> dict[str, Any]:
    """What an agent would see of one evaluation: the decision's substance, or that it failed."""
    try:
        raw = policies.evaluate(input)
    except EvaluationError:
        return {"error": True}
    if "error" in raw:
        return {"error": True}
    return {"action": raw.get("action"), "params": raw.get("params", {}), "fired": sorted(raw.get("fired", [])),
            "shadow": sorted(json.dumps(s, sort_keys=True) for s in raw.get("shadow", []))}


def compare(snapshot: Snapshot, inputs: Iterable[tuple[str, dict[str, Any]]],
            engines: tuple[str, str] | None = None) -> DifferentialReport:
    """Evaluate every input on both engines; raises PolicyCompileError if either cannot build the set."""
    first, second = engines or sorted(ENGINES)
    names = (first, second)
    sets = {name: compile_policy_set(snapshot, engine_named(name)) for name in names}
    report = DifferentialReport(engines=names)
    for where, input in inputs:
        report.compared += 1
        outcomes = {name: outcome(policies, input) for name, policies in sets.items()}
        if outcomes[first] != outcomes[second]:
            report.total_disagreements += 1
            if len(report.disagreements) < MAX_KEPT:
                report.disagreements.append(Disagreement(where, input, outcomes))
    return report


def fixture_inputs(snapshot: Snapshot) -> Iterator[tuple[str, dict[str, Any]]]:
    from policyctl.decide import load_fixtures

    fixtures, _ = load_fixtures(snapshot)
    for fixture in fixtures:
        yield f"{fixture.file}:{fixture.line}", fixture.input


def log_inputs(paths: Iterable[Path], shown_as: dict[Path, str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The inputs of normalized event logs (policyctl Event lines), by file:line."""
    for path in paths:
        name = (shown_as or {}).get(path, str(path))
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("input"), dict):
                    yield f"{name}:{n}", event["input"]


def _short(o: dict[str, Any]) -> str:
    if o.get("error"):
        return "evaluation error"
    params = json.dumps(o.get("params"), sort_keys=True)
    return f"{o.get('action')} {params} fired={','.join(o.get('fired', [])) or '-'}"

