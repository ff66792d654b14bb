"""Writing and trying override scripts: the scaffold of `override new` and the trial run of `override test`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from policyctl.errors import InputError, PolicyctlError, Problem, ValidationError
from policyctl.model.records import OverrideHeader, parse_override_header
from policyctl.sandbox.compile import compile_problems
from policyctl.sandbox.errors import SandboxError
from policyctl.sandbox.limits import DEFAULT_TIMEOUT_MS, HARD_TIMEOUT_MS

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FIXTURES_DIR = "shadow_fixtures/overrides"

_SCRIPT = '''"""TODO: why this override exists, in one line (incident, owner); it is the decision's reason.

Emergency override scaffolded by `policyctl override new {name}` on {today}. Before you
commit: make OVERRIDE["match"] select only the traffic in trouble (it matches nothing real
yet), make decide() return what must happen, put real cases in
{fixtures}, and run `policyctl check`. It stops applying at
OVERRIDE["expires"] on its own; delete it once the real fix (a policy) is merged.
"""

OVERRIDE = {{
    # Dotted input paths and the value each must equal (a list: any of them). Read without
    # running the script, so it must stay a literal.
    "match": {{"kind": "conflict", "resource.id": "CHANGE-ME"}},
    "expires": "{expires}",
    "priority": {priority},
    "timeout_ms": {timeout_ms},
}}


def decide(input):
    """Settle the conflict: highest priority first, ties by agent id. Return None for no opinion."""
    ranked = sorted(input["agents"], key=lambda a: (-a.get("priority", 0), a["id"]))
    order = [a["id"] for a in ranked]
    return {{"action": "arbitrate", "params": {{"winner": order[0], "order": order}}}}
'''


def scaffold_override(root: Path, name: str, *, now: datetime, days: int = 7, priority: int = 100,
                      force: bool = False) -> list[Path]:
    """Write overrides/<name>.py (expiring `days` out) and its fixture file; return both paths.

    The scaffold matches no real traffic until edited, and `policyctl check` refuses it until its
    TODO docstring says why the override exists.
    """
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a valid override name: use lowercase letters, digits and _, "
                         "starting with a letter (it becomes overrides/<name>.py)")
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    script = root / "overrides" / f"{name}.py"
    fixtures = root / FIXTURES_DIR / f"{name}.jsonl"
    existing = [p for p in (script, fixtures) if p.exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} already exists; pick another name or pass --force to overwrite")
    expires = (now + timedelta(days=days)).replace(microsecond=0)
    script.parent.mkdir(parents=True, exist_ok=True)
    fixtures.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_SCRIPT.format(name=name, today=now.date().isoformat(), fixtures=f"{FIXTURES_DIR}/{name}.jsonl",
                                     expires=expires.strftime("%Y-%m-%dT%H:%M:%SZ"), priority=priority,
                                     timeout_ms=DEFAULT_TIMEOUT_MS))
    fixture = {
        "id": f"override-{name.replace('_', '-')}-001",
        "input": {"kind": "conflict",
                  "agents": [{"id": "agent-a", "role": "deploy", "priority": 5},
                             {"id": "agent-b", "role": "backup", "priority": 10}],
                  "resource": {"kind": "lock", "id": "CHANGE-ME"}},
        "expect": {"action": "arbitrate", "params": {"winner": "agent-b", "order": ["agent-b", "agent-a"]},
                   "reasons": [{"rule": name, "file": f"overrides/{name}.py"}]},
        "why": "prevent",
    }
    fixtures.write_text(json.dumps(fixture) + "\n")
    return [script, fixtures]


@dataclass
class OverrideTrial:
    """What `policyctl override test` found: header, problems, whether it applies, and the run."""

    file: str
    header: OverrideHeader | None = None
    problems: list[Problem] = field(default_factory=list)
    selects: bool | None = None
    expired: bool | None = None
    ran: bool = False
    decision: dict[str, Any] | None = None
    printed: str = ""
    elapsed_ms: float | None = None
    error: SandboxError | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "ok": self.ok, "selects": self.selects, "expired": self.expired,
                "ran": self.ran, "decision": self.decision, "printed": self.printed,
                "elapsed_ms": None if self.elapsed_ms is None else round(self.elapsed_ms, 2),
                "error": self.error.to_dict() if self.error else None,
                "problems": [p.to_dict() for p in self.problems],
                "header": None if self.header is None else {
                    "match": self.header.match, "expires": self.header.expires.isoformat(),
                    "priority": self.header.priority, "timeout_ms": self.header.timeout_ms}}


def try_override(source: str, input: dict[str, Any], *, file: str, now: datetime,
                 timeout_ms: int | None = None, run_unselected: bool = True) -> OverrideTrial:
    """Validate a script like `policyctl check` would, then run it once through the real sandbox.

    The script runs even when it has expired (you are testing its logic), and when its
    `match` does not select the input unless `run_unselected` is False (then it is not run:
    the pipeline would skip it); the trial says either.
    """
    from policyctl.sandbox.overrides import run_override_traced

    trial = OverrideTrial(file)
    try:
        trial.header = parse_override_header(source, file=file)
    except ValidationError as exc:
        trial.problems.append(exc.problem(file))  # its own code: override_expires, override_priority, …
    except PolicyctlError as exc:
        trial.problems.append(Problem(file, exc.message, code="override_header"))
    trial.problems.extend(compile_problems(source, file=file))
    if trial.problems:
        return trial
    assert trial.header is not None
    trial.selects = trial.header.selects(input)
    trial.expired = trial.header.expired(now)
    if not trial.selects and not run_unselected:
        return trial
    limit = timeout_ms or trial.header.timeout_ms or DEFAULT_TIMEOUT_MS
    try:
        run = run_override_traced(source, input, min(limit, HARD_TIMEOUT_MS) / 1000, file=file)
    except SandboxError as exc:
        trial.error = exc
        trial.printed = exc.printed
    else:
        trial.decision, trial.printed, trial.elapsed_ms = run.decision, run.printed, run.elapsed_ms
    trial.ran = True
    return trial
