"""Real-shaped foreign logs for the reader tests: OTLP traces by the GenAI semantic conventions,
OPA decision logs, a multi-agent transcript, a CSV export with multi-line fields, a mapped export."""

from __future__ import annotations

import csv
import io
import json
import random
from typing import Any

TOOLS = ("search_flights", "book_hotel", "get_weather", "send_email")


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def genai_spans(n: int = 30, seed: int = 1) -> list[dict[str, Any]]:
    """`execute_tool` spans of a travel-agent swarm; `book_hotel` fails with a timeout (half the spans
    are failures: every book_hotel call, and one in three search_flights calls with a 502)."""
    rng = random.Random(seed)
    spans = []
    t0 = 1_775_000_000_000_000_000
    for i in range(n):
        tool = "book_hotel" if i % 2 == 0 else rng.choice(("search_flights", "get_weather", "send_email"))
        agent = rng.choice(("planner", "booker", "concierge"))
        fails = tool == "book_hotel"
        start = t0 + i * 1_000_000_000
        span: dict[str, Any] = {
            "traceId": f"{i + 1:032x}", "spanId": f"{i + 100:016x}", "parentSpanId": f"{i + 1000:016x}",
            "name": f"execute_tool {tool}", "kind": 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + (30_000 if fails else 120) * 1_000_000),
            "attributes": [_kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", tool),
                           _kv("gen_ai.agent.name", agent), _kv("gen_ai.agent.id", f"{agent}-{i % 3}"),
                           _kv("gen_ai.tool.call.arguments", json.dumps({"city": rng.choice(("Oslo", "Lima"))})),
                           _kv("gen_ai.request.model", "claude-sonnet")],
            "status": {"code": 2, "message": f"upstream hotel API timed out after 30s (req {rng.randrange(10**6)})"}
            if fails else {"code": 1},
        }
        if fails:
            span["attributes"].append(_kv("error.type", "TimeoutError"))
            span["events"] = [{"name": "exception", "timeUnixNano": str(start + 29_000_000_000), "attributes": [
                _kv("exception.type", "TimeoutError"),
                _kv("exception.message", "hotel API read timeout"),
                _kv("exception.stacktrace", "Traceback (most recent call last):\n  File \"tools.py\", line 9")]}]
        spans.append(span)
    return spans


def export_request(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "travel-agents")]},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.genai"},
                                               "spans": spans}]}]}


def otlp_json_lines(n: int = 30) -> str:
    """The Collector's file exporter: one ExportTraceServiceRequest per line (here 3 spans each)."""
    spans = genai_spans(n)
    return "".join(json.dumps(export_request(spans[i:i + 3])) + "\n" for i in range(0, n, 3))


def otlp_json_document(n: int = 30) -> str:
    return json.dumps(export_request(genai_spans(n)), indent=2)


def otlp_protobuf(n: int = 30) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    doc = export_request(genai_spans(n))
    # protobuf's JSON mapping takes bytes as base64; OTLP/JSON has them as hex
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    import base64

                    s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()


def opa_decision_log(n: int = 3) -> str:
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "decision_id": f"4ca636c1-55e4-417a-b1d8-4aceb67960d{i}", "path": "agentgov/main/decision",
            "input": {"kind": "action", "agents": [{"id": f"etl-{i}", "role": "etl"}],
                      "action": {"type": "file_share", "protocol": "smb", "file_type": "parquet"},
                      "resource": {"kind": "share", "id": "fs-1"}},
            "result": {"action": "allow", "params": {}}, "timestamp": f"2026-03-30T12:00:0{i}.000Z",
            "bundles": {"agentgov": {"revision": "9c1e"}}, "labels": {"id": "opa-1", "version": "1.4.0"},
            "metrics": {"timer_rego_query_eval_ns": 81000}}))
    return "\n".join(lines) + "\n"


def transcript() -> list[dict[str, Any]]:
    """A raw multi-agent transcript: role/content messages, OpenAI-style tool calls and results."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are the planner of a travel swarm."}]
    for i in range(12):
        msgs.append({"role": "assistant", "name": "booker", "content": None,
                     "tool_calls": [{"id": f"call_{i}", "type": "function",
                                     "function": {"name": "book_hotel", "arguments": json.dumps({"night": i})}}]})
        if i % 2 == 0:
            msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "name": "book_hotel",
                         "content": f"Error: hotel API timed out after 30s (attempt {i})"})
        else:
            msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "name": "book_hotel",
                         "content": json.dumps({"confirmation": f"H{i:04d}"})})
        msgs.append({"role": "assistant", "name": "planner", "content": f"Noted step {i}."})
    return msgs


def multiline_csv(rows: int = 40) -> str:
    """A failure export whose messages hold quoted commas and newlines (stack traces); some are empty."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "timestamp", "status", "input.action.type", "input.action.tool", "message", "host"])
    for i in range(rows):
        fails = i % 2 == 0
        message = (f"tool book_hotel failed, retrying\nTraceback (most recent call last):\n  File \"t.py\", line {i}\n"
                   f"TimeoutError: read timed out" if fails else ("" if i % 4 == 1 else "booked, thanks"))
        w.writerow([f"row-{i}", f"2026-03-30T12:{i:02d}:00Z", "error" if fails else "ok", "tool_call",
                    "book_hotel" if fails else "get_weather", message, "worker-1"])
    return out.getvalue()


def mapped_export(rows: int = 20) -> str:
    """A trace export of an agent platform (run records with `run_id`, `error`, `inputs`)."""
    lines = []
    for i in range(rows):
        fails = i % 2 == 0
        lines.append(json.dumps({"run_id": f"run-{i}", "start_time": f"2026-03-30T12:{i:02d}:00Z",
                                 "name": "book_hotel" if fails else "get_weather", "run_type": "tool",
                                 "error": "TimeoutError('hotel API timed out')" if fails else None,
                                 "status": "error" if fails else "success",
                                 "extra": {"metadata": {"agent": "booker"}}}))
    return "\n".join(lines) + "\n"
