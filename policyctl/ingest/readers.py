"""Readers for every log format policyctl takes: its own events, OpenTelemetry traces, OPA decision
logs, JSON documents and transcripts, CSV, plain text, and any JSON lines through a field mapping."""

from __future__ import annotations

import contextlib
import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from policyctl.errors import InputError, Problem
from policyctl.ingest.base import Event, Mapping, ReadSummary
from policyctl.model.jsonl import MAX_LINE_BYTES, iter_lines
from policyctl.model.records import STATUSES

MESSAGE_KEYS = ("message", "content", "msg", "log", "text", "error", "detail")
TIME_KEYS = ("ts", "timestamp", "time", "@timestamp", "created_at", "date")
# words a failed step's text carries in transcripts and free-form logs (English, as tools print them)
_FAILURE_WORDS = re.compile(r"\b(error|exception|traceback|failed|failure|fatal|refused|denied|forbidden|"
                            r"not found|invalid|crash(?:ed)?|panic|segfault|unauthori[sz]ed)\b", re.I)
_TIMEOUT_WORDS = re.compile(r"\b(time[ds]? ?out|deadline exceeded)\b", re.I)


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    with path.open("rb") as stream:
        for lineno, (raw, too_long) in enumerate(iter_lines(stream), start=1):
            yield lineno, raw, too_long


def _json_lines(path: Path, summary: ReadSummary) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line; bad lines counted."""
    name = str(path)
    for lineno, raw, too_long in _lines(path):
        if too_long:
            summary.skip("line_too_long", Problem(name, f"line longer than {MAX_LINE_BYTES} bytes; skipped",
                                                  code="line_too_long", line=lineno))
            continue
        if not raw.strip():
            continue
        try:
            yield lineno, orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            summary.skip("bad_json", Problem(name, f"not JSON ({str(exc).split(':', 1)[0]}); skipped",
                                             code="bad_json", line=lineno))


def first_json(head: bytes) -> Any:
    """The first line of `head` parsed as JSON, or the whole head when it is one document, else None."""
    first = head.lstrip().split(b"\n", 1)[0]
    try:
        return orjson.loads(first)
    except orjson.JSONDecodeError:
        return None


def _status(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v in STATUSES:
        return v
    return {"success": "ok", "succeeded": "ok", "passed": "ok", "info": "ok", "ok": "ok", "failed": "error",
            "failure": "error", "fatal": "crash", "critical": "crash", "err": "error", "warn": "ok",
            "warning": "ok", "timed_out": "timeout", "deny": "denied"}.get(v)


def status_of_text(text: str) -> str:
    """A status for a message that comes with none: timeout or error when its words say so, else ok."""
    if _TIMEOUT_WORDS.search(text):
        return "timeout"
    return "error" if _FAILURE_WORDS.search(text) else "ok"


def iso_from_nanos(value: Any) -> str | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    if n <= 0:
        return None
    seconds, nanos = divmod(n, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating objects, and lists where a part is an index (`agents.0.id`)."""
    parts = path.split(".")
    node: Any = doc
    for part, nxt_part in zip(parts[:-1], parts[1:], strict=True):
        empty: Any = [] if nxt_part.isdigit() else {}
        if isinstance(node, list):
            i = int(part)
            while len(node) <= i:
                node.append(None)
            if not isinstance(node[i], list | dict):
                node[i] = empty
            node = node[i]
        else:
            if not isinstance(node.get(part), list | dict):
                node[part] = empty
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        i = int(last)
        while len(node) <= i:
            node.append(None)
        node[i] = value
    else:
        node[last] = value


# --------------------------------------------------------------------------- policyctl events


class EventsReader:
    """policyctl's own Event lines (exported logs, the gateway's decision log).

    The gateway writes a decision and later its outcome as a second line with the same id:
    the last line for an id wins. A line without an outcome is held back until the file set
    ends or its outcome line arrives, so memory grows only with decisions still awaiting one.
    """

    name = "events"

    def sniff(self, path: Path, head: bytes) -> float:
        doc = first_json(head)
        return 0.95 if isinstance(doc, dict) and isinstance(doc.get("input"), dict) else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        pending: dict[str, Event] = {}
        for lineno, doc in _json_lines(path, summary):
            if not isinstance(doc, dict) or not isinstance(doc.get("input"), dict):
                why = "input: required field is missing" if isinstance(doc, dict) and "input" not in doc else \
                    "not an Event object (id and input are required)"
                summary.skip("not_an_event", Problem(name, f"{why}; skipped", code="not_an_event", line=lineno))
                continue
            ident = doc.get("id")
            if not isinstance(ident, str) or not ident:
                doc["id"] = ident = f"{path.name}:{lineno}"
            if ident in pending:
                pending.pop(ident)
                summary.superseded += 1
            if not isinstance(doc.get("outcome"), dict):
                pending[ident] = doc  # a decision line: its outcome may follow
                continue
            yield doc
        yield from pending.values()


# --------------------------------------------------------------------------- OpenTelemetry


_OTEL_ERROR = 2  # STATUS_CODE_ERROR


def _attr_value(value: Any) -> Any:
    """An OTLP/JSON AnyValue as plain JSON."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "arrayValue" in value:
        return [_attr_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _attrs((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        try:
            value = item["value"]
            string = value.get("stringValue", _NONE)  # the common case first: most attributes are strings
            out[item["key"]] = string if string is not _NONE else _attr_value(value)
        except (KeyError, TypeError, AttributeError):
            continue
    return out


_NONE = object()


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def span_event(span: dict[str, Any], resource: dict[str, Any], scope: str | None,
               attributes: dict[str, Any] | None = None) -> Event:
    """One span (OTLP/JSON shape) as an Event, by the GenAI semantic conventions.

    operation (`gen_ai.operation.name`) → action.type; the agent (`gen_ai.agent.id`/`.name`,
    else the service) → input.agents; `gen_ai.tool.name` and `gen_ai.tool.call.arguments` →
    action.tool and action.arguments; the model → action.model; `error.type`, the span
    status and exception events → outcome. The trace and span ids and every attribute are
    kept under `otel`.
    """
    a = attributes if attributes is not None else _attrs(span.get("attributes"))
    get = a.get
    service = resource.get("service.name")
    agent_name = get("gen_ai.agent.name")
    agent: dict[str, Any] = {"id": str(get("gen_ai.agent.id") or agent_name or service or "unknown")}
    role = agent_name or get("agent.role") or service
    if role:
        agent["role"] = str(role)
    action: dict[str, Any] = {"type": str(get("gen_ai.operation.name") or span.get("name") or "span")}
    tool = get("gen_ai.tool.name")
    if tool is not None:
        action["tool"] = tool
    arguments = get("gen_ai.tool.call.arguments")
    if arguments is not None:
        action["arguments"] = _maybe_json(arguments)
    for key, field in _GENAI_FIELDS:
        value = get(key)
        if value is not None:
            action[field] = value
    status = span.get("status") or {}
    error_type = get("error.type")
    message = status.get("message") or ""
    failed = status.get("code") in (_OTEL_ERROR, "STATUS_CODE_ERROR") or error_type is not None
    trace: list[str] = []
    for e in span.get("events") or ():
        if isinstance(e, dict) and e.get("name") == "exception":
            failed = True
            x = e.get("attributes")
            x = _attrs(x) if isinstance(x, list) else (x or {})
            error_type = error_type or x.get("exception.type")
            message = message or x.get("exception.message") or ""
            if x.get("exception.stacktrace"):
                trace.append(str(x["exception.stacktrace"]))
    if failed and not message:
        message = str(error_type or "error")
    outcome_status = ("timeout" if _TIMEOUT_WORDS.search(f"{error_type} {message}") else "error") if failed else "ok"
    start, end = span.get("startTimeUnixNano"), span.get("endTimeUnixNano")
    duration = None
    if isinstance(start, str | int) and isinstance(end, str | int):
        with contextlib.suppress(ValueError):
            duration = round((int(end) - int(start)) / 1e6, 3)
    trace_id, span_id = span.get("traceId", ""), span.get("spanId", "")
    return {"id": f"span-{trace_id}-{span_id}", "ts": iso_from_nanos(start),
            "input": {"kind": "action", "agents": [agent], "action": action,
                      "resource": {"kind": "service", "id": str(service or scope or "unknown")}},
            "outcome": {"status": outcome_status, "message": str(message), "code": error_type,
                        "duration_ms": duration},
            "trace": trace,
            "otel": {"trace_id": trace_id, "span_id": span_id, "parent_span_id": span.get("parentSpanId") or None,
                     "name": span.get("name"), "kind": span.get("kind"), "scope": scope, "resource": resource,
                     "attributes": a}}


_GENAI_FIELDS = (("gen_ai.request.model", "model"), ("gen_ai.system", "system"), ("gen_ai.provider.name", "provider"))


def _export_events(doc: Any) -> Iterator[Event]:
    for rs in doc.get("resourceSpans") or []:
        resource = _attrs(((rs or {}).get("resource") or {}).get("attributes"))
        for ss in (rs or {}).get("scopeSpans") or (rs or {}).get("instrumentationLibrarySpans") or []:
            scope = ((ss or {}).get("scope") or (ss or {}).get("instrumentationLibrary") or {}).get("name")
            for span in (ss or {}).get("spans") or []:
                if isinstance(span, dict):
                    yield span_event(span, resource, scope)


class OtlpJsonReader:
    """OTLP/JSON traces: the Collector's file exporter (one ExportTraceServiceRequest per line),
    or one pretty-printed export document."""

    name = "otlp-json"

    def sniff(self, path: Path, head: bytes) -> float:
        return 0.97 if b'"resourceSpans"' in head else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        with path.open("rb") as f:
            first = f.readline()
        try:
            orjson.loads(first)
            whole = False
        except orjson.JSONDecodeError:
            whole = True  # a pretty-printed document: its first line alone is not JSON
        docs: Iterator[tuple[int, Any]]
        if whole:
            try:
                docs = iter([(1, orjson.loads(path.read_bytes()))])
            except orjson.JSONDecodeError as exc:
                summary.skip("bad_json", Problem(name, f"not JSON ({str(exc).split(':', 1)[0]})", code="bad_json"))
                return
        else:
            docs = _json_lines(path, summary)
        for lineno, doc in docs:
            if not isinstance(doc, dict) or "resourceSpans" not in doc:
                summary.skip("not_otlp", Problem(name, "not an OTLP ExportTraceServiceRequest (no resourceSpans); "
                                                 "skipped", code="not_otlp", line=lineno))
                continue
            yield from _export_events(doc)


class OtlpProtoReader:
    """OTLP protobuf traces (ExportTraceServiceRequest), one message per file or a sequence of
    messages each preceded by its length as a 4-byte big-endian integer."""

    name = "otlp-proto"

    def sniff(self, path: Path, head: bytes) -> float:
        if path.suffix.lower() in (".pb", ".binpb", ".proto", ".otlp", ".bin"):
            return 0.9
        return 0.5 if head[:1] == b"\x0a" and not _printable(head) else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        data = path.read_bytes()
        messages: list[bytes] = []
        at = 0
        while at + 4 <= len(data):  # length-delimited?
            size = int.from_bytes(data[at:at + 4], "big")
            if size == 0 or at + 4 + size > len(data):
                messages = []
                break
            messages.append(data[at + 4:at + 4 + size])
            at += 4 + size
        if not messages or at != len(data):
            messages = [data]
        for i, blob in enumerate(messages, start=1):
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(blob)
            except DecodeError as exc:
                summary.skip("bad_protobuf", Problem(str(path), f"message {i}: not an OTLP protobuf "
                                                     f"ExportTraceServiceRequest ({exc})", code="bad_protobuf"))
                continue
            if not request.resource_spans:
                summary.skip("empty_export", Problem(str(path), f"message {i}: no spans", code="empty_export"))
                continue
            yield from _proto_events(request)


def _proto_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_proto_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _proto_attrs(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def _proto_attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value) for kv in items}


def _proto_events(request: Any) -> Iterator[Event]:
    """Spans of a protobuf export, in the OTLP/JSON shape span_event reads (ids as hex, as OTLP/JSON has them)."""
    for rs in request.resource_spans:
        resource = _proto_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name or None
            for sp in ss.spans:
                events = [{"name": e.name, "attributes": _proto_attrs(e.attributes)} for e in sp.events]
                span = {"traceId": sp.trace_id.hex(), "spanId": sp.span_id.hex(),
                        "parentSpanId": sp.parent_span_id.hex(), "name": sp.name, "kind": sp.kind,
                        "startTimeUnixNano": sp.start_time_unix_nano, "endTimeUnixNano": sp.end_time_unix_nano,
                        "status": {"code": sp.status.code, "message": sp.status.message}, "events": events}
                yield span_event(span, resource, scope, attributes=_proto_attrs(sp.attributes))


def _printable(head: bytes) -> bool:
    try:
        text = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(1 for c in text if c.isprintable() or c in "\r\n\t") > 0.95 * len(text)


# --------------------------------------------------------------------------- OPA


class OpaDecisionLogReader:
    """OPA's decision logs (`decision_id`, `path`, `input`, `result`, `timestamp`, `bundles`).

    The input is replayed as logged; OPA's inputs need not be policyctl inputs, so one without
    `kind` is taken as an action whose type is the decision path. The result becomes the
    logged decision (an object with `action` as is; `true`/`false` as allow/deny). OPA logs no
    outcome: the events replay as decisions, neither failures nor successes.
    """

    name = "opa"

    def sniff(self, path: Path, head: bytes) -> float:
        doc = first_json(head)
        return 0.96 if isinstance(doc, dict) and "decision_id" in doc and ("path" in doc or "query" in doc) else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        for lineno, doc in _json_lines(path, summary):
            if not isinstance(doc, dict) or "decision_id" not in doc:
                summary.skip("not_opa", Problem(name, "not an OPA decision log entry (no decision_id); skipped",
                                                code="not_opa", line=lineno))
                continue
            inp = doc.get("input")
            if not isinstance(inp, dict):
                summary.skip("no_input", Problem(name, "the decision has no input object; nothing to replay",
                                                 code="no_input", line=lineno))
                continue
            inp = dict(inp)
            if "kind" not in inp:
                inp["kind"] = "action"
                if not isinstance(inp.get("action"), dict):
                    inp["action"] = {"type": str(doc.get("path") or "opa").strip("/").replace("/", ".") or "opa"}
            result = doc.get("result")
            decision: dict[str, Any] | None = None
            if isinstance(result, dict) and isinstance(result.get("action"), str):
                decision = {"action": result["action"], "params": result.get("params") or {}, "source": "opa"}
            elif isinstance(result, bool):
                decision = {"action": "allow" if result else "deny", "params": {}, "source": "opa"}
            event: Event = {"id": str(doc["decision_id"]), "ts": doc.get("timestamp"), "input": inp,
                            "opa": {k: v for k, v in doc.items() if k != "input"}}
            if decision is not None:
                event["decision"] = decision
            yield event


# --------------------------------------------------------------------------- JSON documents


def _message_event(msg: dict[str, Any], i: int, stem: str) -> Event:
    """One message of a transcript (role/content, OpenAI-style tool calls and results) as an Event."""
    role = str(msg.get("role") or msg.get("speaker") or "unknown")
    name = str(msg.get("name") or msg.get("agent") or msg.get("sender") or role)
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        content = " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    text = "" if content is None else str(content)
    action: dict[str, Any] = {"type": "message", "role": role}
    calls = msg.get("tool_calls")
    if isinstance(calls, list) and calls:
        fn = (calls[0] or {}).get("function") or {}
        action.update({"type": "tool_call", "tool": fn.get("name"), "arguments": _maybe_json(fn.get("arguments"))})
    elif role == "tool":
        action.update({"type": "tool_result", "tool": msg.get("name") or msg.get("tool_call_id")})
    explicit = _status(msg.get("status")) or ("error" if msg.get("is_error") or msg.get("isError") or
                                              msg.get("error") else None)
    status = explicit or (status_of_text(text) if role in ("tool", "function", "system") or action["type"] != "message"
                          else status_of_text(text) if _FAILURE_WORDS.search(text[:400]) else "ok")
    message = text or str(msg.get("error") or "")
    ts = next((msg[k] for k in TIME_KEYS if isinstance(msg.get(k), str)), None)
    return {"id": str(msg.get("id") or f"{stem}:{i}"), "ts": ts,
            "input": {"kind": "action", "agents": [{"id": name, "role": role}], "action": action},
            "outcome": {"status": status, "message": message[:4000]}, "message_raw": msg}


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and "role" in item and ("content" in item or "tool_calls" in item)


class JsonDocumentReader:
    """A whole-file JSON document: an array of events or of transcript messages (role/content),
    or an object holding such a list (`events`, `records`, `messages`, `items`, `data`), or one event."""

    name = "json"

    def sniff(self, path: Path, head: bytes) -> float:
        stripped = head.lstrip()
        if stripped[:1] == b"[":
            return 0.9
        if stripped[:1] == b"{" and first_json(head) is None:
            return 0.6  # a pretty-printed object
        return 0.3 if path.suffix.lower() == ".json" else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            summary.skip("bad_json", Problem(name, f"not a JSON document ({str(exc).split(':', 1)[0]})",
                                             code="bad_json"))
            return
        items: Any = doc
        if isinstance(doc, dict):
            key = next((k for k in ("events", "records", "messages", "items", "data", "logs") if
                        isinstance(doc.get(k), list)), None)
            items = doc[key] if key else [doc]
        if not isinstance(items, list):
            summary.skip("not_a_list", Problem(name, "a JSON document of neither events nor messages",
                                               code="not_a_list"))
            return
        for i, item in enumerate(items, start=1):
            if isinstance(item, dict) and isinstance(item.get("input"), dict):
                item.setdefault("id", f"{path.name}:{i}")
                yield item
            elif _is_message(item):
                yield _message_event(item, i, path.name)
            elif isinstance(item, dict) and mapping is not None:
                yield mapped_event(item, mapping, f"{path.name}:{i}")
            else:
                summary.skip("not_an_event", Problem(name, f"item {i}: neither an Event nor a role/content "
                                                     "message (use --map to say where the fields are)",
                                                     code="not_an_event", line=i))


# --------------------------------------------------------------------------- CSV and text


class CsvReader:
    """CSV through the `csv` module, so quoted fields may hold commas and newlines.

    Columns: a message column (message, content, msg, log, text, error, detail), optionally id,
    ts/timestamp/time, status/level, and `input.<path>` columns that become input fields; every
    other column is kept under `csv`. Without a status column every row is a failure (`error`):
    an export of failures.
    """

    name = "csv"

    def sniff(self, path: Path, head: bytes) -> float:
        if path.suffix.lower() in (".csv", ".tsv"):
            return 0.9
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lower()
        if first.lstrip()[:1] in ("{", "["):
            return 0.0
        return 0.4 if "," in first and any(k in first for k in MESSAGE_KEYS) else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        csv.field_size_limit(MAX_LINE_BYTES)
        with path.open("r", encoding="utf-8", errors="replace", newline="") as f:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            reader = csv.reader(f, dialect=dialect)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                return
            lower = [h.lower() for h in header]
            msg_col = next((lower.index(k) for k in MESSAGE_KEYS if k in lower), None)
            if msg_col is None and mapping is None:
                raise InputError(f"{name}:1: no message column (one of {', '.join(MESSAGE_KEYS)}) in the CSV header; "
                                 "name one with --map outcome.message=COLUMN")
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    summary.skip("bad_csv", Problem(name, f"not CSV ({exc}); skipped", code="bad_csv",
                                                    line=reader.line_num))
                    continue
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    summary.skip("bad_csv", Problem(name, f"{len(row)} columns, the header has {len(header)}; skipped",
                                                    code="bad_csv", line=reader.line_num))
                    continue
                data = dict(zip(header, row, strict=True))
                where = f"{path.name}:{reader.line_num}"
                if mapping is not None:
                    yield mapped_event(data, mapping, where)
                    continue
                yield self._event(data, dict(zip(lower, row, strict=True)), header[msg_col or 0], where)

    @staticmethod
    def _event(data: dict[str, str], low: dict[str, str], msg_key: str, where: str) -> Event:
        inp: dict[str, Any] = {"kind": "action", "action": {"type": "log"}}
        kept: dict[str, str] = {}
        for key, value in data.items():
            if key.lower().startswith("input."):
                _put(inp, key[len("input."):], value)
            elif key != msg_key and key.lower() not in ("id", "status", "level", *TIME_KEYS):
                kept[key] = value
        status = _status(low.get("status")) or _status(low.get("level")) or ("error" if "status" not in low else "ok")
        ts = next((low[k] for k in TIME_KEYS if low.get(k)), None)
        return {"id": low.get("id") or where, "ts": ts, "input": inp,
                "outcome": {"status": status, "message": data.get(msg_key, "")}, "csv": kept}


class TextReader:
    """Plain text: every non-blank line is one failure, its text the message."""

    name = "text"

    def sniff(self, path: Path, head: bytes) -> float:
        return 0.2 if _printable(head) else 0.0

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        name = str(path)
        for lineno, raw, too_long in _lines(path):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                summary.warn(Problem(name, "invalid UTF-8 replaced with U+FFFD", code="bad_utf8", line=lineno))
            if not text.strip():
                continue
            if too_long:
                summary.warn(Problem(name, f"line longer than {MAX_LINE_BYTES} bytes; truncated",
                                     code="line_truncated", line=lineno))
            bad = sum(1 for c in text if (ord(c) < 32 and c != "\t") or c == "\ufffd")
            if bad > max(3, len(text) // 4):
                summary.skip("binary", Problem(name, "binary junk, not a log line; skipped", code="binary",
                                               line=lineno))
                continue
            yield {"id": f"{path.name}:{lineno}", "ts": None,
                   "input": {"kind": "action", "action": {"type": "log"}},
                   "outcome": {"status": "error", "message": text[:MAX_LINE_BYTES] + ("…" if too_long else "")}}


# --------------------------------------------------------------------------- mapped JSON lines


def mapped_event(doc: dict[str, Any], mapping: Mapping, where: str) -> Event:
    """An Event whose fields are read from `doc` where the mapping says; the record is kept under `raw`."""
    event: Event = {"id": None, "ts": None, "input": {"kind": "action", "action": {"type": "event"}},
                    "outcome": {"status": None, "message": ""}}
    for target, source in mapping.fields:
        value = doc.get(source) if source in doc else _get(doc, source)
        if value is None:
            continue
        if target == "outcome.status":
            value = _status(value) or value
        _put(event, target, value)
    if not event.get("id"):
        event["id"] = where
    event["id"] = str(event["id"])
    outcome = event["outcome"] if isinstance(event.get("outcome"), dict) else {}
    if outcome.get("status") not in STATUSES:
        outcome["status"] = status_of_text(str(outcome.get("message") or "")) if outcome.get("status") is None else \
            (_status(outcome.get("status")) or "error")
    event["outcome"] = outcome
    event["raw"] = doc
    return event


class MappedReader:
    """Any JSON lines, through `--map target=source` pairs (or a mapping file): `outcome.message=error.detail`."""

    name = "mapped"

    def sniff(self, path: Path, head: bytes) -> float:
        return 0.0  # only when named, or when a mapping is given

    def read(self, path: Path, summary: ReadSummary, mapping: Mapping | None) -> Iterator[Event]:
        if mapping is None:
            raise InputError(f"{path}: --format mapped needs --map TARGET=SOURCE pairs or --mapping FILE")
        name = str(path)
        for lineno, doc in _json_lines(path, summary):
            if not isinstance(doc, dict):
                summary.skip("not_an_object", Problem(name, "not a JSON object; skipped", code="not_an_object",
                                                      line=lineno))
                continue
            yield mapped_event(doc, mapping, f"{path.name}:{lineno}")
