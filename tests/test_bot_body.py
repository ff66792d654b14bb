"""The pull request body: everything a reviewer needs in it, and no secret (tests/test_redact.py holds the corpus)."""

from __future__ import annotations

from typing import Any

from policyctl.bot.body import (
    BodyContext,
    commit_subject,
    pick_samples,
    plain_words,
    render_body,
    title_for,
)
from policyctl.bot.forge import PullRequest
from policyctl.bot.state import Marker, commented_on, human_marker, ignored_because, read_marker
from policyctl.model.cluster import AgentSummary, Cluster, Distinguishing, TemplateCount
from policyctl.model.draft import Condition, Draft, Remedy
from policyctl.model.shadow import Example, Partial, ShadowReport


def event(i: int, message: str, ts: str) -> dict[str, Any]:
    return {"id": f"evt-{i}", "ts": ts, "input": {"kind": "action", "agents": [{"id": f"etl-{i}", "role": "etl"}],
                                                  "action": {"type": "file_share", "protocol": "smb"}},
            "outcome": {"status": "crash", "code": "E_SMB", "message": message}}


def test_samples_are_three_to_five_different_messages_oldest_first() -> None:
    events = [event(i, f"write {i} failed on fs-{i}", f"2026-03-30T00:0{i}:00Z") for i in range(6)]
    events += [event(9, "connection to 10.0.0.9 reset by peer", "2026-03-30T00:09:00Z")]
    picked = pick_samples(events)
    assert len(picked) == 5
    assert picked[0]["id"] == "evt-0" and picked[1]["id"] == "evt-9"  # another template before more of the same


def draft() -> Draft:
    fixtures = [{"id": "r-prevent-001", "input": {"kind": "action"}, "expect": {"action": "route"}, "why": "prevent",
                 "origin": "evt-1"},
                {"id": "r-keep-001", "input": {"kind": "action"}, "expect": {"action": "allow"}, "why": "keep",
                 "origin": "evt-2"}]
    cluster = Cluster(
        fingerprint="crash-smb-0123abcd", title="crash: action.protocol=smb", systemic=True, status="crash",
        statuses={"crash": 40}, size=40, share=0.4, first_seen="2026-03-30T00:00:00Z",
        last_seen="2026-04-02T00:00:00Z", agents=AgentSummary(3, ("etl-1", "etl-2", "etl-3")), roles={"etl": 40},
        distinguishing=[Distinguishing("action.protocol", "smb", 1.0, 0.2)],
        templates=[TemplateCount("login password=hunter2 to <*> failed", 40)],
        members=[f"evt-{i}" for i in range(40)])
    return Draft(name="crash_smb", fingerprint="crash-smb-0123abcd", title="Route smb to sftp", rule_id="route_crash_smb",
                 bodies=[[Condition("action.protocol", "==", "smb")]],
                 remedy=Remedy("route", {"action": {"protocol": "sftp"}}, "sftp succeeded 30 times"),
                 message="m", description="d", module_path="policies/rules/crash_smb.rego",
                 module_text="package agentgov.rules.crash_smb\n", fixtures_path="shadow_fixtures/crash_smb.jsonl",
                 fixtures=fixtures, drafter="induce", verified=True, cluster=cluster,
                 verification={"compiled": True, "holdout": {"events": 8, "prevented": 8, "prevented_pct": 100.0},
                               "train": {"events": 32, "prevented": 32, "prevented_pct": 100.0},
                               "collateral": {"ok_events": 500, "changed": 0, "collateral_pct": 0.0,
                                              "transitions": {}, "in_region_changed": 2}})


def report(collateral: int = 0, examples: int = 0) -> ShadowReport:
    """A replay's report as `policyctl shadow` builds it: 40 failures, 36 prevented, 1,000 successes."""
    part = Partial()
    for key, n in (("records", 1002), ("events", 1000), ("failures", 40), ("prevented", 36), ("newly_prevented", 36),
                   ("exposed", 4), ("successes", 960), ("collateral", collateral), ("in_region", 3),
                   ("changed", 39 + collateral), ("fixtures", 2), ("fixtures_passed", 2)):
        part.count(key, n)
    part.add_transition("allow→route", "route_crash_smb", None)
    part.add_change({"kind": "action", "action": {"type": "file_share"},
                     "agents": [{"id": "etl-1", "role": "etl"}]})
    for i in range(examples):
        part.add_example(Example("exposed", f"evt-{i}", f"/tmp/x/events.jsonl:{i}",
                                 {"kind": "action", "password": "hunter2"}, {"action": "allow"}, {"action": "allow"},
                                 [f"crash: write {i} failed"], rank=1))
    return ShadowReport(base="a" * 40, candidate="worktree", partial=part, max_collateral_pct=0.5)


def context(r: ShadowReport, samples: list[dict[str, Any]] | None = None, provider: str = "local") -> BodyContext:
    return BodyContext(size=40, failures_in_logs=100, samples=samples or [], report=r, base="main", base_sha="a" * 40,
                       branch="policyctl/crash-smb-0123abcd", logs=["/tmp/x/events.jsonl"], embedder="tfidf",
                       provider=provider, inputs="0123456789abcdef", full_verdict="PASS", full_events=1000,
                       evidence_path="shadow_evidence/crash-smb-0123abcd.jsonl")


def test_the_body_has_what_a_reviewer_needs_and_no_secret() -> None:
    d = draft()
    samples = [event(1, "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 from 10.2.3.4 (ops@example.com)",
                     "2026-03-30T00:01:00Z")]
    body = render_body(d, context(report(examples=2), samples))
    assert read_marker(body) == Marker("crash-smb-0123abcd", 40, "0123456789abcdef", base="a" * 40)
    for secret in ("ghp_", "10.2.3.4", "ops@example.com", "hunter2"):
        assert secret not in body
    for needed in ("## What fails", "**40** failures (crash 40): 40.0% of the 100 failures", "2026-03-30T00:00:00",
                   "`etl-1`", "etl (40)", "`action.protocol` = `smb`", "### Sample messages (1, secrets masked)",
                   "**In plain words:** When an action, where its protocol is smb, route it over protocol sftp",
                   "```rego\npackage agentgov.rules.crash_smb\n```", "## Shadow replay",
                   "| prevented: logged failures the candidate decides differently | **36** of 40 (90.0%) |",
                   "| exposed: logged failures it leaves as they were | 4 |",
                   "**0** of 960 (0.00%; budget 0.5%)", "changed by design | 3 |", "| fixtures | 2 of 2 pass |",
                   "8/8 (100.0%)", "`events.jsonl`, 1000 events) | PASS |", "| action type | `file_share` 1 |",
                   "Still exposed: this cluster's failures the rule leaves as they were (2 of 40 outside its conditions)",
                   "## Fixtures added", "`r-prevent-001` | prevent", "`r-keep-001` | keep", "Fixture inputs",
                   "## Reproduce locally", "policyctl shadow --base main --candidate policyctl/crash-smb-0123abcd "
                   "--format markdown", "policyctl cluster events.jsonl --embedder tfidf -o clusters.json",
                   "--cluster crash-smb-0123abcd", "pytest shadow_fixtures", "policyctl pr merge N",
                   "reaches 80 failures"):
        assert needed in body, needed
    assert "/tmp/x" not in body
    assert title_for(d) == 'policyctl: route {"action": {"protocol": "sftp"}} when input.action.protocol == "smb"'


def test_the_commit_subject_fits_72_characters_and_the_sentence_reads_as_english() -> None:
    d = draft()
    d.name = "crash_" + "very_long_name_" * 6
    assert len(commit_subject(d)) <= 72
    d.bodies = [[Condition("kind", "==", "conflict"), Condition("resource.kind", "==", "port"),
                 Condition("resource.port", "==", 22), Condition("role", "has_role", "deploy"),
                 Condition("role", "has_role", "backup")]]
    d.remedy = Remedy("arbitrate", {}, "they deadlock")
    assert plain_words(d) == ("When agents contend for a port and its port is 22, an agent with role deploy takes "
                              "part and an agent with role backup takes part, settle their order up front: highest "
                              "priority first, ties by agent id.")


def test_a_huge_body_keeps_every_figure_and_fits_a_pull_request() -> None:
    d = draft()
    d.fixtures = [{"id": f"r-keep-{i:03d}", "input": {"kind": "action", "blob": "x" * 2000}, "expect": {"action": "allow"},
                   "why": "keep", "origin": f"evt-{i}"} for i in range(60)]
    body = render_body(d, context(report(), provider="github"))
    assert len(body) < 65_536 and "too long for a pull request" in body and "## Reproduce locally" in body
    assert "**36** of 40 (90.0%)" in body


def pr(state: str, merged: bool, body: str) -> PullRequest:
    return PullRequest(number=7, title="t", body=body, head="policyctl/x", base="main", state=state, merged=merged)


def test_a_closed_cluster_is_ignored_until_it_doubles() -> None:
    body = Marker("x", 40, "ab").render() + "\nrest"
    assert ignored_because(pr("closed", False, body), 79) is not None
    assert "until the cluster reaches 80 (now 79)" in str(ignored_because(pr("closed", False, body), 79))
    assert ignored_because(pr("closed", False, body), 80) is None
    assert ignored_because(pr("closed", True, body), 41) is None  # merged: not a rejection
    assert ignored_because(pr("open", False, body), 41) is None
    assert "reopen it" in str(ignored_because(pr("closed", False, "marker edited away"), 1000))
    assert commented_on(["hi", human_marker("abc1234")], "abc1234") and not commented_on(["hi"], "abc1234")
