"""Reader throughput: events per second for each log format on 100k records, against a bare parse.

    python bench/ingest.py [--records 100000]

For each reader of policyctl.ingest the same bytes are parsed twice in one run: by the
reader (format detection, mapping to Events, every field kept) and by the bare parser
alone (orjson per line or per document for the JSON formats; protobuf's ParseFromString
for OTLP protobuf; the csv module; splitting lines for text). Ratio = reader events/s
÷ bare records/s. Target: >= 0.3 for OTLP/JSON (the format real agent platforms export).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import otel_data  # noqa: E402
from _common import table, write_result  # noqa: E402

MAPPING = ["id=run_id", "ts=start_time", "input.action.tool=name", "outcome.message=error", "outcome.status=status"]


def make_files(root: Path, n: int) -> dict[str, tuple[Path, Callable[[], int]]]:
    """name -> (file, bare parser returning the records it parsed)."""
    out: dict[str, tuple[Path, Callable[[], int]]] = {}
    spans = otel_data.genai_spans(1000)

    def lines_bare(path: Path) -> Callable[[], int]:
        def run() -> int:
            k = 0
            with path.open("rb") as f:
                for line in f:
                    if line.strip():
                        orjson.loads(line)
                        k += 1
            return k
        return run

    p = root / "events.jsonl"
    event = {"id": "evt-0", "ts": "2026-03-30T00:00:00Z", "input": {"kind": "action", "agents": [{"id": "a", "role": "r"}],
             "action": {"type": "file_share", "protocol": "smb"}}, "decision": {"action": "allow", "source": "default"},
             "outcome": {"status": "ok", "message": "wrote q3.parquet", "duration_ms": 12}}
    p.write_bytes(b"".join(orjson.dumps({**event, "id": f"evt-{i}"}) + b"\n" for i in range(n)))
    out["events"] = (p, lines_bare(p))

    p = root / "otlp.jsonl"  # the Collector's file exporter: one export request of 100 spans per line
    with p.open("wb") as f:
        for i in range(0, n, 100):
            batch = [{**spans[(i + j) % 1000], "spanId": f"{i + j:016x}"} for j in range(100)]
            f.write(orjson.dumps(otel_data.export_request(batch)) + b"\n")

    def otlp_bare(path: Path = p) -> int:
        k = 0
        with path.open("rb") as fh:
            for line in fh:
                doc = orjson.loads(line)
                k += sum(len(ss["spans"]) for rs in doc["resourceSpans"] for ss in rs["scopeSpans"])
        return k
    out["otlp-json"] = (p, otlp_bare)

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    one = otel_data.otlp_protobuf(1000)
    p = root / "otlp.pb"
    p.write_bytes(b"".join(len(one).to_bytes(4, "big") + one for _ in range(n // 1000)))

    def proto_bare(path: Path = p) -> int:
        data = path.read_bytes()
        at = k = 0
        while at < len(data):
            size = int.from_bytes(data[at:at + 4], "big")
            req = ExportTraceServiceRequest()
            req.ParseFromString(data[at + 4:at + 4 + size])
            k += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            at += 4 + size
        return k
    out["otlp-proto"] = (p, proto_bare)

    p = root / "opa.log"
    opa = json.loads(otel_data.opa_decision_log(1).splitlines()[0])
    p.write_bytes(b"".join(orjson.dumps({**opa, "decision_id": f"d-{i}"}) + b"\n" for i in range(n)))
    out["opa"] = (p, lines_bare(p))

    p = root / "transcript.json"
    msgs = otel_data.transcript()
    p.write_bytes(orjson.dumps([msgs[i % len(msgs)] for i in range(n)]))
    out["json"] = (p, lambda path=p: len(orjson.loads(path.read_bytes())))

    p = root / "failures.csv"
    p.write_text("\n".join(otel_data.multiline_csv(n).split("\n")))

    def csv_bare(path: Path = p) -> int:
        with path.open(newline="") as fh:
            return sum(1 for _ in csv.reader(fh)) - 1
    out["csv"] = (p, csv_bare)

    p = root / "app.log"
    p.write_text("".join(f"worker-{i % 9}: request {i} failed: connection reset by peer\n" for i in range(n)))
    out["text"] = (p, lambda path=p: sum(1 for ln in path.open("rb") if ln.strip()))

    p = root / "runs.jsonl"
    p.write_text("".join(otel_data.mapped_export(2).splitlines(keepends=True)[i % 2] for i in range(n)))
    out["mapped"] = (p, lines_bare(p))
    return out


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    from policyctl.ingest import ReadSummary, load_mapping, read_events

    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.records)
        for name, (path, bare) in files.items():
            mapping = load_mapping(MAPPING) if name == "mapped" else None
            t_bare, n_bare = best_of(bare)
            summary = ReadSummary()
            t_read, n_read = best_of(lambda p=path, m=mapping, s=summary: sum(1 for _ in read_events([p], mapping=m,
                                                                                         summary=s)))
            chosen = summary.formats[str(path)]
            ratio = (n_read / t_read) / (n_bare / t_bare)
            results[name] = {"reader": chosen, "events": n_read, "bare_records": n_bare, "bytes": path.stat().st_size,
                             "reader_events_per_s": round(n_read / t_read), "bare_per_s": round(n_bare / t_bare),
                             "ratio": round(ratio, 3)}
            rows.append([name, chosen, n_read, f"{n_read / t_read:,.0f}", f"{n_bare / t_bare:,.0f}", f"{ratio:.2f}"])
    print(table(rows, ["format", "chosen reader", "events", "reader events/s", "bare parse /s", "ratio"]))
    met = results["otlp-json"]["ratio"] >= 0.3 and all(r["reader"] == k for k, r in results.items())
    path = write_result("ingest", {"records": args.records, "formats": results, "met": met,
                                   "target": "otlp-json ratio >= 0.3; every format detected by content"})
    print(f"targets met: {met}\nwrote {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
