"""Records, schemas, the JSONL reader and expectation matching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policyctl.decide import check_input
from policyctl.errors import InputError, InputLimitError, ValidationError
from policyctl.model.expect import mismatches
from policyctl.model.jsonl import ReadStats, read_jsonl
from policyctl.model.records import Event, Fixture, parse_override_header
from policyctl.model.schema import schema_errors


def test_reader_counts_and_reports_every_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps({"id": "e1", "input": {"kind": "action", "action": {"type": "x"}}})
    path.write_bytes(b"\n".join([
        good.encode(), b"{not json", b"", b"\xff\xfe garbage", good.encode(), b"x" * (2 << 20),
        json.dumps({"id": "e3"}).encode(), good.encode()[:-5],
    ]) + b"\n")
    stats = ReadStats()
    kept = list(read_jsonl(path, stats=stats, validate=lambda r, w: Event.from_dict(r, where=w)))
    assert [n for n, _ in kept] == [1, 5]
    assert (stats.lines, stats.kept, stats.rejected, stats.blank) == (8, 2, 5, 1)
    where = [(p.line, p.code) for p in stats.problems]
    assert where == [(2, "bad_json"), (4, "bad_json"), (6, "line_too_long"), (7, "validation_error"), (8, "bad_json")]
    assert "input: required field is missing" in stats.problems[3].message
    assert stats.summary() == "8 lines read, 2 kept, 5 rejected, 1 blank"
    with pytest.raises(InputError, match=r"events.jsonl:2: not JSON"):
        list(read_jsonl(path, strict=True))


def test_unknown_fields_are_kept() -> None:
    record = {"id": "e", "input": {"kind": "action", "action": {"type": "x"}, "custom": 1}, "team": "blue"}
    assert Event.from_dict(record).raw["team"] == "blue"
    fixture = Fixture.from_dict({"id": "f", "input": record["input"], "expect": {"action": "allow"}, "owner": "me"})
    assert fixture.raw["owner"] == "me" and fixture.input["custom"] == 1


CASES: list[Any] = [
    {"kind": "action", "action": {"type": "x"}},
    {"kind": "conflict", "agents": [{"id": "a"}, {"id": "b", "priority": 3}]},
    {"kind": "action"},
    {"kind": "conflict", "agents": [{"id": "a"}]},
    {"kind": "nope"},
    {},
    {"kind": "action", "action": {"type": ""}},
    {"kind": "action", "action": {"type": "x"}, "agents": [{"id": ""}]},
    {"kind": "action", "action": {"type": "x"}, "agents": [{"role": "r"}]},
    {"kind": "action", "action": {"type": "x"}, "agents": "a"},
    {"kind": "action", "action": {"type": "x"}, "resource": []},
    {"kind": "action", "action": {"type": "x"}, "agents": [{"id": "a", "priority": "high"}]},
    {"kind": "action", "action": "x"},
    {"kind": "action", "action": {"type": "x"}, "agents": None},  # found by schemathesis against the gateway
    {"kind": "action", "action": {"type": "x"}, "resource": None},
    {"kind": "conflict", "agents": [{"id": "a"}, {"id": "b"}], "action": {}},  # found by schemathesis too
    {"kind": "conflict", "agents": [{"id": "a"}, {"id": "b"}], "action": {"type": "lock"}},
    [],
]


@pytest.mark.parametrize("case", CASES)
def test_fast_input_check_agrees_with_the_schema(case: Any) -> None:
    schema_ok = not schema_errors("input", case)
    try:
        check_input(case)
        fast_ok = True
    except ValidationError:
        fast_ok = False
    assert fast_ok == schema_ok


def test_input_limits() -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InputLimitError, match="nested deeper"):
        check_input({"kind": "action", "action": {"type": "x"}, "context": {"d": deep}})
    with pytest.raises(InputLimitError, match="more than"):
        check_input({"kind": "action", "action": {"type": "x"}, "context": {"d": list(range(30_000))}})


def test_expect_is_a_subset_match_with_paths() -> None:
    decision = {"action": "route", "params": {"action": {"protocol": "sftp", "port": 22}}, "source": "policy"}
    assert mismatches({"action": "route", "params": {"action": {"protocol": "sftp"}}}, decision) == []
    assert mismatches({"params": {"action": {"protocol": "nfs"}}}, decision) == [
        "params.action.protocol: expected 'nfs', got 'sftp'"]
    assert mismatches({"params": {"winner": "a"}}, decision) == ["params.winner: expected 'a', missing"]
    assert mismatches({"x": True}, {"x": 1}) == ["x: expected True, got 1"]
    assert mismatches({"x": [1, 2]}, {"x": [1, 2, 3]})


HEADER = '''"""Serialize deploy agents on port 22 (INC-4412)."""
OVERRIDE = {"match": {"kind": "conflict", "resource.port": 22}, "expires": "2026-11-28T00:00:00Z", "priority": 100}

def decide(input):
    return None
'''


def test_override_header_is_read_without_running_the_script() -> None:
    header = parse_override_header(HEADER, file="overrides/port22.py")
    assert (header.name, header.priority, header.expires.isoformat()) == ("port22", 100, "2026-11-28T00:00:00+00:00")
    assert header.selects({"kind": "conflict", "resource": {"port": 22}})
    assert not header.selects({"kind": "conflict", "resource": {"port": "22"}})
    assert not header.selects({"kind": "action"})


@pytest.mark.parametrize(("source", "needle"), [
    (HEADER.replace('"2026-11-28T00:00:00Z"', '"next tuesday"'), "OVERRIDE.expires"),
    (HEADER.replace('"priority": 100', '"priority": 100, "colour": "red"'), "unknown field"),
    (HEADER.replace('"priority": 100}', '"priority": len("x")}'), "literal dict"),
    (HEADER.replace('"""Serialize deploy agents on port 22 (INC-4412)."""\n', ""), "docstring"),
    (HEADER.replace("def decide", "def other"), "def decide"),
    (HEADER.replace('"match": {', '"match": {"bad path!": 1, '), "OVERRIDE.match"),
    ("def (", "not valid Python"),
])
def test_override_header_errors_name_the_field(source: str, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_override_header(source, file="overrides/x.py")
    assert needle in str(info.value) and str(info.value).startswith("overrides/x.py")
