"""The decision pipeline: overrides, then policies, then the default; one pipeline for every caller.

The gateway, the shadow replay, the simulator and `policyctl decide` all call
`Pipeline.decide`, so a replay sees exactly what production would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from policyctl.engine import Engine, PolicySet, compile_policy_set
from policyctl.errors import (
    EvaluationError,
    InputError,
    InputLimitError,
    PolicyCompileError,
    Problem,
    ValidationError,
)
from policyctl.model.expect import mismatches
from policyctl.model.limits import (
    MAX_INPUT_BYTES,
    MAX_INPUT_DEPTH,
    check_input_shape,
    check_input_size,
)
from policyctl.model.records import ACTIONS, Decision, Fixture, Reason
from policyctl.repo import Snapshot

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class OverrideSlot(Protocol):
    """What the decision pipeline asks of the overrides of a revision (filled by the sandbox)."""

    def decide(self, input: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """The first active override's whole decision, or None to let the policies decide.

        The dict has `action`, `params`, `reasons` and `source` (`override:<file>@<blob id>`).
        """
        ...


def check_input(input: Any) -> dict[str, Any]:
    """The fast structural check every input passes before it reaches an override or the engine.

    It agrees with the Input JSON Schema (a test holds both to the same cases) and refuses
    inputs too large or too deep for the engine, naming the field path.
    """
    if not isinstance(input, dict):
        raise ValidationError(f"expected an object, got {type(input).__name__}", path="input")
    check_input_shape(input)
    kind = input.get("kind")
    if kind not in ("action", "conflict"):
        raise ValidationError(f"{kind!r} is not one of: action, conflict" if "kind" in input
                              else "required field is missing", path="input.kind")
    agents = input.get("agents")
    if "agents" in input:  # present means an array: null is not "no agents"
        if not isinstance(agents, list):
            raise ValidationError(f"expected array, got {agents!r}", path="input.agents")
        for i, agent in enumerate(agents):
            if not isinstance(agent, dict):
                raise ValidationError("expected object", path=f"input.agents[{i}]")
            if not isinstance(agent.get("id"), str) or not agent["id"]:
                raise ValidationError(f"expected a non-empty string, got {agent.get('id')!r}", path=f"input.agents[{i}].id")
            priority = agent.get("priority")
            if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | float)):
                raise ValidationError(f"expected number, got {priority!r}", path=f"input.agents[{i}].priority")
    if kind == "action":
        action = input.get("action")
        if not isinstance(action, dict):
            raise ValidationError("required field is missing" if action is None else "expected object", path="input.action")
        if not isinstance(action.get("type"), str) or not action["type"]:
            raise ValidationError(f"expected a non-empty string, got {action.get('type')!r}", path="input.action.type")
    else:
        if not isinstance(agents, list) or len(agents) < 2:
            raise ValidationError("a conflict needs at least 2 agents", path="input.agents")
        action = input.get("action")
        if "action" in input and (not isinstance(action, dict) or not isinstance(action.get("type"), str)
                                  or not action["type"]):
            raise ValidationError("an action, when given, needs a non-empty type", path="input.action.type")
    for name in ("resource", "context"):
        if name in input and not isinstance(input[name], dict):
            raise ValidationError("expected object", path=f"input.{name}")
    return input


def error_decision(exc: EvaluationError) -> dict[str, Any]:
    """Fail closed: an input the policy set cannot evaluate is denied, with the reason."""
    return {"action": "deny", "params": {}, "reasons": [], "source": "error", "shadow": [], "fired": [],
            "error": {"code": exc.code, "message": exc.message}}


@dataclass
class Pipeline:
    """decide(input) for one revision: overrides, policies, default."""

    policies: PolicySet
    overrides: OverrideSlot | None = None
    clock: Clock = utcnow
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    @property
    def revision(self) -> str | None:
        return self.policies.revision

    def decide(self, input: Any) -> Decision:
        """The decision for one input. Raises InputError for an input of the wrong shape."""
        return _to_decision(self.decide_dict(input))

    def decide_dict(self, input: Any) -> dict[str, Any]:
        """Like decide, as the plain dict the API and logs carry (the fast path)."""
        check_input(input)
        raw: dict[str, Any] | None = None
        if self.overrides is not None:
            raw = self.overrides.decide(input, self.clock())
        if raw is None:
            try:
                raw = self.policies.evaluate(input)
            except EvaluationError as exc:
                raw = error_decision(exc)
            if "error" in raw and "action" not in raw:
                raw = error_decision(EvaluationError(raw["error"].get("message", ""), code=raw["error"].get("code", "eval_error")))
            elif raw.get("action") not in ACTIONS:
                raw = error_decision(EvaluationError(f"the policy set answered action {raw.get('action')!r}",
                                                     code="invalid_decision"))
        raw["decision_id"] = self.new_id()
        raw["revision"] = self.policies.revision
        return raw


def _to_decision(raw: dict[str, Any]) -> Decision:
    return Decision(
        action=raw["action"], source=raw["source"], params=raw.get("params") or {},
        reasons=[Reason(r.get("rule", "?"), r.get("file"), r.get("message", "")) for r in raw.get("reasons", [])],
        revision=raw.get("revision"), decision_id=raw.get("decision_id"), shadow=list(raw.get("shadow") or []),
        fired=list(raw.get("fired") or []), error=raw.get("error"),
    )


_MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # an Event line: the input plus its decision and trace


def parse_input_document(data: bytes | str, *, where: str) -> dict[str, Any]:
    """An input from a file: a bare input, `{"input": …}` as in OPA's data API, or an Event line.

    The input itself is held to MAX_INPUT_BYTES, the figure the gateway applies to a request
    body; only the document around it (an Event's decision and trace) may be larger.
    """
    try:
        check_input_size(data, max_bytes=_MAX_DOCUMENT_BYTES)
    except InputLimitError as exc:
        raise InputLimitError(f"{where}: {exc.message}") from exc
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc).lower():
            raise InputLimitError(f"{where}: input is nested deeper than {MAX_INPUT_DEPTH} levels") from exc
        raise InputError(f"{where}: not JSON ({str(exc).split(':', 1)[0]})") from exc
    if isinstance(doc, dict) and "kind" not in doc and isinstance(doc.get("input"), dict):
        doc = doc["input"]
    if len(data) > MAX_INPUT_BYTES:  # only then can the input be over: measure it as compact JSON
        try:
            check_input_size(orjson.dumps(doc))
        except InputLimitError as exc:
            raise InputLimitError(f"{where}: {exc.message}") from exc
    try:
        return check_input(doc)
    except ValidationError as exc:
        raise ValidationError(exc.detail, path=exc.path, where=where) from exc
    except InputLimitError as exc:
        raise InputLimitError(f"{where}: {exc.message}") from exc


# --------------------------------------------------------------------------- fixtures & revisions


def load_fixtures(snapshot: Snapshot, prefix: str = "shadow_fixtures/") -> tuple[list[Fixture], list[Problem]]:
    """Every fixture line of the snapshot, validated; problems name file:line and the field."""
    from policyctl.model.jsonl import ReadStats, read_jsonl_stream

    fixtures: list[Fixture] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    import io

    for path in snapshot.paths(prefix, ".jsonl"):
        stats = ReadStats()

        def validate(record: Any, where: str, _path: str = path) -> Fixture:
            fixture = Fixture.from_dict(record, file=_path, line=int(where.rsplit(":", 1)[1]))
            check_input(fixture.input)
            return fixture

        for _, fixture in read_jsonl_stream(io.BytesIO(snapshot.files[path]), path, validate=validate, stats=stats):
            if fixture.id in seen:
                problems.append(Problem(path, f"fixture id {fixture.id!r} is also used at {seen[fixture.id]}",
                                        code="duplicate_fixture", line=fixture.line))
                continue
            seen[fixture.id] = fixture.where
            fixtures.append(fixture)
        problems.extend(stats.problems)
    return fixtures, problems


@dataclass
class FixtureResult:
    fixture: Fixture
    decision: dict[str, Any]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_fixture(pipeline: Pipeline, fixture: Fixture) -> FixtureResult:
    try:
        decision = pipeline.decide_dict(fixture.input)
    except InputError as exc:
        return FixtureResult(fixture, {}, [f"input refused: {exc}"])
    problems = mismatches(fixture.expect, decision)
    if decision.get("source") == "error" and fixture.expect.get("source") != "error":
        err = decision.get("error") or {}
        problems.insert(0, f"evaluation error {err.get('code')}: {err.get('message')}")
    return FixtureResult(fixture, decision, problems)


@dataclass
class Revision:
    """One revision, built and verified: its snapshot, compiled policies, overrides and fixtures."""

    snapshot: Snapshot
    pipeline: Pipeline
    fixtures: list[Fixture]
    fixture_results: list[FixtureResult] = field(default_factory=list)

    @property
    def id(self) -> str | None:
        return self.snapshot.revision

    @property
    def failed_fixtures(self) -> list[FixtureResult]:
        return [r for r in self.fixture_results if not r.passed]


class RevisionError(PolicyCompileError):
    """A revision that cannot be served: it does not compile, or its fixtures fail."""

    code = "revision_invalid"


OverrideLoader = Callable[[Snapshot], OverrideSlot | None]


def sandbox_overrides(snapshot: Snapshot) -> OverrideSlot | None:
    """The revision's override scripts, compiled into the sandbox (the default loader)."""
    from policyctl.sandbox import load_overrides

    return load_overrides(snapshot)


def build_revision(snapshot: Snapshot, *, verify: bool = True, clock: Clock = utcnow,
                   load_overrides: OverrideLoader = sandbox_overrides, engine: Engine | None = None) -> Revision:
    """Compile a snapshot, load its overrides and fixtures, and (with verify) run every fixture.

    This is the one way to build a decision pipeline: the gateway, the shadow replay, the
    simulator, `policyctl decide`, draft verification, the pytest plugin and the checks all
    call it, and the overrides are always part of it (a caller may pass its own loader, such
    as the gateway's pooled one, never none). Raises RevisionError listing every problem:
    a revision that fails is never served.
    """
    policies = compile_policy_set(snapshot, engine)  # None: --engine / $POLICYCTL_ENGINE / the default
    overrides = load_overrides(snapshot)
    pipeline = Pipeline(policies, overrides=overrides, clock=clock)
    fixtures, problems = load_fixtures(snapshot)
    if problems:
        raise RevisionError(f"{snapshot.label[:12]}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                            problems=problems)
    revision = Revision(snapshot, pipeline, fixtures)
    if verify:
        revision.fixture_results = [run_fixture(pipeline, f) for f in fixtures]
        failed = revision.failed_fixtures
        if failed:
            found = [Problem(r.fixture.file, f"fixture {r.fixture.id}: {'; '.join(r.problems)}", code="fixture_failed",
                             line=r.fixture.line) for r in failed]
            raise RevisionError(f"{snapshot.label[:12]}: {len(failed)} fixture(s) fail: {found[0]}", problems=found)
    return revision
