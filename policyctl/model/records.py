"""Typed records of the data formats: Event, Decision, Fixture, OverrideHeader. No I/O."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policyctl.errors import ValidationError
from policyctl.model.schema import schema_errors

ACTIONS = ("allow", "deny", "route", "arbitrate", "negotiate")
# `diverted`: the interaction did not happen as the agent asked (a decision rewrote its intent)
STATUSES = ("ok", "denied", "crash", "deadlock", "timeout", "error", "diverted")
FAILURES = frozenset({"crash", "deadlock", "timeout", "error", "diverted"})
KINDS = ("action", "conflict")


def _check(name: str, record: Any, where: str, root: str = "") -> None:
    errors = schema_errors(name, record, root)
    if errors:
        path, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(message + more, path=path, where=where)


def validate_input(value: Any, *, where: str = "", root: str = "input") -> dict[str, Any]:
    """Check an input against the Input schema; return it unchanged."""
    _check("input", value, where, root)
    assert isinstance(value, dict)
    return value


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    file: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "file": self.file, "message": self.message}


@dataclass(slots=True)
class Decision:
    """What the gateway answers. `error` is set when the policy set could not decide."""

    action: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    revision: str | None = None
    decision_id: str | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "action": self.action,
            "params": self.params,
            "reasons": [r.to_dict() for r in self.reasons],
            "source": self.source,
            "revision": self.revision,
            "shadow": self.shadow,
        }
        if self.fired:
            out["fired"] = self.fired
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> Decision:
        _check("decision", data, where)
        return cls(
            action=data["action"],
            source=data["source"],
            params=dict(data.get("params") or {}),
            reasons=[Reason(r["rule"], r.get("file"), r.get("message", "")) for r in data.get("reasons", [])],
            revision=data.get("revision"),
            decision_id=data.get("decision_id"),
            shadow=list(data.get("shadow") or []),
            fired=list(data.get("fired") or []),
            error=data.get("error"),
        )


@dataclass(slots=True)
class Event:
    """One exported-log line. `raw` keeps every field, known or not."""

    id: str
    input: dict[str, Any]
    raw: dict[str, Any]
    ts: str | None = None

    @property
    def status(self) -> str | None:
        outcome = self.raw.get("outcome")
        return outcome.get("status") if isinstance(outcome, dict) else None

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    @property
    def decision(self) -> dict[str, Any] | None:
        d = self.raw.get("decision")
        return d if isinstance(d, dict) else None

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "") -> Event:
        _check("event", data, where)
        return cls(id=data["id"], input=data["input"], raw=data, ts=data.get("ts"))


@dataclass(slots=True)
class Fixture:
    """One regression case: an input and the subset of the decision it must produce."""

    id: str
    input: dict[str, Any]
    expect: dict[str, Any]
    raw: dict[str, Any]
    why: str | None = None
    origin: str | None = None
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else self.id

    @classmethod
    def from_dict(cls, data: Any, *, file: str = "", line: int = 0) -> Fixture:
        _check("fixture", data, f"{file}:{line}" if file else "")
        return cls(id=data["id"], input=data["input"], expect=data["expect"], raw=data,
                   why=data.get("why"), origin=data.get("origin"), file=file, line=line)


@dataclass(frozen=True, slots=True)
class OverrideHeader:
    """The OVERRIDE dict of an override script, read without running the script."""

    name: str
    file: str
    doc: str
    match: dict[str, Any]
    expires: datetime
    priority: int = 0
    timeout_ms: int | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def selects(self, input: dict[str, Any]) -> bool:
        """Whether `match` selects the input: every dotted path equals its value (a list: one of)."""
        for path, want in self.match.items():
            got: Any = input
            for part in path.split("."):
                if not isinstance(got, dict) or part not in got:
                    return False
                got = got[part]
            if isinstance(want, list):
                if not any(_same(got, w) for w in want):
                    return False
            elif not _same(got, want):
                return False
        return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def parse_rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("no timezone (add Z or +00:00)")
    return value.astimezone(UTC)


def parse_override_header(source: str, *, file: str) -> OverrideHeader:
    """Read the docstring and OVERRIDE header of an override script without executing it.

    The header must be a literal dict assigned at module level; anything computed is refused,
    because the header is read outside the sandbox.
    """
    name = file.rsplit("/", 1)[-1].removesuffix(".py")
    try:
        tree = ast.parse(source, filename=file)
    except SyntaxError as exc:
        raise ValidationError(f"not valid Python: {exc.msg}", where=f"{file}:{exc.lineno or 0}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ValidationError(f"cannot be parsed: {exc}", where=file) from exc
    doc = ast.get_docstring(tree) or ""
    if not doc.strip():
        raise ValidationError("the module docstring (why this override exists) is missing", where=f"{file}:1")
    header_node: ast.Assign | None = None
    has_decide = False
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "OVERRIDE" for t in node.targets):
            header_node = node
        if isinstance(node, ast.FunctionDef) and node.name == "decide":
            has_decide = True
    if header_node is None:
        raise ValidationError("no OVERRIDE = {...} header at module level", where=file)
    where = f"{file}:{header_node.lineno}"
    try:
        header = ast.literal_eval(header_node.value)
    except (ValueError, TypeError, SyntaxError, RecursionError) as exc:
        raise ValidationError("OVERRIDE must be a literal dict (no names or calls)", where=where) from exc
    _check("override_header", header, where, "OVERRIDE")
    if not has_decide:
        raise ValidationError("no `def decide(input):` function", where=file)
    try:
        expires = parse_rfc3339(header["expires"])
    except ValueError as exc:
        raise ValidationError(f"{header['expires']!r} is not RFC 3339 ({exc})", path="OVERRIDE.expires", where=where) from exc
    return OverrideHeader(name=name, file=file, doc=doc.strip(), match=header["match"], expires=expires,
                          priority=int(header.get("priority", 0)), timeout_ms=header.get("timeout_ms"))
