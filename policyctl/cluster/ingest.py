"""Read exported logs as a stream: JSONL events, plain text lines, CSV; every bad line counted and placed."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from policyctl.errors import InputError, Problem
from policyctl.model.jsonl import ReadStats, iter_lines
from policyctl.model.records import FAILURES

MAX_LINE = 1 << 20
FORMATS = ("auto", "jsonl", "text", "csv")
# Input fields that describe an interaction's kind of traffic; clustering reads these.
STRUCTURED = ("kind", "action.type", "action.protocol", "action.file_type", "resource.kind")
MESSAGE_COLUMNS = ("message", "content", "msg", "log", "text")


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


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "text"


def read_logs(paths: list[Path], *, fmt: str = "auto", strict: bool = False, stats: IngestStats | None = None,
              progress: Callable[[int], None] | None = None) -> Iterator[Record]:
    """Every record of every file, streaming; malformed lines are counted in stats and skipped."""
    stats = stats if stats is not None else IngestStats()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        kind = detect_format(path) if fmt == "auto" else fmt
        stats.files.append(str(path))
        if path.stat().st_size == 0:
            stats.warn(Problem(str(path), "empty file", code="empty_file"))
            continue
        reader = {"jsonl": _jsonl, "text": _text, "csv": _csv}[kind]
        yield from reader(path, stats, strict, progress)


def _lines(path: Path, stats: IngestStats,
           progress: Callable[[int], None] | None) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, too long) of a file, each counted in stats and reported to progress."""
    with path.open("rb") as stream:
        for lineno, (raw, too_long) in enumerate(iter_lines(stream, max_bytes=MAX_LINE), start=1):
            stats.lines += 1
            if progress:
                progress(len(raw))
            yield lineno, raw, too_long


def _fail(stats: IngestStats, strict: bool, problem: Problem) -> None:
    if strict:
        raise InputError(f"{problem.where}: {problem.message}")
    stats.reject(problem)


def _jsonl(path: Path, stats: IngestStats, strict: bool, progress: Callable[[int], None] | None) -> Iterator[Record]:
    name = str(path)
    for lineno, raw, too_long in _lines(path, stats, progress):
        if too_long:
            _fail(stats, strict, Problem(name, f"line longer than {MAX_LINE} bytes: a truncated event cannot be read; skipped",
                                         code="line_too_long", line=lineno))
            continue
        if not raw.strip():
            stats.blank += 1
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            text = str(exc)
            reason = "not UTF-8" if "utf-8" in text.lower() else f"not JSON ({text.split(':', 1)[0]})"
            _fail(stats, strict, Problem(name, f"{reason}; skipped", code="bad_json", line=lineno))
            continue
        record = _event(doc, f"{name}:{lineno}")
        if isinstance(record, str):
            _fail(stats, strict, Problem(name, f"{record}; skipped", code="not_an_event", line=lineno))
            continue
        stats.kept += 1
        yield record


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
                  role_list=role_list, agent_roles=agent_roles, waits_for=waits if isinstance(waits, list) else None, where=where)


def _decode(raw: bytes, name: str, lineno: int, stats: IngestStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.warn(Problem(name, "invalid UTF-8 replaced with U+FFFD", code="bad_utf8", line=lineno))
        return raw.decode("utf-8", errors="replace")


def _junk(text: str) -> bool:
    """Binary junk: mostly control characters or replacement characters."""
    if not text:
        return False
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\t") or c == "\ufffd")
    return bad > max(3, len(text) // 4)


def _text(path: Path, stats: IngestStats, strict: bool, progress: Callable[[int], None] | None) -> Iterator[Record]:
    name = str(path)
    for lineno, raw, too_long in _lines(path, stats, progress):
        text = _decode(raw, name, lineno, stats).rstrip("\r\n")
        if too_long:
            stats.truncated += 1
            stats.warn(Problem(name, f"line longer than {MAX_LINE} bytes; truncated", code="line_truncated", line=lineno))
        if not text.strip():
            stats.blank += 1
            continue
        if _junk(text):
            _fail(stats, strict, Problem(name, "binary junk, not a log line; skipped", code="binary", line=lineno))
            continue
        stats.kept += 1
        yield Record(id=f"{path.name}:{lineno}", ts=None, status="error", message=text, fields={}, where=f"{name}:{lineno}")


def _csv(path: Path, stats: IngestStats, strict: bool, progress: Callable[[int], None] | None) -> Iterator[Record]:
    name = str(path)
    csv.field_size_limit(MAX_LINE)
    header: list[str] | None = None
    for lineno, raw, too_long in _lines(path, stats, progress):
        text = _decode(raw, name, lineno, stats)
        if not text.strip():
            stats.blank += 1
            continue
        try:
            row = next(csv.reader(io.StringIO(text)))
        except (csv.Error, StopIteration) as exc:
            _fail(stats, strict, Problem(name, f"not CSV ({exc}); skipped", code="bad_csv", line=lineno))
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            if not any(h in MESSAGE_COLUMNS for h in header):
                raise InputError(f"{name}:1: no message column (one of {', '.join(MESSAGE_COLUMNS)}) in the CSV header")
            continue
        if too_long or len(row) != len(header):
            _fail(stats, strict, Problem(name, f"{len(row)} columns, the header has {len(header)}; skipped",
                                         code="bad_csv", line=lineno))
            continue
        data = dict(zip(header, row, strict=True))
        message = next(data[c] for c in MESSAGE_COLUMNS if c in data)
        fields = {k: v for k, v in data.items() if k not in MESSAGE_COLUMNS and k not in ("id", "ts", "timestamp", "time", "status")}
        stats.kept += 1
        yield Record(id=data.get("id") or f"{path.name}:{lineno}", ts=data.get("ts") or data.get("timestamp") or data.get("time"),
                     status=data.get("status") or "error", message=message, fields=fields, where=f"{name}:{lineno}")
