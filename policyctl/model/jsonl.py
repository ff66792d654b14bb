"""Streaming JSON Lines reader: every malformed line is reported with file:line, counted, and skipped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from policyctl.errors import InputError, PolicyctlError, Problem, ValidationError

MAX_LINE_BYTES = 1 << 20
MAX_KEPT_PROBLEMS = 1000


@dataclass
class ReadStats:
    """What a read saw: lines read, kept, rejected, and the first problems with their places."""

    lines: int = 0
    blank: int = 0
    kept: int = 0
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)

    def reject(self, problem: Problem) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(problem)

    def merge(self, other: ReadStats) -> None:
        self.lines += other.lines
        self.blank += other.blank
        self.kept += other.kept
        self.rejected += other.rejected
        room = MAX_KEPT_PROBLEMS - len(self.problems)
        self.problems.extend(other.problems[:max(room, 0)])

    def summary(self) -> str:
        text = f"{self.lines} lines read, {self.kept} kept, {self.rejected} rejected"
        if self.blank:
            text += f", {self.blank} blank"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "kept": self.kept, "rejected": self.rejected, "blank": self.blank,
                "problems": [p.to_dict() for p in self.problems],
                "problems_not_listed": max(0, self.rejected - len(self.problems))}


def iter_lines(stream: IO[bytes], *, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, too_long) without ever holding more than max_bytes of one line."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            head = line[:max_bytes]
            while True:  # drain the rest of the oversized line
                rest = stream.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield head, True
        else:
            yield line, False


Validator = Callable[[Any, str], Any]


def read_jsonl(
    path: str | Path,
    *,
    strict: bool = False,
    validate: Validator | None = None,
    stats: ReadStats | None = None,
    display: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record) for every good line of a JSONL file, streaming.

    A line that is not JSON, not UTF-8, too long, or refused by `validate(record, where)`
    (which raises PolicyctlError) is recorded in `stats` as a Problem and skipped;
    with `strict` the first one raises InputError naming file:line.
    """
    stats = stats if stats is not None else ReadStats()
    name = display or str(path)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed in finally; generator
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror})") from exc
    try:
        yield from _read(stream, name, strict, validate, stats)
    finally:
        stream.close()


def read_jsonl_stream(
    stream: IO[bytes], name: str, *, strict: bool = False, validate: Validator | None = None,
    stats: ReadStats | None = None,
) -> Iterator[tuple[int, Any]]:
    yield from _read(stream, name, strict, validate, stats if stats is not None else ReadStats())


def _read(stream: IO[bytes], name: str, strict: bool, validate: Validator | None,
          stats: ReadStats) -> Iterator[tuple[int, Any]]:
    lineno = 0
    for raw, too_long in iter_lines(stream):
        lineno += 1
        stats.lines += 1
        if too_long:
            problem = Problem(name, f"line longer than {MAX_LINE_BYTES} bytes; skipped", code="line_too_long", line=lineno)
        elif not raw.strip():
            stats.blank += 1
            continue
        else:
            problem = None
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                reason = "not UTF-8" if "utf-8" in str(exc).lower() else f"not JSON ({_first_clause(str(exc))})"
                problem = Problem(name, f"{reason}; skipped", code="bad_json", line=lineno)
            else:
                if validate is not None:
                    try:
                        record = validate(record, f"{name}:{lineno}")
                    except PolicyctlError as exc:
                        detail = exc.message
                        if isinstance(exc, ValidationError):
                            detail = f"{exc.path}: {exc.detail}" if exc.path else exc.detail
                        problem = Problem(name, f"{detail}; skipped", code=exc.code, line=lineno)
        if problem is not None:
            if strict:
                raise InputError(str(problem).replace(f": {problem.code}: ", ": ", 1))
            stats.reject(problem)
            continue
        stats.kept += 1
        yield lineno, record


def _first_clause(message: str) -> str:
    return message.split(":", 1)[0].strip()
