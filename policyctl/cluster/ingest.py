"""Log records as clustering needs them, read through `policyctl.ingest` (every format, every bad record counted)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyctl.errors import InputError, Problem
from policyctl.ingest.base import Mapping, ReadSummary
from policyctl.model.jsonl import ReadStats
from policyctl.model.records import FAILURES

MAX_LINE = 1 << 20
# Input fields that describe an interaction's kind of traffic; clustering reads these.
STRUCTURED = ("kind", "action.type", "action.protocol", "action.file_type", "resource.kind")


@dataclass(slots=True)
class Record:
    """One log record, reduced to what clustering needs."""

    id: str
    ts: str | None
    status: str
    message: str
    fields: dict[str, Any]
    agents: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    agent_roles: dict[str, str] | None = None
    role_list: tuple[str, ...] = ()  # every agent's role, with repeats
    waits_for: list[dict[str, Any]] | None = None
    where: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILURES


@dataclass
class IngestStats(ReadStats):
    warnings: list[Problem] = field(default_factory=list)
    truncated: int = 0
    failures: int = 0
    successes: int = 0
    files: list[str] = field(default_factory=list)

    def warn(self, problem: Problem) -> None:
        if len(self.warnings) < 1000:
            self.warnings.append(problem)


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
    """Scalar leaves of an input as dotted paths; agents become count(agents) and their roles."""
    out = {} if out is None else out
    if not isinstance(value, dict) or depth > 4:
        return out
    for key, item in value.items():
        path = f"{prefix}{key}"
        if key == "agents" and not prefix and isinstance(item, list):
            out["count(agents)"] = len(item)
            continue
        if isinstance(item, dict):
            flatten(item, path + ".", out, depth + 1)
        elif isinstance(item, str | int | float | bool) or item is None:
            out[path] = item
    return out


def _agents(input: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    agents = input.get("agents")
    if not isinstance(agents, list):
        return (), (), ()
    ids = tuple(str(a.get("id")) for a in agents if isinstance(a, dict))
    role_list = tuple(str(a.get("role")) for a in agents if isinstance(a, dict) and a.get("role") is not None)
    return ids, tuple(sorted(set(role_list))), role_list


def read_logs(paths: list[Path], *, fmt: str = "auto", strict: bool = False, stats: IngestStats | None = None,
              progress: Callable[[int], None] | None = None, mapping: Mapping | None = None,
              summary: ReadSummary | None = None) -> Iterator[Record]:
    """Every record of every file, streaming, through the readers of `policyctl.ingest` (any format).

    Unusable records are counted in `summary` (and `stats`) by reason and skipped; with
    `strict`, the first one stops the read. When nothing at all is readable, InputError
    with the counts per reason (exit 1).
    """
    from policyctl.ingest import read_events

    stats = stats if stats is not None else IngestStats()
    summary = summary if summary is not None else ReadSummary()
    for path in paths:
        path = Path(path)
        seen, warned = len(summary.problems), len(summary.warnings)
        if path.is_file() and path.stat().st_size == 0:
            stats.warn(Problem(str(path), "empty file", code="empty_file"))
        for event in read_events([path], fmt=fmt, mapping=mapping, summary=summary):
            if strict and len(summary.problems) > seen:
                problem = summary.problems[seen]
                raise InputError(f"{problem.where}: {problem.message}")
            record = _event(event, str(event.get("id") or path))
            if isinstance(record, str):
                stats.reject(Problem(str(path), f"{record}; skipped", code="not_an_event"))
                continue
            stats.kept += 1
            yield record
        for warning in summary.warnings[warned:]:
            stats.warn(warning)
        for problem in summary.problems[seen:]:
            if strict:
                raise InputError(f"{problem.where}: {problem.message}")
            stats.reject(problem)
        stats.files.append(str(path))
        if progress and path.is_file():
            progress(path.stat().st_size)
    stats.lines = stats.kept + stats.rejected
    summary.require_some()


def _event(doc: Any, where: str) -> Record | str:
    if not isinstance(doc, dict):
        return "not an Event object"
    input = doc.get("input")
    if not isinstance(input, dict):
        return "input: required field is missing" if "input" not in doc else "input: expected object"
    outcome = doc.get("outcome")
    if outcome is not None and not isinstance(outcome, dict):
        return "outcome: expected object"
    outcome = outcome or {}
    status = outcome.get("status", "ok")
    if not isinstance(status, str):
        return "outcome.status: expected string"
    message = outcome.get("message") or ""
    if not isinstance(message, str):
        message = str(message)
    ids, roles, role_list = _agents(input)
    waits = outcome.get("waits_for")
    agent_roles = None
    if isinstance(waits, list):
        agent_roles = {str(a.get("id")): str(a.get("role")) for a in input.get("agents") or [] if isinstance(a, dict)}
    return Record(id=str(doc.get("id") or where), ts=doc.get("ts") if isinstance(doc.get("ts"), str) else None,
                  status=status, message=message, fields=flatten(input), agents=ids, roles=roles,
                  role_list=role_list, agent_roles=agent_roles, waits_for=waits if isinstance(waits, list) else None,
                  where=where)
