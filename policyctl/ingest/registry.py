"""The registry of readers, choosing one by content, and the two ways commands read logs:
a stream of events, or files normalised to policyctl's own JSON Lines for the replays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson

from policyctl.errors import InputError, UsageError
from policyctl.ingest.base import HEAD_BYTES, Event, Mapping, Reader, ReaderFactory, ReadSummary
from policyctl.ingest.readers import (
    CsvReader,
    EventsReader,
    JsonDocumentReader,
    MappedReader,
    OpaDecisionLogReader,
    OtlpJsonReader,
    OtlpProtoReader,
    TextReader,
    first_json,
)

READERS: dict[str, ReaderFactory] = {
    "events": EventsReader,
    "otlp-json": OtlpJsonReader,
    "otlp-proto": OtlpProtoReader,
    "opa": OpaDecisionLogReader,
    "json": JsonDocumentReader,
    "csv": CsvReader,
    "text": TextReader,
    "mapped": MappedReader,
}
FORMATS = ("auto", *READERS)


def load_mapping(pairs: list[str] | tuple[str, ...] = (), file: Path | None = None) -> Mapping | None:
    """`--map` pairs and/or a mapping file (JSON object or `target=source` lines), or None."""
    items = list(pairs)
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except OSError as exc:
            raise InputError(f"{file}: cannot read ({exc.strerror})") from exc
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{file}:{exc.lineno}: not JSON ({exc.msg})") from exc
            items += [f"{k}={v}" for k, v in doc.items()]
        else:
            items += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return Mapping.parse(items) if items else None


def choose(path: Path, fmt: str = "auto", mapping: Mapping | None = None) -> Reader:
    """The reader for a file: the one named, else the one most sure of the file's first bytes."""
    if fmt != "auto":
        try:
            return READERS[fmt]()
        except KeyError:
            raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}") from None
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    readers = [factory() for factory in READERS.values()]
    best = max(readers, key=lambda r: r.sniff(path, head))
    sure = best.sniff(path, head)
    json_lines = isinstance(first_json(head), dict)
    if mapping is not None and json_lines and sure < 0.95:
        return MappedReader()
    if json_lines and best.name == "text":
        return EventsReader()  # JSON lines of no known shape: say per line why they are not events
    return best if sure > 0 else TextReader()



def read_events(paths: list[Path], *, fmt: str = "auto", mapping: Mapping | None = None,
                summary: ReadSummary | None = None) -> Iterator[Event]:
    """Every event of every file, streaming, whatever its format."""
    summary = summary if summary is not None else ReadSummary()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        summary.files.append(str(path))
        if path.stat().st_size == 0:
            continue
        reader = choose(path, fmt, mapping)
        summary.formats[str(path)] = reader.name
        for event in reader.read(path, summary, mapping):
            summary.events[reader.name] += 1
            yield event


def normalize(paths: list[Path], into: Path, *, fmt: str = "auto", mapping: Mapping | None = None,
              summary: ReadSummary | None = None) -> list[Path]:
    """The logs as policyctl Event JSON Lines the replays read: one file per input, under `into`.

    Every input goes through its reader (so the gateway's decision-then-outcome lines are
    joined, last line per id), and the result is written once; the original is never touched.
    """
    summary = summary if summary is not None else ReadSummary()
    into.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for i, path in enumerate(paths):
        name = Path(path).name  # kept, so reports and pull requests name the file the user gave
        target = into / f"{i:03d}" / (name if name.endswith((".jsonl", ".ndjson")) else f"{name}.jsonl")
        out.append(normalize_file(Path(path), target, fmt=fmt, mapping=mapping, summary=summary))
    return out


def normalize_file(path: Path, target: Path, *, fmt: str = "auto", mapping: Mapping | None = None,
                   summary: ReadSummary | None = None) -> Path:
    """One log, whatever its format, as policyctl Event JSON Lines at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as sink:
        for event in read_events([path], fmt=fmt, mapping=mapping, summary=summary):
            sink.write(orjson.dumps(event, default=str) + b"\n")
    return target
