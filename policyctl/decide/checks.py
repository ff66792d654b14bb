"""`policyctl check`: compile every policy, validate every fixture and override, list all problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policyctl.decide import load_fixtures, utcnow
from policyctl.engine import check_policies
from policyctl.errors import Problem, ValidationError
from policyctl.model.records import parse_override_header
from policyctl.repo import Snapshot

OVERRIDE_FIXTURES = "shadow_fixtures/overrides/"


@dataclass
class CheckReport:
    revision: str | None
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "ok": self.ok, "counts": self.counts,
                "problems": [p.to_dict() for p in self.problems]}


def check_overrides(snapshot: Snapshot, now: datetime) -> tuple[int, list[Problem]]:
    """Validate each override's header and sandbox compile, require fixtures, flag expiry."""
    problems: list[Problem] = []
    paths = [p for p in snapshot.paths("overrides/", ".py") if p.count("/") == 1]
    for path in paths:
        try:
            source = snapshot.text(path)
            header = parse_override_header(source, file=path)
        except ValidationError as exc:
            problems.append(exc.problem(path, "override_header"))
            continue
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a problem of that file
            problems.append(Problem(path, str(exc), code="override_header"))
            continue
        problems.extend(_sandbox_problems(path, source))
        if header.expired(now):
            problems.append(Problem(path, f"expired at {header.expires.isoformat()}; it no longer applies: "
                                    "delete it or extend OVERRIDE['expires']", code="override_expired",
                                    severity="warning"))
        fixtures = f"{OVERRIDE_FIXTURES}{header.name}.jsonl"
        if fixtures not in snapshot.files or not snapshot.files[fixtures].strip():
            problems.append(Problem(path, f"no fixtures: add {fixtures} so a reviewer sees what it decides",
                                    code="override_without_fixtures"))
    return len(paths), problems


def _sandbox_problems(path: str, source: str) -> list[Problem]:
    """The sandbox's compile wall: what it refuses at load, check refuses at commit time."""
    from policyctl.sandbox import compile_problems

    return list(compile_problems(source, file=path))


def run_check(snapshot: Snapshot, *, now: datetime | None = None) -> CheckReport:
    report = CheckReport(snapshot.revision)
    policy_set, problems = check_policies(snapshot)
    report.problems.extend(problems)
    report.counts["policies"] = len(snapshot.paths("policies/", ".rego"))
    fixtures, fixture_problems = load_fixtures(snapshot)
    report.problems.extend(fixture_problems)
    report.counts["fixtures"] = len(fixtures)
    n_overrides, override_problems = check_overrides(snapshot, now or utcnow())
    report.problems.extend(override_problems)
    report.counts["overrides"] = n_overrides
    if not snapshot.files:
        report.problems.append(Problem(snapshot.root or ".", "no policies/, overrides/ or shadow_fixtures/ here; "
                                       "is --repo the policy repository?", code="empty"))
    report.problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    return report
