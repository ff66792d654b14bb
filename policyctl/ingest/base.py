"""The Reader protocol, the registry, and the summary every read ends with.

A reader turns one file of some log format into policyctl Events (dicts with `id`, `ts`,
`input`, `decision`, `outcome`, `trace`, and the source's own fields kept under a key of
their own). Readers are chosen by content (each `sniff`s the head of the file) or named
with `--format`. Every record that cannot be used is counted under a reason and placed
(file:line or file:record), never silently dropped; when nothing in an input is usable,
the command fails with the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policyctl.errors import InputError, Problem

HEAD_BYTES = 64 * 1024
MAX_PROBLEMS = 1000

Event = dict[str, Any]


@dataclass
class ReadSummary:
    """What a read found: events per reader, records skipped per reason, and where."""

    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> reader name
    events: Counter[str] = field(default_factory=Counter)  # reader -> events
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> records
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # records kept with a repair (truncated, bad UTF-8)
    superseded: int = 0  # decision lines replaced by a later line with the same id (its outcome)

    @property
    def total(self) -> int:
        return sum(self.events.values())

    def skip(self, reason: str, problem: Problem) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def warn(self, problem: Problem) -> None:
        if len(self.warnings) < MAX_PROBLEMS:
            self.warnings.append(problem)

    def line(self) -> str:
        """One line for a terminal: `read 1,200 events (otlp-json 1,200); skipped 3 (bad_json 2, …)`."""
        parts = ", ".join(f"{name} {n:,}" for name, n in sorted(self.events.items()))
        text = f"read {self.total:,} events" + (f" ({parts})" if parts else "")
        if self.skipped:
            why = ", ".join(f"{reason} {n:,}" for reason, n in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values()):,} ({why})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "formats": self.formats, "events": dict(self.events),
                "skipped": dict(self.skipped), "superseded": self.superseded,
                "problems": [p.to_dict() for p in self.problems[:50]]}

    def merge(self, other: ReadSummary, *, names: dict[str, str] | None = None) -> None:
        """Add what `other` found, calling its files by `names` (a temporary copy by the name the user gave)."""
        names = names or {}
        self.files += [names.get(f, f) for f in other.files]
        self.formats.update({names.get(f, f): reader for f, reader in other.formats.items()})
        self.events.update(other.events)
        self.skipped.update(other.skipped)
        self.superseded += other.superseded
        for problem in other.problems + other.warnings:
            problem.file = names.get(problem.file, problem.file)
        self.problems += other.problems[:max(0, MAX_PROBLEMS - len(self.problems))]
        self.warnings += other.warnings[:max(0, MAX_PROBLEMS - len(self.warnings))]

    def require_some(self) -> None:
        """Fail (exit 1) when nothing in the input could be used, with the counts per reason."""
        if self.total == 0:
            first = "; first: " + str(self.problems[0]) if self.problems else ""
            what = ", ".join(f"{reason} {n:,}" for reason, n in self.skipped.most_common()) or "no records at all"
            raise InputError(f"nothing readable in {', '.join(self.files) or 'the input'}: {what}{first}")


@dataclass(frozen=True)
class Mapping:
    """`--map target=source`: where an Event's fields are in someone else's JSON records."""

    fields: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, items: list[str]) -> Mapping:
        pairs = []
        for item in items:
            target, sep, source = item.partition("=")
            if not sep or not target.strip() or not source.strip():
                raise InputError(f"--map {item!r}: expected TARGET=SOURCE, e.g. outcome.message=error.detail")
            pairs.append((target.strip(), source.strip()))
        return cls(tuple(pairs))


class Reader(Protocol):
    """One log format."""

    name: str

    def sniff(self, path: Path, head: bytes) -> float:
        """How sure this reader is that the file is its format, 0..1 (from the name and first bytes)."""
        ...

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        """The file's events; unusable records counted in `summary`."""
        ...


ReaderFactory = Callable[[], Reader]
