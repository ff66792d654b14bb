"""policyctl bot run with the local forge, and policyctl pr: one pull request per cluster, quiet on re-runs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git

from policyctl.bot import BotRun, run_bot
from policyctl.bot.local import LocalForge
from policyctl.bot.state import read_marker
from policyctl.cli.main import main
from policyctl.errors import RepoError
from policyctl.repo import snapshot

BOT = "bot@policyctl.local"


def simulate_logs(root: Path) -> dict[str, Path]:
    """Exported logs of the demo world through main.rego only (every fault shows): day `a`, and `ab`,
    a later export holding `a` and half as many newer events (clusters grow by about half)."""
    bare = root / "main-only"
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "-b", "main")
    (bare / "policies").mkdir()
    (bare / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
    (bare / "policyctl.toml").write_text((PROJECT / "policyctl.toml").read_text())  # the demo world's vocabulary
    commit_all(bare, "main only")
    out = {}
    for name, events, seed in (("a", 2000, 1), ("b", 1000, 2)):
        out[name] = root / f"{name}.jsonl"
        assert main(["simulate", "--world", "demo", "--events", str(events), "--seed", str(seed), "--repo", str(bare),
                     "-q", "-o", str(out[name])]) == 0
    out["ab"] = root / "ab.jsonl"
    out["ab"].write_bytes(out["a"].read_bytes() + out["b"].read_bytes())
    return out


def seed_repo(path: Path) -> Path:
    """A policy repository with this project's policies: they already prevent two of the demo's faults."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides", "history"):
        if (PROJECT / top).is_dir():
            shutil.copytree(PROJECT / top, path / top)
    shutil.copy(PROJECT / "policyctl.toml", path / "policyctl.toml")
    commit_all(path, "seed policy set")
    return path


def bot(repo: Path, *logs: Path, **kw: Any) -> BotRun:
    return run_bot(repo, list(logs), forge=LocalForge(repo), embedder="tfidf", jobs=1, **kw)


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def tree_state(root: Path) -> dict[str, str]:
    """Every file under root (the working tree and .git) with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def outcomes(run: BotRun) -> dict[str, str]:
    return {a.fingerprint: a.outcome for a in run.actions}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return simulate_logs(tmp_path_factory.mktemp("bot-logs"))


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory, logs: dict[str, Path]) -> tuple[Path, BotRun]:
    """The state after a first bot run on day `a`: read-only; tests that change it work on a copy."""
    repo = seed_repo(tmp_path_factory.mktemp("bot") / "repo")
    return repo, bot(repo, logs["a"])


@pytest.fixture
def repo(opened: tuple[Path, BotRun], tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(opened[0], copy, symlinks=True)
    return copy


def test_first_run_opens_one_pull_request_per_cluster_main_does_not_prevent(opened: tuple[Path, BotRun]) -> None:
    repo, run = opened
    by = outcomes(run)
    assert len(run.actions) == 5  # the demo world's five faults
    prevented = {fp for fp, o in by.items() if o == "already-prevented"}
    assert {fp.split("-")[0] for fp in prevented} == {"crash", "deadlock"}  # parquet over smb, port 22
    new = [a for a in run.actions if a.outcome == "opened"]
    assert len(new) == 3 and all(a.outcome in ("opened", "already-prevented") for a in run.actions)
    forge = LocalForge(repo)
    records = forge.by_state("all")
    assert [r["number"] for r in records] == [1, 2, 3]
    main_sha = git(repo, "rev-parse", "main")
    for a in new:
        record = forge.record(int(a.pr or 0))
        assert record["head"] == f"policyctl/{a.fingerprint}" and record["base"] == "main"
        assert record["state"] == "open" and record["labels"] == ["policyctl"]
        marker = read_marker(record["body"])
        assert marker is not None and (marker.fingerprint, marker.size) == (a.fingerprint, a.size)
        # one commit on main, by the bot identity, adding exactly the rule module and its fixtures
        log = git(repo, "log", "--format=%H %ae %ce %P", f"main..{record['head']}").splitlines()
        assert len(log) == 1
        sha, author, committer, parent = log[0].split()
        assert (author, committer, parent) == (BOT, BOT, main_sha) and sha == a.commit
        changed = git(repo, "diff", "--name-only", f"main...{record['head']}").splitlines()
        # the rule module, its fixtures, and the masked evidence sample CI replays
        assert len(changed) == 3 and changed[0].startswith("policies/rules/")
        assert changed[1] == f"shadow_evidence/{a.fingerprint}.jsonl" and changed[2].startswith("shadow_fixtures/")
    assert git(repo, "status", "--porcelain") == ""  # the working tree and index are never touched
    assert git(repo, "rev-list", "--count", "main") == "1"


def test_the_same_logs_again_open_push_and_edit_nothing(repo: Path, logs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before_refs, before = refs(repo), tree_state(repo / ".git/policyctl")
    assert main(["bot", "run", "--repo", str(repo), "--logs", str(logs["a"]), "--embedder", "tfidf", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"already-prevented": 2, "unchanged": 3}
    assert refs(repo) == before_refs and tree_state(repo / ".git/policyctl") == before
    assert len(LocalForge(repo).by_state("all")) == 3


def test_redrafting_the_same_inputs_gives_the_same_files_and_body(repo: Path, logs: dict[str, Path]) -> None:
    """Without the inputs digest the bot drafts and replays again: files equal, so no commit; the body
    differs only in the digest it records."""
    forge = LocalForge(repo)
    record = forge.record(1)
    old = record["body"]
    forge.update_pr(1, body=re.sub(r"inputs=[0-9a-f]+", "inputs=0", old))
    before_refs = refs(repo)
    run = bot(repo, logs["a"])
    fp = record["head"].removeprefix("policyctl/")
    assert outcomes(run)[fp] == "refreshed"
    assert refs(repo) == before_refs
    assert forge.record(1)["body"] == old


def test_dry_run_prints_what_it_would_do_and_changes_no_ref_or_file(repo: Path, logs: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_state(repo)
    assert main(["bot", "run", "--repo", str(repo), "--logs", str(logs["ab"]), "--embedder", "tfidf",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: 5 systemic clusters")
    assert out.count("would update #") == 3 and "updated" not in out
    assert tree_state(repo) == before


def test_newer_logs_update_the_same_pull_requests_and_a_closed_one_is_not_reopened(
        repo: Path, logs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    forge = LocalForge(repo)
    first = {r["head"]: r for r in forge.by_state("all")}
    tips = {head: git(repo, "rev-parse", head) for head in first}
    closed = forge.find_pr(next(iter(first)))
    assert closed is not None
    assert main(["pr", "close", str(closed.number), "--repo", str(repo)]) == 0
    assert "until it reaches" in capsys.readouterr().out

    run = bot(repo, logs["ab"])
    by = {a.branch: a for a in run.actions}
    assert by[closed.head].outcome == "ignored" and "closed without merging" in by[closed.head].detail
    assert git(repo, "rev-parse", closed.head) == tips[closed.head]
    records = {r["head"]: r for r in forge.by_state("all")}
    assert len(records) == 3  # no new pull request, the closed one not reopened
    assert records[closed.head]["state"] == "closed"
    for head, old in first.items():
        if head == closed.head:
            continue
        assert by[head].outcome == "updated" and by[head].pr == old["number"]
        new_marker, old_marker = read_marker(records[head]["body"]), read_marker(old["body"])
        assert new_marker is not None and old_marker is not None and new_marker.size > old_marker.size
        # still one commit on main, a new one, by the bot
        assert git(repo, "rev-list", "--count", f"main..{head}") == "1"
        assert git(repo, "rev-parse", head) != tips[head]
        assert git(repo, "log", "-1", "--format=%ae", head) == BOT
    again = bot(repo, logs["ab"])
    assert sorted(outcomes(again).values()) == ["already-prevented", "already-prevented", "ignored", "unchanged",
                                                "unchanged"]


def test_a_closed_cluster_comes_back_once_it_has_doubled(repo: Path, logs: dict[str, Path]) -> None:
    forge = LocalForge(repo)
    forge.close(2)
    record = forge.record(2)
    marker = read_marker(record["body"])
    assert marker is not None and record["ignored"] == {"cluster": marker.fingerprint, "size": marker.size,
                                                        "until_size": 2 * marker.size}
    assert outcomes(bot(repo, logs["a"]))[marker.fingerprint] == "ignored"
    # as if it had been closed when the cluster was half its size now
    half = record["body"].replace(f"size={marker.size} ", f"size={marker.size // 2} ", 1)
    path = repo / ".git/policyctl/pulls/2.json"
    path.write_text(json.dumps(record | {"body": half}))
    run = bot(repo, logs["a"])
    action = next(a for a in run.actions if a.fingerprint == marker.fingerprint)
    assert action.outcome == "opened" and action.pr == 4 and "after #2" in action.detail
    assert forge.record(2)["state"] == "closed" and forge.record(4)["state"] == "open"
    assert forge.find_pr(record["head"]).number == 4  # type: ignore[union-attr]


def test_a_branch_someone_pushed_to_is_not_overwritten_the_bot_comments_once(repo: Path,
                                                                            logs: dict[str, Path]) -> None:
    forge = LocalForge(repo)
    record = forge.record(3)
    head = record["head"]
    git(repo, "switch", "-q", head)
    rule = next((repo / "policies/rules").glob("*.rego"))
    rule.write_text(rule.read_text().replace("# METADATA", "# METADATA\n# reviewed by alice", 1))
    git(repo, "-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "-qam", "tighten the rule")
    git(repo, "switch", "-q", "main")
    tip = git(repo, "rev-parse", head)

    run = bot(repo, logs["a"])
    fp = head.removeprefix("policyctl/")
    assert outcomes(run)[fp] == "commented"
    assert git(repo, "rev-parse", head) == tip
    comments = forge.comments(3)
    assert len(comments) == 1 and "Alice" in comments[0] and tip in comments[0]
    assert "tighten the rule" in comments[0]
    again = bot(repo, logs["a"])
    assert outcomes(again)[fp] == "person-pushed"
    assert len(forge.comments(3)) == 1 and git(repo, "rev-parse", head) == tip


def test_max_prs_caps_the_open_pull_requests_largest_clusters_first(tmp_path: Path, logs: dict[str, Path]) -> None:
    repo = seed_repo(tmp_path / "repo")
    run = bot(repo, logs["a"], max_prs=1)
    drafted = [a for a in run.actions if a.outcome in ("opened", "capped")]
    assert [a.outcome for a in drafted] == ["opened", "capped", "capped"]
    assert drafted[0].size >= drafted[1].size >= drafted[2].size
    assert "--max-prs 1" in drafted[1].detail
    assert len(LocalForge(repo).by_state("all")) == 1
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/policyctl/").count("\n") == 0  # one branch


def test_pr_merge_is_a_real_merge_then_the_cluster_counts_as_prevented(repo: Path, logs: dict[str, Path],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pr", "list", "--repo", str(repo), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["number"], p["status"]) for p in listed] == [(1, "open"), (2, "open"), (3, "open")]
    assert main(["pr", "show", "1", "--repo", str(repo)]) == 0
    shown = capsys.readouterr().out
    assert "## What fails" in shown and "```rego" in shown and BOT in shown
    head = listed[0]["head"]
    tip, main_before = git(repo, "rev-parse", head), git(repo, "rev-parse", "main")

    assert main(["pr", "merge", "1", "--repo", str(repo), "--author", "Rita Reviewer <rita@example.com>"]) == 0
    assert "merged #1" in capsys.readouterr().out
    parents = git(repo, "log", "-1", "--format=%P %ae", "main").split()
    assert parents == [main_before, tip, "rita@example.com"]  # a merge commit on main
    module = git(repo, "diff", "--name-only", main_before, "main").splitlines()[0]
    assert module in snapshot(repo, "main").files and (repo / module).is_file()  # main is checked out: tree follows
    assert git(repo, "status", "--porcelain") == ""
    assert LocalForge(repo).record(1)["merged"] is True

    assert main(["pr", "close", "1", "--repo", str(repo)]) == 1
    assert "already merged" in capsys.readouterr().err
    assert main(["pr", "show", "9", "--repo", str(repo)]) == 1
    assert "no pull request #9" in capsys.readouterr().err

    run = bot(repo, logs["a"])
    assert outcomes(run)[head.removeprefix("policyctl/")] == "already-prevented"


def test_bad_identity_and_unknown_base_are_clear_errors(repo: Path, logs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bot", "run", "--repo", str(repo), "--logs", str(logs["a"]), "--author", "nobody"]) == 2
    assert "expected `Name <email>`" in capsys.readouterr().err
    assert main(["bot", "run", "--repo", str(repo), "--logs", str(logs["a"]), "--base", "trunk",
                 "--embedder", "tfidf"]) == 1
    assert "ref 'refs/heads/trunk' not found" in capsys.readouterr().err


def test_pr_merge_without_the_base_checked_out_and_a_conflict_that_moves_nothing(repo: Path) -> None:
    forge = LocalForge(repo)
    git(repo, "switch", "-q", "-c", "elsewhere")
    main_before, tip = git(repo, "rev-parse", "main"), git(repo, "rev-parse", forge.record(2)["head"])
    record = forge.merge(2, author=("Rita", "rita@example.com"))
    assert git(repo, "log", "-1", "--format=%P", "main").split() == [main_before, tip]
    assert record["merge_commit"] == git(repo, "rev-parse", "main")
    assert git(repo, "branch", "--show-current") == "elsewhere" and git(repo, "status", "--porcelain") == ""

    # main gains a different file at the path pull request #3 adds: merging it must fail and move nothing
    git(repo, "switch", "-q", "main")
    module = git(repo, "diff", "--name-only", f"main...{forge.record(3)['head']}").splitlines()[0]
    (repo / module).parent.mkdir(parents=True, exist_ok=True)
    (repo / module).write_text("package somebody.else\n")
    before = commit_all(repo, "a rule of our own")
    with pytest.raises(RepoError, match=f"cannot merge .* into main.*{module}") as err:
        forge.merge(3)
    assert "CONFLICT" in err.value.message
    assert git(repo, "rev-parse", "main") == before and git(repo, "status", "--porcelain") == ""
    assert forge.record(3)["state"] == "open"


def _figure(body: str, label: str) -> str:
    m = re.search(rf"^\| {re.escape(label)} \| (.+) \|$", body, re.M)
    assert m, f"no row {label!r} in the body"
    return m.group(1)


def test_every_figure_in_a_body_is_what_policyctl_shadow_computes_for_the_branch(
        opened: tuple[Path, BotRun], capsys: pytest.CaptureFixture[str]) -> None:
    repo, run = opened
    forge = LocalForge(repo)
    new = [a for a in run.actions if a.outcome == "opened"]
    assert new
    for a in new:
        body = forge.record(int(a.pr or 0))["body"]
        capsys.readouterr()
        code = main(["shadow", "--repo", str(repo), "--base", "main", "--candidate", f"policyctl/{a.fingerprint}",
                     "--format", "json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["verdict"] == "PASS"
        t = out["totals"]
        assert t["events"] > 0, "the evidence sample was replayed"
        assert f"**{out['verdict']}**" in body
        assert _figure(body, "prevented: logged failures the candidate decides differently") == (
            f"**{t['prevented']}** of {t['failures']} ({out['prevented_pct']:.1f}%)")
        assert _figure(body, "exposed: logged failures it leaves as they were") == str(t["exposed"])
        assert _figure(body, "collateral: successes changed outside every rule's failure region") == (
            f"**{t['collateral']}** of {t['successes']} ({out['collateral_pct']:.2f}%; budget "
            f"{out['max_collateral_pct']:g}%)")
        assert _figure(body, "in region: successes inside this rule's failure region, changed by design") == str(
            t["in_region"])
        assert _figure(body, "fixtures") == f"{t['fixtures_passed']} of {t['fixtures']} pass"
        assert f"({t['events']} logged events;" in body
        intro = body.split("\n")[1]
        assert (f"{t['prevented']} of {t['failures']} logged failures prevented, {t['collateral']} of "
                f"{t['successes']} successes changed outside the failure region ({out['collateral_pct']:.2f}%)") in intro
        for dim, counts in out["blast_radius"].items():
            row = _figure(body, dim.replace("_", " "))
            for key, n in list(counts.items())[:8]:
                assert f"`{key}` {n}" in row


class OverreachingDrafter:
    """A drafter that claims its draft verified: a rule denying every file share, which no honest
    verification would pass. The bot's own replay must still keep it from becoming a pull request."""

    name = "overreach"

    def draft(self, ev: Any, *, base: Any, base_snapshot: Any, taken: set[str]) -> Any:
        from policyctl.draft.induce import make_draft
        from policyctl.model.config import Vocabulary
        from policyctl.model.draft import Condition

        if ev.kind != "action":
            return "this drafter only drafts actions"
        d = make_draft(ev, [[Condition("kind", "==", "action"), Condition("action.type", "==", "file_share")]],
                       taken=taken, vocabulary=Vocabulary(), label="overreach")
        d.verified = True
        d.verification = {"holdout": {"events": 1, "prevented": 1, "prevented_pct": 100.0}}
        return d


def test_a_draft_whose_replay_fails_is_never_opened(tmp_path: Path, logs: dict[str, Path]) -> None:
    repo = seed_repo(tmp_path / "repo")
    before = refs(repo)
    run = bot(repo, logs["a"], drafter=OverreachingDrafter())
    drafted = [a for a in run.actions if a.outcome not in ("already-prevented", "not-drafted")]
    assert drafted and all(a.outcome == "not-verified" and "replay fails" in a.detail for a in drafted), [
        (a.outcome, a.detail) for a in drafted]
    assert LocalForge(repo).by_state("all") == [] and refs(repo) == before
