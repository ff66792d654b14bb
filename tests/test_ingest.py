"""Readers behind one registry, chosen by content: each foreign format becomes events with nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import otel_data as data
import pytest

from policyctl.errors import InputError
from policyctl.ingest import ReadSummary, choose, load_mapping, normalize, read_events

MAPPING = ["id=run_id", "ts=start_time", "input.action.tool=name", "input.agents.0.id=extra.metadata.agent",
           "outcome.message=error", "outcome.status=status"]


def events(path: Path, **kw: object) -> tuple[list[dict[str, object]], ReadSummary]:
    summary = ReadSummary()
    out = list(read_events([path], summary=summary, **kw))  # type: ignore[arg-type]
    return out, summary


@pytest.mark.parametrize("shape", ["lines", "document", "protobuf"])
def test_otlp_traces_by_the_genai_conventions_become_events(tmp_path: Path, shape: str) -> None:
    path = tmp_path / {"lines": "traces.jsonl", "document": "trace.json", "protobuf": "traces.pb"}[shape]
    if shape == "protobuf":
        path.write_bytes(data.otlp_protobuf())
    else:
        path.write_text(data.otlp_json_lines() if shape == "lines" else data.otlp_json_document())
    evs, summary = events(path)
    assert summary.formats[str(path)] == {"lines": "otlp-json", "document": "otlp-json", "protobuf": "otlp-proto"}[shape]
    assert len(evs) == 30 and not summary.skipped
    failed = [e for e in evs if e["outcome"]["status"] != "ok"]  # type: ignore[index]
    assert len(failed) == 15 and all(e["outcome"]["status"] == "timeout" for e in failed)  # type: ignore[index]
    e = failed[0]
    action = e["input"]["action"]  # type: ignore[index]
    assert action["type"] == "execute_tool" and action["tool"] == "book_hotel" and action["model"] == "claude-sonnet"
    assert set(action["arguments"]) == {"city"}
    assert e["input"]["agents"][0]["role"] in ("planner", "booker", "concierge")  # type: ignore[index]
    assert e["outcome"]["code"] == "TimeoutError" and "timed out" in e["outcome"]["message"]  # type: ignore[index]
    assert e["otel"]["trace_id"] == f"{1:032x}" and e["otel"]["span_id"] == f"{100:016x}"  # type: ignore[index]
    assert str(e["ts"]).startswith("2026-03-") and str(e["ts"]).endswith("Z")
    assert e["outcome"]["duration_ms"] == 30000.0 and e["trace"]  # type: ignore[index]


def test_an_opa_decision_log_becomes_replayable_events(tmp_path: Path) -> None:
    path = tmp_path / "decisions.log"
    path.write_text(data.opa_decision_log())
    evs, summary = events(path)
    assert summary.formats[str(path)] == "opa" and len(evs) == 3
    assert evs[0]["id"] == "4ca636c1-55e4-417a-b1d8-4aceb67960d0"
    assert evs[0]["decision"] == {"action": "allow", "params": {}, "source": "opa"}
    assert evs[0]["opa"]["bundles"] == {"agentgov": {"revision": "9c1e"}}  # type: ignore[index]
    assert evs[0]["input"]["action"]["file_type"] == "parquet"  # type: ignore[index]


def test_a_transcript_array_and_a_pretty_json_document(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data.transcript(), indent=2))
    evs, summary = events(path)
    assert summary.formats[str(path)] == "json" and len(evs) == 37
    results = [e for e in evs if e["input"]["action"]["type"] == "tool_result"]  # type: ignore[index]
    assert len(results) == 12
    assert sum(1 for e in results if e["outcome"]["status"] == "timeout") == 6  # type: ignore[index]
    calls = [e for e in evs if e["input"]["action"]["type"] == "tool_call"]  # type: ignore[index]
    assert calls[0]["input"]["action"]["arguments"] == {"night": 0}  # type: ignore[index]
    assert all(e["outcome"]["status"] == "ok" for e in evs if e["input"]["agents"][0]["role"] == "assistant")  # type: ignore[index]


def test_csv_with_quoted_multiline_fields_is_read_by_records_not_lines(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    path.write_text(data.multiline_csv(40))
    evs, summary = events(path)
    assert len(evs) == 40 and not summary.skipped
    first = evs[0]
    assert first["outcome"]["status"] == "error" and "TimeoutError" in first["outcome"]["message"]  # type: ignore[index]
    assert first["input"]["action"] == {"type": "tool_call", "tool": "book_hotel"}  # type: ignore[index]
    assert first["csv"] == {"host": "worker-1"} and first["ts"] == "2026-03-30T12:00:00Z"
    assert sum(1 for e in evs if e["outcome"]["message"] == "") == 10  # type: ignore[index]


def test_any_json_lines_through_a_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(data.mapped_export())
    mapping = load_mapping(MAPPING)
    evs, summary = events(path, mapping=mapping)
    assert summary.formats[str(path)] == "mapped" and len(evs) == 20
    e = evs[0]
    assert e["id"] == "run-0" and e["input"]["action"]["tool"] == "book_hotel"  # type: ignore[index]
    assert e["input"]["agents"] == [{"id": "booker"}]  # type: ignore[index]
    assert e["outcome"] == {"status": "error", "message": "TimeoutError('hotel API timed out')"}
    assert evs[1]["outcome"]["status"] == "ok" and e["raw"]["run_type"] == "tool"  # type: ignore[index]
    # the same mapping from a file
    file = tmp_path / "map.json"
    file.write_text(json.dumps(dict(m.split("=", 1) for m in MAPPING)))
    assert list(read_events([path], mapping=load_mapping(file=file))) == evs


def test_gateway_logs_keep_the_last_line_per_id(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    decision = {"id": "d1", "input": {"kind": "action", "action": {"type": "x"}}, "decision": {"action": "allow"}}
    lines = [decision, {**decision, "outcome": {"status": "error", "message": "boom"}},
             {**decision, "id": "d2"}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    evs, summary = events(path)
    assert [e["id"] for e in evs] == ["d1", "d2"] and evs[0]["outcome"]["status"] == "error"  # type: ignore[index]
    assert summary.superseded == 1


def test_bad_lines_are_counted_by_reason_and_nothing_readable_fails(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text('{"input": {"kind": "action"}, "id": "ok-1"}\nnot json\n{"no": "input"}\n')
    evs, summary = events(path)
    assert len(evs) == 1 and summary.skipped == {"bad_json": 1, "not_an_event": 1}
    assert "skipped 2 (" in summary.line() and str(path) in str(summary.problems[0])
    bad = tmp_path / "only-junk.jsonl"
    bad.write_text('{"no": "input"}\n{"x": 1}\n')
    _, summary = events(bad)
    with pytest.raises(InputError, match="nothing readable.*not_an_event 2"):
        summary.require_some()


def test_normalize_writes_event_lines_the_replays_read(tmp_path: Path) -> None:
    src = tmp_path / "traces.jsonl"
    src.write_text(data.otlp_json_lines())
    summary = ReadSummary()
    (out,) = normalize([src], tmp_path / "norm", summary=summary)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 30 and all(isinstance(x["input"], dict) for x in lines)
    assert choose(out).name == "events"


# ---------------------------------------------------------------------- the commands


def test_cluster_reads_otlp_traces_and_finds_the_failing_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.cli.main import main

    path = tmp_path / "traces.jsonl"
    path.write_text(data.otlp_json_lines(60))
    assert main(["cluster", str(path), "--embedder", "tfidf", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["totals"]["failures"] == 30 and "read 60 events (otlp-json 60)" in captured.err
    (top,) = [c for c in doc["clusters"] if c["size"] >= 25]
    assert any(d["field"] == "action.tool" and d["value"] == "book_hotel" for d in top["distinguishing"])


@pytest.mark.parametrize("embedder", ["tfidf"])
def test_a_csv_with_multiline_and_empty_messages_clusters_without_crashing(tmp_path: Path, embedder: str,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.cli.main import main

    path = tmp_path / "failures.csv"
    text = data.multiline_csv(40).replace("TimeoutError: read timed out", "")  # some failures say nothing
    path.write_text(text)
    assert main(["cluster", str(path), "--embedder", embedder, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["failures"] == 20


def test_an_unreadable_input_exits_1_with_the_counts(policy_repo: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.cli.main import main

    path = tmp_path / "junk.jsonl"
    path.write_text('{"x": 1}\nnot json\n')
    assert main(["cluster", str(path), "--embedder", "tfidf"]) == 1
    err = capsys.readouterr().err
    assert "nothing readable" in err and "bad_json 1" in err and "not_an_event 1" in err
    # a real policy repository: the exit is the unreadable log's, not a missing repository's
    code = main(["shadow", "--repo", str(policy_repo), "--base", "HEAD", "--candidate", "HEAD", "--logs", str(path)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert f"Error: nothing readable in {path}: " in captured.err
    assert "bad_json 1" in captured.err and "not_an_event 1" in captured.err


def test_shadow_replays_an_opa_decision_log(policy_repo: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.cli.main import main

    path = tmp_path / "decisions.log"
    path.write_text(data.opa_decision_log())
    code = main(["shadow", "--repo", str(policy_repo), "--base", "HEAD", "--candidate", "HEAD", "--logs", str(path),
                 "--no-fixtures", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["totals"]["events"] == 3
    # every logged OPA input is replayed: the seed policies route parquet off SMB on both revisions
    assert out["matrix"] == {"route→route": 3}


def test_mapped_export_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.cli.main import main

    path = tmp_path / "runs.jsonl"
    path.write_text(data.mapped_export(40))
    args = [f"--map={m}" for m in MAPPING]
    assert main(["cluster", str(path), "--embedder", "tfidf", "--json", *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["failures"] == 20


@pytest.mark.parametrize("embedder", ["tfidf", pytest.param("minilm", marks=pytest.mark.slow)])
def test_no_input_shape_crashes_an_embedder(embedder: str) -> None:
    """Empty or missing messages, a single text, all texts identical, texts too short for any n-gram."""
    from policyctl.cluster.embed import get_embedder

    impl = get_embedder(embedder)
    for texts in (["", "", ""], ["only one"], ["same"] * 4, ["a", "", "xy", "a"]):
        vectors = impl.embed(texts)
        assert vectors.shape[0] == len(texts)
        assert (abs(vectors).sum(axis=1) > 0).all()  # every row has a direction: cosine distance is defined
