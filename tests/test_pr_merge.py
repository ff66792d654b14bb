"""`policyctl pr merge` replays the merge at the current base and refuses what fails; diff, show, close, statuses."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git, write

from policyctl.bot.forge import STATUS_CONTEXT, ForgeError, combined_state
from policyctl.bot.local import LocalForge
from policyctl.bot.state import Marker, read_marker
from policyctl.cli.main import main
from policyctl.repo import commit_files, update_branch

BOT = ("policyctl-bot", "bot@policyctl.local")
FP = "crash-xlsx-nfs-0001"
HEAD = f"policyctl/{FP}"
RULE_PATH = "policies/rules/xlsx_nfs.rego"
FIXTURES_PATH = "shadow_fixtures/rules/xlsx_nfs.jsonl"
EVIDENCE_PATH = f"shadow_evidence/{FP}.jsonl"

RULE = """\
# METADATA
# title: Deny xlsx over NFS
# description: xlsx files written over NFS come back truncated.
# custom:
#   cluster: crash-xlsx-nfs-0001
#   mode: enforce
package agentgov.rules.xlsx_nfs

import rego.v1

decisions contains {
\t"id": "deny_xlsx_over_nfs",
\t"action": "deny",
\t"params": {},
\t"message": "xlsx over nfs truncates the file",
} if {
\tinput.kind == "action"
\tinput.action.type == "file_share"
\tinput.action.file_type == "xlsx"
\tinput.action.protocol == "nfs"
}
"""


def share(file_type: str = "xlsx", protocol: str = "nfs", agent: str = "etl-1") -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": agent, "role": "etl", "priority": 5}],
            "action": {"type": "file_share", "protocol": protocol, "file_type": file_type, "size_bytes": 4096},
            "resource": {"kind": "share", "id": "fs-1"}}


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def fixtures(expect: str = "deny") -> str:
    return jsonl([{"id": "xlsx-nfs-001", "input": share(), "expect": {"action": expect}, "why": "prevent"},
                  {"id": "csv-nfs-keep-001", "input": share("csv"), "expect": {"action": "allow"}, "why": "keep"}])


def events(*, failures: int = 10, ok_other: int = 100, ok_same: int = 0, prefix: str = "evt") -> str:
    """Logged traffic: xlsx-over-nfs crashes, csv-over-nfs successes, and optionally xlsx-over-nfs successes
    (what the rule would change: collateral)."""
    rows = []
    for i in range(failures):
        rows.append({"id": f"{prefix}-f{i}", "ts": "2026-03-30T12:00:00Z", "input": share(agent=f"etl-{i % 3}"),
                     "decision": {"action": "allow", "source": "default"},
                     "outcome": {"status": "crash", "message": f"nfs: short write on q{i}.xlsx", "code": "E_NFS"}})
    for i in range(ok_other):
        rows.append({"id": f"{prefix}-o{i}", "ts": "2026-03-30T12:00:00Z", "input": share("csv"),
                     "decision": {"action": "allow", "source": "default"}, "outcome": {"status": "ok"}})
    for i in range(ok_same):
        rows.append({"id": f"{prefix}-s{i}", "ts": "2026-03-30T12:00:00Z", "input": share(),
                     "decision": {"action": "allow", "source": "default"}, "outcome": {"status": "ok"}})
    return jsonl(rows)


def body(base: str = "") -> str:
    marker = Marker(FP, 10, "0123abcd", base=base).render()
    return f"{marker}\n## What fails\n\n**10** crashes: `xlsx` over `nfs`.\n\n```rego\n{RULE}```\n"


def open_pr(repo: Path, *, expect: str = "deny", evidence: str | None = None, base: str | None = None) -> int:
    """A bot-shaped pull request: one commit on main adding the rule, its fixtures and an evidence sample."""
    files = {RULE_PATH: RULE, FIXTURES_PATH: fixtures(expect), EVIDENCE_PATH: events() if evidence is None else evidence}
    main_sha = git(repo, "rev-parse", "main")
    sha = commit_files(repo, "main", {k: v.encode() for k, v in files.items()}, f"policyctl: draft for {FP}",
                       author=BOT)
    update_branch(repo, HEAD, sha, None)
    forge = LocalForge(repo)
    return forge.create_pr(head=HEAD, base="main", title="Deny xlsx over NFS",
                           body=body(main_sha if base is None else base)).number


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def merge(repo: Path, *args: str) -> int:
    return main(["pr", "merge", *args, "--repo", str(repo), "-j", "1", "--author", "Rita Reviewer <rita@example.com>"])


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    """This project's policy set, replaying only what each test commits (not the project's history/)."""
    repo = make_repo()
    write(repo, "policyctl.toml", "version = 1\n")
    commit_all(repo, "no configured log sources")
    return repo


def test_a_passing_pull_request_is_merged_and_the_commit_records_the_replay(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # main replays a committed log named by its policyctl.toml, as well as the branch's evidence
    write(repo, "policyctl.toml", 'version = 1\n[logs]\nsources = ["logs/*.jsonl"]\n')
    write(repo, "logs/day1.jsonl", events(failures=5, ok_other=50, prefix="day1"))
    before = commit_all(repo, "log sources")
    number = open_pr(repo)
    tip = git(repo, "rev-parse", HEAD)

    assert merge(repo, str(number)) == 0
    out = capsys.readouterr().out
    assert "moved since verification" not in out
    assert f"replay of #{number} merged into main {before[:12]}" in out and ": PASS;" in out
    assert "prevented 15 of 15 logged failures (100.0%)" in out
    assert "collateral 0 of 150 logged successes (0.00%, budget 0.5%)" in out
    assert f"merged #{number} ({HEAD}) into main" in out

    assert git(repo, "log", "-1", "--format=%P %ae", "main").split() == [before, tip, "rita@example.com"]
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert message.startswith(f"Merge pull request #{number} from {HEAD}")
    assert f"policyctl shadow at main {before[:12]}: PASS" in message
    assert "prevented: 15 of 15 logged failures (100.0%)" in message
    assert "collateral: 0 of 150 logged successes (0.00%, budget 0.5%)" in message
    assert f"history: logs/*.jsonl, {EVIDENCE_PATH}" in message
    assert (repo / RULE_PATH).is_file() and git(repo, "status", "--porcelain") == ""  # main checked out: tree follows
    record = LocalForge(repo).record(number)
    assert record["merged"] and record["merge_check"]["verdict"] == "PASS"
    assert record["merge_check"]["prevented"] == 15 and record["merge_check"]["forced"] is False


def test_a_failing_fixture_is_refused_and_nothing_moves(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo, expect="route")
    before = refs(repo)
    assert merge(repo, str(number)) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 fixture(s) fail" in out and f"not merged: #{number} fails the merge gate" in out
    assert f"fixture xlsx-nfs-001 ({FIXTURES_PATH}:1) fails" in out
    assert "--force --reason TEXT" in out
    assert refs(repo) == before and git(repo, "status", "--porcelain") == ""
    assert not (repo / RULE_PATH).exists()
    assert LocalForge(repo).record(number)["state"] == "open"


def test_collateral_over_the_candidates_budget_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 5 of 105 logged successes are xlsx over nfs: the rule would deny them (4.76% > 0.5%)
    number = open_pr(repo, evidence=events(ok_same=5))
    before = refs(repo)
    assert merge(repo, str(number)) == 1
    out = capsys.readouterr().out
    assert "FAIL: collateral 4.76% exceeds the budget of 0.5%" in out
    assert "collateral 5 of 105 logged successes (4.76%) is over the budget of 0.5%" in out
    assert f"  {EVIDENCE_PATH}:111 evt-s0: worked under allow; the candidate answers deny" in out  # by file:line
    assert refs(repo) == before

    # the budget is the candidate's: a policyctl.toml on the branch that allows it lets it through
    sha = commit_files(repo, HEAD, {"policyctl.toml": b"version = 1\n[budgets]\nmax_collateral_pct = 10\n"},
                       "allow 10% collateral", author=BOT)
    update_branch(repo, HEAD, sha, git(repo, "rev-parse", HEAD))
    assert merge(repo, str(number)) == 0
    assert "budget 10%" in capsys.readouterr().out


def test_main_moved_and_the_draft_no_longer_holds_there(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    verified = git(repo, "rev-parse", "main")
    # someone on main pins down that xlsx over nfs must keep working for small files
    keep = {"id": "xlsx-nfs-keep-001", "input": share(), "expect": {"action": "allow"}, "why": "keep"}
    write(repo, "shadow_fixtures/file_share/xlsx_keep.jsonl", jsonl([keep]))
    moved = commit_all(repo, "xlsx over nfs works again")
    before = refs(repo)

    assert merge(repo, str(number)) == 1
    out = capsys.readouterr().out
    assert f"main moved since verification ({verified[:12]} → {moved[:12]}): re-verifying" in out
    assert "FAIL: 1 fixture(s) fail" in out and "xlsx-nfs-keep-001" in out
    assert "policyctl bot run --logs …" in out and "redrafts it on the new base" in out
    assert refs(repo) == before and git(repo, "rev-parse", "main") == moved


def test_main_moved_harmlessly_the_merge_says_so_and_goes_ahead(repo: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    verified = git(repo, "rev-parse", "main")
    write(repo, "shadow_fixtures/file_share/csv_keep.jsonl",
          jsonl([{"id": "csv-smb-keep-009", "input": share("csv", "smb"), "expect": {"action": "allow"},
                  "why": "keep"}]))
    moved = commit_all(repo, "another keep fixture")

    assert merge(repo, str(number)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"main moved since verification ({verified[:12]} → {moved[:12]}): re-verifying"
    assert ": PASS;" in out and f"merged #{number}" in out
    assert git(repo, "log", "-1", "--format=%P", "main").split()[0] == moved
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert f"verified by the bot at {verified[:12]}; main moved to {moved[:12]}" in message


def test_force_needs_a_reason_and_the_reason_goes_into_the_merge_commit(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo, expect="route")
    before = refs(repo)
    assert merge(repo, str(number), "--force") == 2
    assert "--force needs --reason TEXT" in capsys.readouterr().err
    assert merge(repo, str(number), "--reason", "because") == 2
    assert "--reason goes with --force" in capsys.readouterr().err
    assert refs(repo) == before

    assert merge(repo, str(number), "--force", "--reason", "INC-4412: stop the truncations now") == 0
    out = capsys.readouterr().out
    assert "FAIL: 1 fixture(s) fail" in out
    assert "despite the failing check (--force: INC-4412: stop the truncations now)" in out
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert "policyctl shadow at main" in message and ": FAIL: 1 fixture(s) fail" in message
    assert ("forced by Rita Reviewer <rita@example.com> despite the failing check: "
            "INC-4412: stop the truncations now") in message
    assert "fixture xlsx-nfs-001" in message
    gate = LocalForge(repo).record(number)["merge_check"]
    assert gate["forced"] is True and gate["reason"] == "INC-4412: stop the truncations now"


def test_json_carries_the_verdict_and_figures(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo, evidence=events(ok_same=5))
    assert merge(repo, str(number), "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["merged"] is False and doc["state"] == "open"
    gate = doc["gate"]
    assert gate["verdict"].startswith("FAIL: collateral") and gate["passed"] is False
    assert (gate["prevented"], gate["failures"], gate["collateral"], gate["successes"]) == (10, 10, 5, 105)
    assert gate["collateral_pct"] == pytest.approx(4.762, abs=1e-3) and gate["max_collateral_pct"] == 0.5
    assert gate["moved"] is False and gate["history"] == [EVIDENCE_PATH] and gate["forced"] is False

    assert merge(repo, str(number), "--json", "--force", "--reason", "accepted") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["merged"] is True and doc["merge_commit"] == git(repo, "rev-parse", "main")
    assert doc["gate"]["forced"] is True and doc["gate"]["reason"] == "accepted"


def test_a_conflict_is_refused_naming_the_file(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    write(repo, RULE_PATH, "package somebody.else\n")
    before = commit_all(repo, "a rule of our own")
    assert merge(repo, str(number), "--force", "--reason", "try anyway") == 1
    err = capsys.readouterr().err
    assert f"conflicts in {RULE_PATH}" in err
    assert git(repo, "rev-parse", "main") == before and git(repo, "status", "--porcelain") == ""


def test_a_merge_that_does_not_build_is_never_merged(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sha = commit_files(repo, "main", {"policies/rules/broken.rego": b"package agentgov.rules.broken\nx := {\n"},
                       "broken", author=BOT)
    update_branch(repo, "policyctl/broken", sha, None)
    number = LocalForge(repo).create_pr(head="policyctl/broken", base="main", title="broken", body="").number
    before = refs(repo)
    assert merge(repo, str(number), "--force", "--reason", "please") == 1
    err = capsys.readouterr().err
    assert "would not build" in err and "policies/rules/broken.rego" in err
    assert refs(repo) == before


def test_a_fix_for_a_base_that_does_not_build_needs_force(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "policies/rules/broken.rego", "package agentgov.rules.broken\nx := {\n")
    commit_all(repo, "broken rule on main")
    fixed = RULE.replace("agentgov.rules.xlsx_nfs", "agentgov.rules.broken").encode()
    sha = commit_files(repo, "main", {"policies/rules/broken.rego": fixed}, "fix", author=BOT)
    update_branch(repo, "fix-main", sha, None)
    number = LocalForge(repo).create_pr(head="fix-main", base="main", title="fix main", body="").number
    assert merge(repo, str(number)) == 1
    out = capsys.readouterr().out
    assert "ERROR: main (" in out and "itself does not build" in out and "policies/rules/broken.rego" in out
    assert merge(repo, str(number), "--force", "--reason", "main is broken; this is the fix") == 0
    assert "itself does not build" in git(repo, "log", "-1", "--format=%B", "main")
    capsys.readouterr()


def test_the_gate_touches_no_ref_index_or_tree_when_the_base_is_not_checked_out(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo, expect="route")
    git(repo, "switch", "-q", "-c", "elsewhere")
    before, index = refs(repo), (repo / ".git/index").read_bytes()
    assert merge(repo, str(number)) == 1
    assert refs(repo) == before and (repo / ".git/index").read_bytes() == index
    assert git(repo, "status", "--porcelain") == "" and git(repo, "branch", "--show-current") == "elsewhere"


# ---------------------------------------------------------------------- statuses


def test_local_statuses_are_stored_shown_and_a_failure_blocks_the_merge(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    forge = LocalForge(repo)
    tip = git(repo, "rev-parse", HEAD)
    forge.set_status(tip, state="pending", description="replaying")
    forge.set_status(tip, state="failure", description="FAIL: 2 fixture(s) fail " + "x" * 200)
    statuses = forge.statuses(tip)
    assert [st.state for st in statuses] == ["failure", "pending"]  # newest first
    assert len(statuses[0].description) == 140 and statuses[0].description.endswith("…")
    assert statuses[0].context == STATUS_CONTEXT and combined_state(statuses) == "failure"
    assert forge.statuses(tip[:12]) == statuses
    stored = json.loads((repo / f".git/policyctl/statuses/{tip}.json").read_text())
    assert [s["state"] for s in stored] == ["pending", "failure"]

    assert main(["pr", "list", "--repo", str(repo)]) == 0
    assert f"#{number:<4} open    failure  {HEAD}" in capsys.readouterr().out
    assert main(["pr", "show", str(number), "--repo", str(repo)]) == 0
    assert "check policyctl/shadow: failure - FAIL: 2 fixture(s) fail" in capsys.readouterr().out

    before = refs(repo)
    assert merge(repo, str(number)) == 1  # the replay passes; the head's status does not
    out = capsys.readouterr().out
    assert ": PASS;" in out and f"the head commit {tip[:12]} has a failure status policyctl/shadow" in out
    assert refs(repo) == before

    forge.set_status(tip, state="success", description="PASS")  # the latest per context counts
    assert main(["pr", "list", "--repo", str(repo), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["checks"][0]["state"] == "success"
    assert merge(repo, str(number)) == 0


def test_a_failure_status_can_be_forced_past(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    LocalForge(repo).set_status(git(repo, "rev-parse", HEAD), state="error", description="the bot crashed")
    assert merge(repo, str(number), "--force", "--reason", "the bot's replay was broken, ours passes") == 0
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert "despite the failing check: the bot's replay was broken, ours passes" in message
    assert "has an error status policyctl/shadow: the bot crashed" in message
    capsys.readouterr()


def test_bad_statuses_are_clear_errors(repo: Path) -> None:
    forge = LocalForge(repo)
    with pytest.raises(ForgeError, match="expected one of pending, success, failure, error"):
        forge.set_status(git(repo, "rev-parse", "main"), state="green", description="")
    with pytest.raises(ForgeError, match="cannot set a status on 0000000000000000000000000000000000000bad"):
        forge.set_status("0000000000000000000000000000000000000bad", state="success", description="")


# ---------------------------------------------------------------------- diff, show, close


def test_pr_diff_shows_what_the_merge_changes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    assert main(["pr", "diff", str(number), "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert f"+++ b/{RULE_PATH}" in out and "+package agentgov.rules.xlsx_nfs" in out
    assert f"+++ b/{FIXTURES_PATH}" in out and f"+++ b/{EVIDENCE_PATH}" in out
    assert "\x1b[" not in out  # not a terminal: no color
    assert main(["pr", "diff", str(number), "--stat", "--repo", str(repo)]) == 0
    stat = capsys.readouterr().out
    assert RULE_PATH in stat and "3 files changed" in stat and "+package" not in stat

    # main moves on: the diff is against today's base, and shows only the branch's changes
    write(repo, "NOTES.md", "unrelated\n")
    commit_all(repo, "notes")
    assert main(["pr", "diff", str(number), "--stat", "--repo", str(repo)]) == 0
    assert "NOTES.md" not in capsys.readouterr().out
    assert merge(repo, str(number)) == 0
    capsys.readouterr()
    assert main(["pr", "diff", str(number), "--stat", "--repo", str(repo)]) == 0  # merged: what the merge did
    stat = capsys.readouterr().out
    assert RULE_PATH in stat and "NOTES.md" not in stat


def test_pr_close_with_a_reason_records_it(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    assert main(["pr", "close", str(number), "--reason", "NFS is being retired", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"closed #{number} without merging (NFS is being retired); the bot ignores cluster "
                           f"{FP} until it reaches 20 failures")
    forge = LocalForge(repo)
    record = forge.record(number)
    assert record["close_reason"] == "NFS is being retired" and record["ignored"]["until_size"] == 20
    assert forge.comments(number) == ["Closed without merging: NFS is being retired"]
    assert main(["pr", "show", str(number), "--repo", str(repo)]) == 0
    shown = capsys.readouterr().out
    assert "closed without merging: NFS is being retired" in shown
    assert merge(repo, str(number)) == 1
    assert "is closed; only an open one can be merged" in capsys.readouterr().err


def test_pr_show_raw_and_piped_print_the_markdown(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo)
    for extra in ([], ["--raw"]):
        assert main(["pr", "show", str(number), "--repo", str(repo), *extra]) == 0
        out = capsys.readouterr().out
        assert "<!-- policyctl:cluster=" in out and "## What fails" in out and "```rego" in out
        assert "policyctl-bot <bot@policyctl.local>" in out


def _on_a_terminal(args: list[str]) -> str:
    """Run the real `policyctl` with its stdout on a pseudo-terminal; what the terminal showed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(PROJECT / ".venv/bin/policyctl"), *args], stdout=follower, stderr=subprocess.PIPE,
                            env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_show_renders_markdown_and_diff_is_colored(repo: Path) -> None:
    number = open_pr(repo)
    shown = _on_a_terminal(["pr", "show", str(number), "--repo", str(repo)])
    assert "What fails" in shown and "## What fails" not in shown and "<!--" not in shown
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert "\x1b[" in shown and "package agentgov.rules.xlsx_nfs" in plain and "**10**" not in plain
    raw = _on_a_terminal(["pr", "show", str(number), "--raw", "--repo", str(repo)])
    assert "## What fails" in raw
    diff = _on_a_terminal(["pr", "diff", str(number), "--repo", str(repo)])
    assert "\x1b[32mpackage agentgov.rules.xlsx_nfs" in diff and "\x1b[36m@@ -0,0 +1," in diff


# ---------------------------------------------------------------------- the marker


def test_the_marker_records_the_verified_base_and_reads_old_bodies() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    marker = Marker("crash-x-1", 12, "ab12", base=sha)
    assert marker.render() == f"<!-- policyctl:cluster=crash-x-1 size=12 inputs=ab12 base={sha} -->"
    assert read_marker("intro\n" + marker.render() + "\n## What fails") == marker
    assert read_marker("<!-- policyctl:cluster=crash-x-1 size=12 inputs=ab12 -->") == Marker("crash-x-1", 12, "ab12")
    assert read_marker("<!-- policyctl:cluster=crash-x-1 size=12 -->") == Marker("crash-x-1", 12)
    assert Marker("crash-x-1", 12).render() == "<!-- policyctl:cluster=crash-x-1 size=12 -->"
    # fields a newer policyctl adds are skipped, not a reason to lose the marker
    newer = read_marker(f"<!-- policyctl:cluster=crash-x-1 size=12 base={sha} region=a1 inputs=ab12 -->")
    assert newer == marker


def test_a_body_without_a_verified_base_is_verified_without_the_moved_line(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = open_pr(repo, base="")
    write(repo, "NOTES.md", "unrelated\n")
    commit_all(repo, "notes")
    assert merge(repo, str(number), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["gate"]["verified_base"] is None and doc["gate"]["moved"] is False
