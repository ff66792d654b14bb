"""The simulator knows intent: a route that rewrites what the agent asked for is a diversion, not a fix.

Real git repositories, real regopy and the real decision pipeline, as `policyctl simulate` runs them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, write

from policyctl.cli.main import main
from policyctl.model.records import FAILURES, Event

WORLD = """\
world: intentional
description: Writers and interns write rows to two databases, directly or through pgbouncer.
time: {start: "2026-05-04T00:00:00Z", span: 1d}
intent: [action.type, action.rows, resource.kind, resource.id]
agents:
  - {role: writer, count: 6, id: "writer-{n}", priority: 5}
  - {role: intern, count: 3, id: "intern-{n}", priority: 1}
traffic:
  - name: write
    weight: 1
    agents: {role: {choice: [writer, intern], weights: [3, 1]}}
    action:
      type: db_write
      pool: {choice: [direct, pgbouncer]}
      rows: {uniform: [1, 2000]}
    resource:
      kind: database
      id: {choice: [db-01, db-02]}
faults:
  - name: intern-no-grant
    when: {kind: action, agents.role: intern, action.pool: direct}
    probability: 1.0
    status: error
    avoided_by: [deny]
    messages: ["permission denied for {agent} on {resource}"]
  - name: db01-down
    when: {kind: action, resource.id: db-01}
    probability: 0.9
    status: error
    code: E_DB_DOWN
    messages: ["{resource} refused the connection of {agent}"]
  - name: pgbouncer-big-batch
    when: {kind: action, action.pool: pgbouncer, action.rows: {gt: 1000}}
    probability: 0.9
    status: timeout
    messages: ["pgbouncer timed out on {input.action.rows} rows from {agent}"]
"""

RULE = """# METADATA
# title: {title}
# custom:
#   mode: enforce
package agentgov.rules.{name}

import rego.v1

decisions contains {{
\t"id": "{name}",
\t"action": "{action}",{params}
\t"message": "{title}",
}} if {{
{conditions}
}}
"""


def rule(name: str, action: str, conditions: list[str], params: dict[str, Any] | None = None) -> str:
    return RULE.format(name=name, title=name.replace("_", " "), action=action,
                       params=f'\n\t"params": {json.dumps(params)},' if params is not None else "",
                       conditions="\n".join(f"\t{c}" for c in conditions))


ROUTE_OFF_DB01 = rule("route_off_db01", "route", ['input.kind == "action"', 'input.resource.id == "db-01"'],
                      {"resource": {"id": "db-02"}})
ROUTE_BIG_BATCHES_DIRECT = rule("route_big_batches_direct", "route",
                                ['input.kind == "action"', 'input.action.pool == "pgbouncer"',
                                 "input.action.rows > 1000"], {"action": {"pool": "direct"}})
INTERNS = ['input.kind == "action"', 'input.action.pool == "direct"', "some agent in input.agents",
           'agent.role == "intern"']
ROUTE_INTERNS = rule("route_interns", "route", INTERNS, {"action": {"pool": "pgbouncer"}})
ARBITRATE_INTERNS = rule("arbitrate_interns", "arbitrate", INTERNS,
                         {"winner": "intern-1", "order": ["intern-1"]})
DENY_INTERNS = rule("deny_interns", "deny", INTERNS)


@dataclass
class Run:
    events: list[dict[str, Any]]
    truth: list[dict[str, Any]]
    summary: dict[str, Any]
    raw: bytes

    def by_id(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        return {e["id"]: (e, t) for e, t in zip(self.events, self.truth, strict=True)}


Simulate = Callable[..., Run]


@pytest.fixture
def world_file(tmp_path: Path) -> Path:
    path = tmp_path / "intentional.yaml"
    path.write_text(WORLD)
    return path


@pytest.fixture
def repo_with(make_repo: Callable[..., Path]) -> Callable[..., Path]:
    """A policy repository with the entrypoint and these rule modules ({name: source})."""
    counter = {"n": 0}

    def make(**rules: str) -> Path:
        counter["n"] += 1
        repo = make_repo(seed=False, name=f"policies{counter['n']}")
        write(repo, "policies/main.rego", (PROJECT / "policies" / "main.rego").read_text())
        for name, text in rules.items():
            write(repo, f"policies/rules/{name}.rego", text)
        commit_all(repo, "rules: " + (", ".join(rules) or "none"))
        return repo
    return make


@pytest.fixture
def simulate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Simulate:
    """`policyctl simulate --json` into a fresh file: the events, the truth, the summary, the bytes."""
    counter = {"n": 0}

    def go(world: Path | str, repo: Path, events: int = 800, seed: int = 1) -> Run:
        counter["n"] += 1
        out = tmp_path / f"run{counter['n']}" / "events.jsonl"
        out.parent.mkdir()
        code = main(["simulate", "--world", str(world), "--events", str(events), "--seed", str(seed),
                     "--repo", str(repo), "-o", str(out), "--json"])
        stdout, err = capsys.readouterr()
        assert code == 0, err
        raw = out.read_bytes() + out.with_name("events.truth.jsonl").read_bytes()
        return Run([json.loads(line) for line in out.read_text().splitlines()],
                   [json.loads(line) for line in out.with_name("events.truth.jsonl").read_text().splitlines()],
                   json.loads(stdout), raw)
    return go


def test_a_route_over_intent_is_a_diversion_and_a_failure(simulate: Simulate, world_file: Path,
                                                          repo_with: Callable[..., Path]) -> None:
    bare = simulate(world_file, repo_with())
    routed_repo = repo_with(route_off_db01=ROUTE_OFF_DB01)
    routed = simulate(world_file, routed_repo)
    again = simulate(world_file, routed_repo)  # the same revision: its commit id is in every decision

    down = [e["id"] for e, t in zip(bare.events, bare.truth, strict=True) if t["fault"] == "db01-down"]
    assert len(down) >= 100
    after = routed.by_id()
    db01 = [e for e in routed.events if e["input"]["resource"]["id"] == "db-01"]
    assert {e["id"] for e in db01} >= set(down)
    for event in db01:
        Event.from_dict(event)
        t = after[event["id"]][1]
        assert event["decision"]["action"] == "route"
        assert event["decision"]["params"] == {"resource": {"id": "db-02"}}
        assert event["input"]["resource"]["id"] == "db-01"  # the log keeps what the agent sent
        assert event["outcome"] == {"status": "diverted", "code": "E_DIVERTED", "duration_ms": 0,
                                    "message": "route rewrote intent resource.id: db-01 -> db-02; "
                                               "the interaction did not happen as asked"}
        assert t == {"id": event["id"], "fault": None, "noise": False}
        assert "trace" not in event

    # Diverted counts as its own status and as a failure; nothing was avoided.
    summary = routed.summary
    assert summary["statuses"]["diverted"] == len(db01)
    assert "db01-down" in bare.summary["faults"] and summary["faults"]["db01-down"] == 0
    assert summary["failures"] == sum(n for s, n in summary["statuses"].items() if s in FAILURES)
    assert summary["failures"] >= bare.summary["failures"]
    assert summary["failures"] == sum(e["outcome"]["status"] in FAILURES for e in routed.events)

    # The same seed gives the same bytes; the inputs, ids and times do not depend on the revision,
    # and an event the route does not touch has the same outcome as without the route.
    assert routed.raw == again.raw
    assert [(e["id"], e["ts"], e["input"]) for e in routed.events] == \
           [(e["id"], e["ts"], e["input"]) for e in bare.events]
    untouched = [(e, t) for e, t in zip(bare.events, bare.truth, strict=True)
                 if e["input"]["resource"]["id"] == "db-02"]
    assert len(untouched) >= 300
    for event, t in untouched:
        other, other_t = after[event["id"]]
        assert other["outcome"] == event["outcome"] and other_t == t


def test_the_summary_prints_diverted_among_the_failures(world_file: Path, repo_with: Callable[..., Path],
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["simulate", "--world", str(world_file), "--events", "300", "--seed", "2",
                 "--repo", str(repo_with(route_off_db01=ROUTE_OFF_DB01)), "-o", str(tmp_path / "e.jsonl")])
    out = capsys.readouterr().out
    assert code == 0
    diverted = sum(json.loads(line)["outcome"]["status"] == "diverted"
                   for line in (tmp_path / "e.jsonl").read_text().splitlines())
    assert diverted > 50
    assert re.search(rf"\n  diverted\s+{diverted}\s", out), out
    failures = re.search(r"\n  failures\s+(\d+)\s", out)
    assert failures is not None and int(failures.group(1)) >= diverted


def test_a_route_over_an_alternative_avoids_the_fault(simulate: Simulate, world_file: Path,
                                                      repo_with: Callable[..., Path]) -> None:
    bare = simulate(world_file, repo_with())
    routed = simulate(world_file, repo_with(route_big_batches_direct=ROUTE_BIG_BATCHES_DIRECT))
    hit = [e["id"] for e, t in zip(bare.events, bare.truth, strict=True) if t["fault"] == "pgbouncer-big-batch"]
    assert len(hit) >= 50
    after = routed.by_id()
    for event_id in hit:
        event, t = after[event_id]
        assert event["decision"]["action"] == "route" and event["decision"]["params"] == {"action": {"pool": "direct"}}
        assert event["input"]["action"]["pool"] == "pgbouncer"
        assert t["fault"] != "pgbouncer-big-batch"
        assert event["outcome"]["status"] != "diverted"
        if event["input"]["resource"]["id"] == "db-02" and event["input"]["agents"][0]["role"] == "writer":
            assert event["outcome"]["status"] == "ok", event
    assert routed.summary["faults"]["pgbouncer-big-batch"] == 0
    assert "diverted" not in routed.summary["statuses"]


def test_a_deny_only_fault_is_avoided_by_a_deny_and_nothing_else(simulate: Simulate, world_file: Path,
                                                                 repo_with: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    def interns(run: Run) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(e, t) for e, t in zip(run.events, run.truth, strict=True)
                if e["input"]["agents"][0]["role"] == "intern" and e["input"]["action"]["pool"] == "direct"]

    bare = interns(simulate(world_file, repo_with()))
    assert len(bare) >= 50 and all(t["fault"] == "intern-no-grant" for _, t in bare)

    # A route over a field that is not intent changes the attempt, not what the agent sent: it still fails.
    routed = interns(simulate(world_file, repo_with(route_interns=ROUTE_INTERNS)))
    assert [e["id"] for e, _ in routed] == [e["id"] for e, _ in bare]
    for event, t in routed:
        assert event["decision"]["action"] == "route" and t["fault"] == "intern-no-grant"
        assert event["outcome"]["status"] == "error"
    # Arbitrate does not avoid it either.
    arbitrated = interns(simulate(world_file, repo_with(arbitrate_interns=ARBITRATE_INTERNS)))
    for event, t in arbitrated:
        assert event["decision"]["action"] == "arbitrate" and t["fault"] == "intern-no-grant"
    # A deny does: the attempt is never made.
    denied = interns(simulate(world_file, repo_with(deny_interns=DENY_INTERNS)))
    for event, t in denied:
        assert event["outcome"]["status"] == "denied" and t["fault"] is None

    # Without `avoided_by: [deny]` the same route escapes the fault, as any route whose params make `when` false.
    plain = tmp_path / "plain.yaml"
    plain.write_text(WORLD.replace("    avoided_by: [deny]\n", ""))
    escaped = interns(simulate(plain, repo_with(route_interns=ROUTE_INTERNS)))
    assert all(t["fault"] != "intern-no-grant" for _, t in escaped)


def test_intent_of_a_traffic_item_adds_to_the_worlds(simulate: Simulate, tmp_path: Path,
                                                     repo_with: Callable[..., Path]) -> None:
    world = tmp_path / "item.yaml"
    world.write_text(WORLD.replace("      id: {choice: [db-01, db-02]}\n",
                                   "      id: {choice: [db-01, db-02]}\n    intent: [action.pool]\n"))
    run = simulate(world, repo_with(route_big_batches_direct=ROUTE_BIG_BATCHES_DIRECT), events=400)
    routes = [e for e in run.events if e["decision"]["action"] == "route"]
    assert len(routes) >= 50
    assert {e["outcome"]["message"] for e in routes} == {
        "route rewrote intent action.pool: pgbouncer -> direct; the interaction did not happen as asked"}


# --------------------------------------------------------------------------- the buildfarm world


def test_every_fault_of_the_buildfarm_world_fires(simulate: Simulate, repo_with: Callable[..., Path]) -> None:
    run = simulate("buildfarm", repo_with(), events=4000, seed=1)
    faults = Counter(t["fault"] for t in run.truth if t["fault"])
    assert set(faults) == {"cargo-proxy-crash", "ap-south-push-timeout", "coder-production-deploy-denied",
                           "state-lock-deadlock", "merge-queue-thrash"}
    assert min(faults.values()) >= 10, faults
    assert any(t["noise"] for t in run.truth)
    assert 0.05 <= run.summary["failure_share"] <= 0.20
    assert {e["outcome"]["status"] for e in run.events} >= {"ok", "crash", "deadlock", "timeout", "error"}
    for event in run.events:
        Event.from_dict(event)
    deadlocks = [e for e in run.events if e["outcome"]["status"] == "deadlock"]
    assert all(e["input"]["resource"]["kind"] == "tf_state" and e["outcome"]["waits_for"] for e in deadlocks)


ROUTE_PUSHES_TO_EU = rule("route_pushes_to_eu", "route",
                          ['input.kind == "action"', 'input.action.type == "push_image"',
                           'input.context.region == "ap-south-1"', "input.action.image_bytes > 1000000000"],
                          {"context": {"region": "eu-west-1"}})
ROUTE_PUSHES_CHUNKED = ROUTE_PUSHES_TO_EU.replace("route_pushes_to_eu", "route_pushes_chunked").replace(
    '{"context": {"region": "eu-west-1"}}', '{"action": {"upload": "chunked"}}')
ROUTE_CARGO_OFF_PROXY = rule("route_cargo_off_proxy", "route",
                             ['input.kind == "action"', 'input.action.type == "fetch_deps"',
                              'input.action.ecosystem == "cargo"', 'input.action.mirror == "corp-proxy"'],
                             {"action": {"mirror": "artifactory"}})


def test_the_buildfarm_trap_is_real(simulate: Simulate, repo_with: Callable[..., Path]) -> None:
    bare = simulate("buildfarm", repo_with(), events=3000, seed=4)
    rules = simulate("buildfarm", repo_with(route_pushes_to_eu=ROUTE_PUSHES_TO_EU,
                                            route_cargo_off_proxy=ROUTE_CARGO_OFF_PROXY), events=3000, seed=4)
    chunked = simulate("buildfarm", repo_with(route_pushes_chunked=ROUTE_PUSHES_CHUNKED), events=3000, seed=4)
    ids = {name: {e["id"] for e, t in zip(bare.events, bare.truth, strict=True) if t["fault"] == name}
           for name in ("ap-south-push-timeout", "cargo-proxy-crash")}
    assert all(len(found) >= 10 for found in ids.values())
    after, after_chunked = rules.by_id(), chunked.by_id()
    # Pushing to eu-west-1 instead looks like a fix, but the region is the agent's intent.
    for event_id in ids["ap-south-push-timeout"]:
        event, t = after[event_id]
        assert event["outcome"]["status"] == "diverted" and t["fault"] is None
        assert event["outcome"]["message"].startswith("route rewrote intent context.region: ap-south-1 -> eu-west-1")
        # The alternative the vocabulary offers does not help: only a deny would.
        assert after_chunked[event_id][0]["decision"]["action"] == "route"
    assert chunked.summary["faults"]["ap-south-push-timeout"] >= 0.7 * len(ids["ap-south-push-timeout"])
    # The mirror is an alternative: cargo through artifactory works.
    for event_id in ids["cargo-proxy-crash"]:
        event, t = after[event_id]
        assert event["decision"]["params"] == {"action": {"mirror": "artifactory"}}
        assert t["fault"] is None and event["outcome"]["status"] in ("ok", "crash", "timeout", "error")
        assert event["outcome"]["status"] == "ok" or t["noise"]


ROUTE_REPORTING_TO_WAREHOUSE = rule("route_reporting_to_warehouse", "route",
                                    ['input.kind == "action"', 'input.resource.kind == "database"',
                                     "some agent in input.agents", 'agent.role == "reporting"'],
                                    {"resource": {"kind": "warehouse"}})


def test_the_demo_world_knows_a_database_is_not_a_warehouse(simulate: Simulate,
                                                            repo_with: Callable[..., Path]) -> None:
    # Moving reporting's queries to the warehouse would end the permission errors, and is not what they asked.
    run = simulate("demo", repo_with(route=ROUTE_REPORTING_TO_WAREHOUSE), events=1500, seed=2)
    routed = [e for e in run.events if e["decision"]["action"] == "route"]
    assert len(routed) >= 20
    assert all(e["outcome"]["status"] == "diverted" for e in routed)
    assert {e["outcome"]["message"] for e in routed} == {
        "route rewrote intent resource.kind: database -> warehouse; the interaction did not happen as asked"}
    assert run.summary["faults"]["reporting-database-denied"] == 0
    assert run.summary["statuses"]["diverted"] == len(routed)
