"""policyctl simulate as a user runs it: real git repositories, real regopy, the shipped worlds."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, write

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.model.records import FAILURES, Event
from policyctl.repo import snapshot

EVENTS = "1500"

DENY_REPORTING_DB = """# METADATA
# title: Reporting stays off the production databases
# custom:
#   mode: enforce
package agentgov.rules.reporting_db

import rego.v1

decisions contains {
\t"id": "deny_reporting_database",
\t"action": "deny",
\t"message": "reporting agents have no grants on production databases",
} if {
\tinput.kind == "action"
\tinput.resource.kind == "database"
\tsome agent in input.agents
\tagent.role == "reporting"
}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


Simulate = Callable[..., tuple[list[dict[str, Any]], list[dict[str, Any]], str]]


@pytest.fixture
def simulate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Simulate:
    """Run the CLI into a fresh file; return its events, its truth and what it printed."""
    counter = {"n": 0}

    def go(*args: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        counter["n"] += 1
        out = tmp_path / f"run{counter['n']}" / "events.jsonl"
        out.parent.mkdir()
        code, stdout, err = run(capsys, "simulate", "-o", str(out), *args)
        assert code == 0, err
        return read_jsonl(out), read_jsonl(out.with_name("events.truth.jsonl")), stdout
    return go


@pytest.fixture
def bare_repo(make_repo: Callable[..., Path]) -> Path:
    """A policy repository with the entrypoint and no rules: every fault of a world shows."""
    repo = make_repo(seed=False, name="bare")
    write(repo, "policies/main.rego", (PROJECT / "policies" / "main.rego").read_text())
    commit_all(repo, "entrypoint only")
    return repo


def by_fault(events: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    out: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for event, t in zip(events, truth, strict=True):
        assert event["id"] == t["id"]
        out[t["fault"]].append(event)
    return out


def failed(event: dict[str, Any]) -> bool:
    return event["outcome"]["status"] in FAILURES


def test_same_seed_gives_the_same_bytes_and_valid_events(policy_repo: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / name / "events.jsonl"
        out.parent.mkdir()
        code, stdout, err = run(capsys, "simulate", "--world", "demo", "--events", EVENTS, "--seed", seed,
                                "--repo", str(policy_repo), "-o", str(out))
        assert code == 0, err
        outputs.append((out.read_bytes(), out.with_name("events.truth.jsonl").read_bytes(), stdout))
    (a, a_truth, summary), (b, b_truth, _), (c, _, _) = outputs
    assert a == b and a_truth == b_truth
    assert a != c
    assert "1500 events from world demo" in summary and "failures" in summary and "parquet-smb-crash" in summary

    events = [json.loads(line) for line in a.splitlines()]
    truth = [json.loads(line) for line in a_truth.splitlines()]
    assert len(events) == len(truth) == 1500
    assert len({e["id"] for e in events}) == 1500
    head = snapshot(policy_repo).revision
    for event, t in zip(events, truth, strict=True):
        Event.from_dict(event)  # the Event schema every later stage reads
        assert set(t) == {"id", "fault", "noise"} and t["id"] == event["id"]
        assert event["revision"] == event["decision"]["revision"] == head
        assert (event["outcome"]["status"] in FAILURES) == (t["fault"] is not None or t["noise"])
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] >= "2026-03-30T00:00:00" and stamps[-1] < "2026-04-06T00:00:00"  # demo: 7 days


def test_demo_fails_between_5_and_20_percent_under_the_seed_policies(simulate: Simulate, policy_repo: Path) -> None:
    events, truth, _ = simulate("--world", "demo", "--events", "3000", "--seed", "1", "--repo", str(policy_repo))
    share = sum(map(failed, events)) / len(events)
    assert 0.05 <= share <= 0.20, share
    faults = Counter(t["fault"] for t in truth if t["fault"])
    # The seed policies route parquet off SMB and arbitrate port 22: those two never fire.
    assert set(faults) == {"oversize-https-timeout", "reporting-database-denied", "api-rate-limit-cascade"}
    assert any(t["noise"] for t in truth)


def test_a_route_avoids_the_fault_and_the_log_keeps_the_original_input(simulate: Simulate, policy_repo: Path,
                                                                       bare_repo: Path) -> None:
    bare, bare_truth, _ = simulate("--world", "demo", "--events", EVENTS, "--seed", "3", "--repo", str(bare_repo))
    seeded, seeded_truth, _ = simulate("--world", "demo", "--events", EVENTS, "--seed", "3", "--repo", str(policy_repo))
    # The same seed sends the same inputs to any revision: the two logs compare event by event.
    assert [(e["id"], e["ts"], e["input"]) for e in bare] == [(e["id"], e["ts"], e["input"]) for e in seeded]

    crashed = {e["id"] for e in by_fault(bare, bare_truth)["parquet-smb-crash"]}
    assert len(crashed) >= 20
    after = {e["id"]: (e, t) for e, t in zip(seeded, seeded_truth, strict=True)}
    for event_id in crashed:
        event, t = after[event_id]
        assert event["input"]["action"]["protocol"] == "smb"  # what the agent sent
        assert event["decision"]["action"] == "route"
        assert event["decision"]["params"] == {"action": {"protocol": "sftp"}}
        assert event["decision"]["reasons"][0]["rule"] == "route_parquet_off_smb"
        assert t["fault"] is None
        if not t["noise"]:
            assert event["outcome"]["status"] == "ok"


def test_deadlocks_say_who_waits_for_whom_and_arbitration_avoids_them(simulate: Simulate, policy_repo: Path,
                                                                      bare_repo: Path) -> None:
    bare, bare_truth, _ = simulate("--world", "demo", "--events", EVENTS, "--seed", "5", "--repo", str(bare_repo))
    deadlocks = by_fault(bare, bare_truth)["port22-deadlock"]
    assert len(deadlocks) >= 10
    for event in deadlocks:
        outcome, agents = event["outcome"], event["input"]["agents"]
        assert outcome["status"] == "deadlock" and event["input"]["resource"]["port"] == 22
        assert {"deploy", "backup"} <= {a["role"] for a in agents}
        waits = outcome["waits_for"]
        assert sorted(w["agent"] for w in waits) == sorted(a["id"] for a in agents)
        # Each agent waits for a lock held by the next one, and the last by the first: a cycle.
        for here, there in zip(waits, waits[1:] + waits[:1], strict=True):
            assert here["held_by"] == there["agent"]
        assert all(w["resource"].startswith(event["input"]["resource"]["host"]) for w in waits)
    assert len({e["outcome"]["message"] for e in deadlocks}) >= 5

    seeded, seeded_truth, _ = simulate("--world", "demo", "--events", EVENTS, "--seed", "5", "--repo", str(policy_repo))
    after = dict(zip([e["id"] for e in seeded], zip(seeded, seeded_truth, strict=True), strict=True))
    for event in deadlocks:
        again, t = after[event["id"]]
        assert again["decision"]["action"] == "arbitrate" and t["fault"] is None
        assert again["outcome"]["status"] != "deadlock"


def test_a_deny_prevents_the_attempt(simulate: Simulate, policy_repo: Path) -> None:
    write(policy_repo, "policies/rules/reporting_db.rego", DENY_REPORTING_DB)
    commit_all(policy_repo, "deny reporting on databases")
    events, truth, stdout = simulate("--world", "demo", "--events", EVENTS, "--seed", "2",
                                     "--repo", str(policy_repo), "--ref", "main")
    denied = [e for e in events if e["outcome"]["status"] == "denied"]
    assert len(denied) >= 20
    for event in denied:
        assert event["input"]["agents"][0]["role"] == "reporting" and event["input"]["resource"]["kind"] == "database"
        assert event["decision"]["action"] == "deny"
        assert "deny_reporting_database" in event["outcome"]["message"]
    assert "reporting-database-denied" not in {t["fault"] for t in truth}
    assert re.search(rf"denied\s+{len(denied)}\s", stdout)


def test_failures_read_like_real_logs_but_stay_learnable(simulate: Simulate, bare_repo: Path) -> None:
    events, truth, _ = simulate("--world", "demo", "--events", "3000", "--seed", "11", "--repo", str(bare_repo))
    groups = by_fault(events, truth)
    words: dict[str, set[str]] = defaultdict(set)
    for fault in ("parquet-smb-crash", "port22-deadlock", "oversize-https-timeout",
                  "reporting-database-denied", "api-rate-limit-cascade"):
        messages = [e["outcome"]["message"] for e in groups[fault]]
        # The same fault reads as many distinct lines, with varying templates and variables.
        assert len(set(messages)) >= 0.5 * len(messages) and len(set(messages)) >= 10, fault
        for word in ("timed out", "failed", "agent"):
            if any(word in m for m in messages):
                words[word].add(fault)
    assert all(len(faults) >= 2 for faults in words.values()) and len(words) == 3

    def share(selected: list[dict[str, Any]]) -> float:
        assert selected, "no traffic of this kind"
        return sum(map(failed, selected)) / len(selected)

    files = [e for e in events if e["input"].get("action", {}).get("type") == "file_share"]
    parquet = [e for e in files if e["input"]["action"]["file_type"] == "parquet"]
    big = [e for e in files if e["input"]["action"]["size_bytes"] > 2 ** 31]
    # A field combination fails; the same file type or size over another protocol works.
    assert share([e for e in parquet if e["input"]["action"]["protocol"] == "smb"]) > 0.75
    assert share([e for e in parquet if e["input"]["action"]["protocol"] == "sftp"]) < 0.05
    assert share([e for e in big if e["input"]["action"]["protocol"] == "https"]) > 0.75
    assert share([e for e in big if e["input"]["action"]["protocol"] == "sftp"]) < 0.05
    assert share([e for e in files if e["input"]["action"]["protocol"] == "https"
                  and e["input"]["action"]["size_bytes"] < 2 ** 30]) < 0.05
    apis = [e for e in events if e["input"].get("resource", {}).get("kind") == "api"]
    assert share([e for e in apis if len(e["input"]["agents"]) > 5]) > 0.7
    assert share([e for e in apis if len(e["input"]["agents"]) <= 5]) < 0.05
    queries = [e for e in events if e["input"].get("action", {}).get("type") == "db_query"]
    assert share([e for e in queries if e["input"]["agents"][0]["role"] == "reporting"
                  and e["input"]["resource"]["kind"] == "database"]) > 0.8
    assert share([e for e in queries if e["input"]["agents"][0]["role"] == "reporting"
                  and e["input"]["resource"]["kind"] == "warehouse"]) < 0.05


def test_the_fleet_world_has_its_own_vocabulary_and_faults(simulate: Simulate, policy_repo: Path) -> None:
    events, truth, _ = simulate("--world", "fleet", "--events", "2000", "--seed", "1", "--repo", str(policy_repo))
    faults = Counter(t["fault"] for t in truth if t["fault"])
    assert len(faults) >= 4
    assert 0.05 <= sum(map(failed, events)) / len(events) <= 0.25
    assert {e["input"]["action"]["type"] for e in events if "action" in e["input"]} >= {"map_sync", "firmware_update"}
    lifts = [e for e in events if e["outcome"]["status"] == "deadlock"]
    assert lifts and all(e["input"]["resource"]["kind"] == "lift" and e["outcome"]["waits_for"] for e in lifts)


def test_start_and_span_place_the_events(simulate: Simulate, policy_repo: Path,
                                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    events, _, _ = simulate("--world", "demo", "--events", "300", "--repo", str(policy_repo),
                            "--start", "2027-01-01T00:00:00Z", "--span", "2h")
    assert all("2027-01-01T00:00:00" <= e["ts"] < "2027-01-01T02:00:00" for e in events)
    code, _, err = run(capsys, "simulate", "--span", "2 hours", "-o", str(tmp_path / "x.jsonl"))
    assert code == 2 and "--span" in err and "not a duration" in err
    assert not (tmp_path / "x.jsonl").exists()


# --------------------------------------------------------------------------- a gateway over HTTP


@contextmanager
def decision_server(answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 that speaks the gateway's POST /v1/decide."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            status, reply = answer(body) if self.path == "/v1/decide" else (404, {"code": "not_found",
                                                                                    "message": self.path})
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_live_gateway_decides_the_same_as_the_revision(simulate: Simulate, policy_repo: Path) -> None:
    pipeline = build_revision(snapshot(policy_repo), verify=False).pipeline
    seen: list[dict[str, Any]] = []

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        seen.append(body)
        return 200, pipeline.decide_dict(body["input"])

    with decision_server(answer) as url:
        remote, remote_truth, stdout = simulate("--world", "demo", "--events", "400", "--seed", "4", "--gateway", url)
    local, local_truth, _ = simulate("--world", "demo", "--events", "400", "--seed", "4", "--repo", str(policy_repo))
    assert len(seen) == 400 and all(set(body) == {"input"} for body in seen)
    assert [e["input"] for e in remote] == [body["input"] for body in seen]
    assert [(e["decision"]["action"], e["outcome"]["status"]) for e in remote] == \
           [(e["decision"]["action"], e["outcome"]["status"]) for e in local]
    assert remote_truth == local_truth
    assert url in stdout


def test_gateway_errors_are_reported_not_crashed_on(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    policy_repo: Path) -> None:
    out = str(tmp_path / "events.jsonl")
    with decision_server(lambda body: (503, {"code": "no_revision", "message": "no revision is being served"})) as url:
        code, _, err = run(capsys, "simulate", "--events", "5", "--gateway", url, "-o", out)
    assert code == 1
    assert f"{url}/v1/decide answered HTTP 503: no_revision: no revision is being served" in err
    with decision_server(lambda body: (200, {"verdict": "yes"})) as url:
        code, _, err = run(capsys, "simulate", "--events", "5", "--gateway", url, "-o", out)
    assert code == 1 and "not a decision" in err
    code, _, err = run(capsys, "simulate", "--events", "5", "--gateway", url, "-o", out)  # the server is gone
    assert code == 1 and "is the gateway running?" in err
    assert not Path(out).exists()  # nothing half-written
    code, _, err = run(capsys, "simulate", "--gateway", url, "--ref", "main", "-o", out)
    assert code == 2 and "--gateway excludes" in err
