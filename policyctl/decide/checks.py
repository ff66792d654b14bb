"""`policyctl check`: compile every policy, validate every fixture and override, list all problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from policyctl.decide import load_fixtures, utcnow
from policyctl.engine.guarded import policy_problems
from policyctl.engine.modules import TEST_SUFFIX
from policyctl.errors import Problem, ValidationError
from policyctl.model.config import CONFIG_FILE, DEFAULT_OVERRIDE_HORIZON_DAYS
from policyctl.model.records import OVERRIDE_HEADER_CODES, parse_override_header
from policyctl.repo import Snapshot

OVERRIDE_FIXTURES = "shadow_fixtures/overrides/"
# The first words of the docstring `policyctl override new` writes (policyctl/sandbox/authoring.py):
# an unedited scaffold must not reach main with "TODO" as every decision's reason.
SCAFFOLD_DOC_MARKER = "TODO: why this override exists"


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
    """Validate each override's header and sandbox compile, require fixtures, flag expiry.

    Beyond what the gateway refuses, an override must expire within the horizon
    ([budgets] override_horizon_days in policyctl.toml) and say why it exists in its own words.
    """
    problems: list[Problem] = []
    paths = [p for p in snapshot.paths("overrides/", ".py") if p.count("/") == 1]
    horizon = _override_horizon(snapshot)
    for path in paths:
        try:
            source = snapshot.text(path)
            header = parse_override_header(source, file=path)
        except ValidationError as exc:
            problems.append(exc.problem(path, exc.code if exc.code in OVERRIDE_HEADER_CODES else "override_header"))
            continue
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a problem of that file
            problems.append(Problem(path, str(exc), code="override_header"))
            continue
        problems.extend(_sandbox_problems(path, source))
        if header.doc.startswith(SCAFFOLD_DOC_MARKER):
            problems.append(Problem(path, f"the docstring is still the scaffold's placeholder ({SCAFFOLD_DOC_MARKER!r}): "
                                    "say why this override exists in one line (what is broken, the incident, the "
                                    "owner); it becomes the decision's reason", code="override_doc_placeholder",
                                    line=header.doc_line))
        if header.expired(now):
            problems.append(Problem(path, f"expired at {header.expires.isoformat()}; it no longer applies: "
                                    "delete it or extend OVERRIDE['expires']", code="override_expired",
                                    severity="warning", line=header.expires_line))
        elif header.expires - now > timedelta(days=horizon):
            problems.append(Problem(path, f"OVERRIDE.expires: {header.expires.isoformat().replace('+00:00', 'Z')} is "
                                    f"{(header.expires - now).days} days from now; the horizon is {horizon} days "
                                    f"([budgets] override_horizon_days in {CONFIG_FILE}): an override is an emergency "
                                    "measure, so set an earlier expiry and extend it by a new commit if the fix is "
                                    "late", code="override_expires_horizon", line=header.expires_line))
        fixtures = f"{OVERRIDE_FIXTURES}{header.name}.jsonl"
        if fixtures not in snapshot.files or not snapshot.files[fixtures].strip():
            problems.append(Problem(path, f"no fixtures: add {fixtures} so a reviewer sees what it decides",
                                    code="override_without_fixtures"))
    return len(paths), problems


def _override_horizon(snapshot: Snapshot) -> int:
    """How many days ahead an override may expire; a broken policyctl.toml is reported by check_vocabulary."""
    try:
        return snapshot.config.budgets.override_horizon_days
    except ValidationError:
        return DEFAULT_OVERRIDE_HORIZON_DAYS


def _sandbox_problems(path: str, source: str) -> list[Problem]:
    """The sandbox's compile wall: what it refuses at load, check refuses at commit time."""
    from policyctl.sandbox import compile_problems

    return list(compile_problems(source, file=path))


def check_vocabulary(snapshot: Snapshot) -> list[Problem]:
    """policyctl.toml validates, and no route rule rewrites a field the vocabulary does not declare.

    A route may change only declared alternatives, to declared values; any other field is
    the agent's intent. Drafted rules (METADATA custom.drafter) that break this are errors
    (the bot must never open them); hand-written ones are warned about, since a person may
    know better than the declaration, and should then declare it.
    """
    from policyctl.engine.modules import COMPUTED, parse_module, route_heads
    from policyctl.model.config import route_fields

    try:
        config = snapshot.config
    except ValidationError as exc:
        return [exc.problem(CONFIG_FILE, "config")]
    problems: list[Problem] = []
    for path in snapshot.paths("policies/", ".rego"):
        try:
            text = snapshot.text(path)
        except Exception:  # noqa: BLE001 - unreadable files are reported by the compile check
            continue
        if "\"route\"" not in text:
            continue
        module, _ = parse_module(path, text)
        if module is None or not module.is_rule:
            continue
        drafted = isinstance(module.metadata.get("custom"), dict) and "drafter" in module.metadata["custom"]
        severity = "error" if drafted else "warning"
        for head in route_heads(text):
            if head.params is None:
                problems.append(Problem(path, "route params are computed, so the fields they rewrite cannot be "
                                        "checked against the vocabulary", code="route_unchecked", line=head.line,
                                        severity="warning"))
                continue
            types = sorted(head.action_types) if head.action_types else ["*"]
            for field_path, value in route_fields(head.params):
                if value == COMPUTED:  # the value is computed: the field at least must be an alternative
                    bad = [t for t in types if field_path not in config.vocabulary.for_type(t)]
                else:
                    bad = [t for t in types if not config.vocabulary.allows(t, field_path, value)]
                if not bad:
                    continue
                declared = config.vocabulary.for_type(bad[0]).get(field_path)
                why = (f"{field_path} is not a declared alternative for action type {bad[0]!r}" if declared is None
                       else f"{value!r} is not one of the declared values of {field_path} ({', '.join(map(repr, declared))})")
                problems.append(Problem(path, f"route rewrites the agent's intent: {why}; declare it under "
                                        f"[vocabulary.{bad[0]}.alternatives] in {CONFIG_FILE} if agents may be routed "
                                        "over it, or arbitrate/deny instead", code="route_rewrites_intent",
                                        line=head.line, severity=severity))
    return problems


def run_check(snapshot: Snapshot, *, now: datetime | None = None, engine_name: str | None = None) -> CheckReport:
    from policyctl.testing import count_tests

    report = CheckReport(snapshot.revision)
    report.problems.extend(check_vocabulary(snapshot))
    # in child processes when the engine can abort (regopy): a crash is a problem naming the file
    problems = policy_problems(snapshot, engine_name)
    report.problems.extend(problems)
    from policyctl.lint import lint_for_check

    report.problems.extend(lint_for_check(snapshot, problems))  # warnings shown, errors fail
    report.counts["policies"] = len([p for p in snapshot.paths("policies/", ".rego") if not p.endswith(TEST_SUFFIX)])
    report.counts["tests"] = count_tests(snapshot)
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
