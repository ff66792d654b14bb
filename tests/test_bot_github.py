"""The GitHub forge against a GitHub-shaped server on 127.0.0.1 and a bare repository as the remote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import git
from fake_github import FakeGitHub
from test_bot import seed_repo, simulate_logs

from policyctl.bot import run_bot
from policyctl.bot.forge import ForgeError, combined_state, latest_statuses
from policyctl.bot.github import GitHubForge
from policyctl.bot.state import read_marker
from policyctl.cli.main import main
from policyctl.repo import commit_files

SLUG = "acme/policies"
TOKEN = "test-token"


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path]:
    """(bare remote, a clone of it checked out on main, as actions/checkout leaves it)."""
    seed = seed_repo(tmp_path / "seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    return bare, clone


@pytest.fixture
def fake(remote: tuple[Path, Path]) -> Iterator[FakeGitHub]:
    with FakeGitHub(owner="acme", name="policies", token=TOKEN, remote=remote[0]) as server:
        yield server


class Clock:
    """Injected time: a fixed now, and sleeps recorded instead of slept."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def forge_for(clone: Path, fake: FakeGitHub, *, token: str = TOKEN, clock: Clock | None = None) -> GitHubForge:
    clock = clock or Clock()
    return GitHubForge(clone, slug=SLUG, token=token, api_url=fake.url, remote="origin", sleep=clock.sleep,
                       clock=clock.time)


def push(forge: GitHubForge, clone: Path, branch: str, text: str = "package x\n") -> str:
    sha = commit_files(clone, forge.base_ref("main"), {"policies/rules/x.rego": text.encode()}, "x",
                       author=("policyctl-bot", "bot@policyctl.local"))
    forge.push_branch(branch, sha, expected=forge.branch_tip(branch))
    return sha


def test_create_find_update_label_comment_and_list(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    bare, clone = remote
    forge = forge_for(clone, fake)
    assert forge.find_pr("policyctl/x") is None
    sha = push(forge, clone, "policyctl/x")
    assert git(bare, "rev-parse", "refs/heads/policyctl/x") == sha

    pr = forge.create_pr(head="policyctl/x", base="main", title="t", body="b")
    assert (pr.number, pr.head, pr.base, pr.state, pr.merged) == (1, "policyctl/x", "main", "open", False)
    assert pr.url == "https://github.com/acme/policies/pull/1"
    found = forge.find_pr("policyctl/x")  # existing-PR detection
    assert found is not None and found.number == 1 and found.body == "b"
    updated = forge.update_pr(1, title="t2", body="b2")
    assert (updated.title, updated.body) == ("t2", "b2") and fake.pulls[1]["body"] == "b2"
    forge.add_labels(1, ["policyctl"])
    forge.comment(1, "hello")
    assert forge.comments(1) == ["hello"]
    assert [p.number for p in forge.open_bot_prs()] == [1]
    assert [p.labels for p in forge.open_bot_prs()] == [["policyctl"]]
    # the requests GitHub documents, with the token as a bearer
    calls = {(r.method, r.path) for r in fake.requests}
    assert {("GET", "/repos/acme/policies/pulls"), ("POST", "/repos/acme/policies/pulls"),
            ("PATCH", "/repos/acme/policies/pulls/1"), ("POST", "/repos/acme/policies/issues/1/labels"),
            ("POST", "/repos/acme/policies/issues/1/comments")} <= calls
    lookup = next(r for r in fake.requests if r.query.get("head"))
    assert lookup.query["head"] == "acme:policyctl/x" and lookup.query["state"] == "all"
    assert {r.authorization for r in fake.requests} == {f"Bearer {TOKEN}"}


def test_closed_unmerged_and_merged_are_told_apart(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    _, clone = remote
    forge = forge_for(clone, fake)
    push(forge, clone, "policyctl/a")
    push(forge, clone, "policyctl/b", "package y\n")
    a = forge.create_pr(head="policyctl/a", base="main", title="a", body="")
    b = forge.create_pr(head="policyctl/b", base="main", title="b", body="")
    fake.close(a.number)
    fake.merge(b.number)
    closed, merged = forge.find_pr("policyctl/a"), forge.find_pr("policyctl/b")
    assert closed is not None and closed.closed_unmerged and not closed.is_open
    assert merged is not None and merged.merged and not merged.closed_unmerged
    assert forge.open_bot_prs() == []
    # a newer pull request for the same branch wins over the closed one
    again = forge.create_pr(head="policyctl/a", base="main", title="a again", body="")
    found = forge.find_pr("policyctl/a")
    assert found is not None and found.number == again.number and found.is_open


def test_a_bad_token_is_a_401_that_names_github_token(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    forge = forge_for(remote[1], fake, token="wrong")
    with pytest.raises(ForgeError) as err:
        forge.find_pr("policyctl/x")
    assert "401 Bad credentials" in err.value.message and "GITHUB_TOKEN" in err.value.message


def test_a_422_shows_githubs_validation_errors(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    _, clone = remote
    forge = forge_for(clone, fake)
    with pytest.raises(ForgeError) as err:
        forge.create_pr(head="policyctl/nowhere", base="main", title="t", body="")
    assert "422 Validation Failed" in err.value.message and "PullRequest.head: invalid" in err.value.message
    push(forge, clone, "policyctl/x")
    forge.create_pr(head="policyctl/x", base="main", title="t", body="")
    with pytest.raises(ForgeError) as err:
        forge.create_pr(head="policyctl/x", base="main", title="t", body="")
    assert "A pull request already exists for acme:policyctl/x." in err.value.message


def test_a_short_rate_limit_is_waited_out_once(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    clock = Clock()
    forge = forge_for(remote[1], fake, clock=clock)
    reset = str(int(clock.now) + 20)
    fake.script(403, {"message": "API rate limit exceeded for installation ID 1.", "documentation_url": "x"},
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, method="GET")
    assert forge.open_bot_prs() == []
    assert clock.slept == [21.0] and len(fake.requests) == 2
    fake.script(429, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "3"})
    fake.script(429, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "3"})
    with pytest.raises(ForgeError) as err:  # retried once only
        forge.open_bot_prs()
    assert "rate limit" in err.value.message and clock.slept == [21.0, 3.0]


def test_a_long_rate_limit_is_a_clear_error_saying_when(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    clock = Clock(now=1_800_000_000.0)
    forge = forge_for(remote[1], fake, clock=clock)
    fake.script(403, {"message": "API rate limit exceeded for user ID 1."},
                {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "5000", "x-ratelimit-reset": str(1_800_000_000 + 2399)})
    with pytest.raises(ForgeError) as err:
        forge.find_pr("policyctl/x")
    message = err.value.message
    assert "rate limit" in message and "0 of 5000 requests left" in message
    assert "2027-01-15 08:40:00Z" in message and "(in 40 min)" in message and clock.slept == []


def test_other_refusals_say_what_to_fix(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    forge = forge_for(remote[1], fake)
    fake.script(403, {"message": "Resource not accessible by integration"})
    with pytest.raises(ForgeError, match="pull-requests: write"):
        forge.open_bot_prs()
    other = GitHubForge(remote[1], slug="acme/elsewhere", token=TOKEN, api_url=fake.url)
    with pytest.raises(ForgeError, match="404 Not Found.*--github-repo acme/elsewhere"):
        other.open_bot_prs()
    down = GitHubForge(remote[1], slug=SLUG, token=TOKEN, api_url="http://127.0.0.1:9",
                       client=httpx.Client(timeout=2))
    with pytest.raises(ForgeError, match="cannot reach the GitHub API at http://127.0.0.1:9"):
        down.open_bot_prs()


def test_commit_statuses_are_set_and_read_back_through_the_api(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    _, clone = remote
    forge = forge_for(clone, fake)
    sha = push(forge, clone, "policyctl/x")
    forge.set_status(sha, state="pending", description="replaying the draft")
    forge.set_status(sha, state="failure", description="FAIL: 1 fixture(s) fail; " + "collateral " * 30,
                     target_url="https://ci.example/run/7")
    forge.set_status(sha, state="success", description="lint", context="policyctl/lint")
    posted = [r for r in fake.requests if r.method == "POST" and r.path == f"/repos/acme/policies/statuses/{sha}"]
    assert [r.body["state"] for r in posted] == ["pending", "failure", "success"]
    assert posted[0].body == {"state": "pending", "description": "replaying the draft", "context": "policyctl/shadow"}
    assert len(posted[1].body["description"]) == 140 and posted[1].body["description"].endswith("…")
    assert posted[1].body["target_url"] == "https://ci.example/run/7"

    statuses = forge.statuses(sha)  # GET /repos/{o}/{r}/commits/{ref}/statuses: newest first
    assert [(st.context, st.state) for st in statuses] == [("policyctl/lint", "success"),
                                                          ("policyctl/shadow", "failure"),
                                                          ("policyctl/shadow", "pending")]
    assert [st.state for st in latest_statuses(statuses)] == ["success", "failure"]
    assert combined_state(statuses) == "failure"
    combined = httpx.get(f"{fake.url}/repos/acme/policies/commits/policyctl/x/status",  # by branch, as GitHub allows
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert (combined["state"], combined["sha"], combined["total_count"]) == ("failure", sha, 2)
    forge.set_status(sha, state="success", description="PASS")
    assert combined_state(forge.statuses(sha)) == "success"


def test_commit_status_refusals_say_what_to_fix(remote: tuple[Path, Path], fake: FakeGitHub) -> None:
    _, clone = remote
    forge = forge_for(clone, fake)
    with pytest.raises(ForgeError, match="expected one of pending, success, failure, error"):
        forge.set_status("0" * 40, state="green", description="")
    assert fake.requests == []  # refused before asking GitHub
    with pytest.raises(ForgeError, match="422 No commit found for SHA: " + "1" * 40):
        forge.set_status("1" * 40, state="success", description="PASS")
    sha = push(forge, clone, "policyctl/x")
    fake.script(403, {"message": "Resource not accessible by integration"}, path_part="/statuses/")
    with pytest.raises(ForgeError, match="403 Resource not accessible by integration.*statuses: write"):
        forge.set_status(sha, state="success", description="PASS")
    with pytest.raises(ForgeError, match="401 Bad credentials"):
        forge_for(clone, fake, token="wrong").set_status(sha, state="success", description="PASS")


def test_bot_run_on_github_opens_once_then_stays_quiet(remote: tuple[Path, Path], fake: FakeGitHub, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bare, clone = remote
    logs = simulate_logs(tmp_path / "logs")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", SLUG)
    assert main(["bot", "run", "--repo", str(clone), "--logs", str(logs["a"]), "--provider", "github",
                 "--embedder", "tfidf", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"already-prevented": 2, "opened": 3}
    assert sorted(fake.pulls) == [1, 2, 3]
    for pr in fake.pulls.values():
        head = pr["head"]["ref"]
        assert pr["state"] == "open" and pr["base"]["ref"] == "main" and [lb["name"] for lb in pr["labels"]] == ["policyctl"]
        marker = read_marker(pr["body"])
        assert marker is not None and head == f"policyctl/{marker.fingerprint}"
        # the branch is on the remote: one commit on main by the bot
        assert git(bare, "rev-list", "--count", f"main..{head}") == "1"
        assert git(bare, "log", "-1", "--format=%ae", head) == "bot@policyctl.local"
        assert "git fetch origin" in pr["body"]
    assert git(clone, "status", "--porcelain") == ""

    # the same logs again: no write to GitHub, no push
    writes, remote_refs = len(fake.writes()), git(bare, "for-each-ref")
    forge = forge_for(clone, fake)
    run = run_bot(clone, [logs["a"]], forge=forge, embedder="tfidf")
    assert sorted(a.outcome for a in run.actions) == ["already-prevented"] * 2 + ["unchanged"] * 3
    assert len(fake.writes()) == writes and git(bare, "for-each-ref") == remote_refs

    # someone pushes to a bot branch on the remote; a reviewer closes another pull request
    head = fake.pulls[1]["head"]["ref"]
    person = tmp_path / "person"
    git(tmp_path, "clone", "-q", "-b", head, str(bare), str(person))
    (person / "NOTES.md").write_text("why this rule\n")
    git(person, "add", "NOTES.md")
    git(person, "-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "-qm", "notes")
    git(person, "push", "-q", "origin", head)
    fake.close(2)
    alice_tip = git(bare, "rev-parse", head)

    run = run_bot(clone, [logs["ab"]], forge=forge, embedder="tfidf")
    by = {a.pr: a for a in run.actions if a.pr}
    assert by[1].outcome == "commented" and git(bare, "rev-parse", head) == alice_tip
    assert "Alice" in fake.comments[1][0]["body"] and alice_tip in fake.comments[1][0]["body"]
    assert by[2].outcome == "ignored" and fake.pulls[2]["state"] == "closed"
    assert by[3].outcome == "updated" and git(bare, "rev-list", "--count", f"main..{fake.pulls[3]['head']['ref']}") == "1"
    assert sorted(fake.pulls) == [1, 2, 3]  # nothing new opened, nothing reopened
    marker = read_marker(fake.pulls[3]["body"])
    assert marker is not None and marker.size == by[3].size


def test_an_open_pull_request_whose_replay_stops_passing_gets_a_failing_check(
        remote: tuple[Path, Path], fake: FakeGitHub, tmp_path: Path) -> None:
    bare, clone = remote
    logs = simulate_logs(tmp_path / "logs")
    forge = forge_for(clone, fake)
    run = run_bot(clone, [logs["a"]], forge=forge, embedder="tfidf")
    opened = [a for a in run.actions if a.outcome == "opened"]
    assert opened
    # every pull request the bot opens carries its required check, set from the bot's own replay
    for a in opened:
        (status,) = fake.statuses[str(a.commit)]
        assert status["context"] == "policyctl/shadow" and status["state"] == "success"
        assert status["description"].startswith("policyctl shadow: PASS")

    # main gains a hand-written fixture that pins one of the failing inputs to what main decides today:
    # the first pull request's rule now breaks a fixture, so its branch no longer passes on main
    target = opened[0]
    branch_files = git(bare, "diff", "--name-only", f"main..{target.branch}").splitlines()
    fixtures_file = next(p for p in branch_files if p.startswith("shadow_fixtures/"))
    prevent = next(f for f in map(json.loads, git(bare, "show", f"{target.branch}:{fixtures_file}").splitlines())
                   if f["why"] == "prevent")
    from policyctl.decide import build_revision
    from policyctl.repo import snapshot
    today = build_revision(snapshot(clone, "HEAD"), verify=False).pipeline.decide_dict(prevent["input"])
    person = tmp_path / "maintainer"
    git(tmp_path, "clone", "-q", str(bare), str(person))
    (person / "shadow_fixtures/pinned").mkdir(parents=True)
    (person / "shadow_fixtures/pinned/today.jsonl").write_text(json.dumps(
        {"id": "pinned-001", "input": prevent["input"], "expect": {"action": today["action"]}}) + "\n")
    git(person, "add", "-A")
    git(person, "-c", "user.name=Maintainer", "-c", "user.email=m@example.com", "commit", "-qm", "pin today")
    git(person, "push", "-q", "origin", "main")

    tip = git(bare, "rev-parse", str(target.branch))
    for _ in range(2):  # twice: the check stays failure, the pull request is told once
        run = run_bot(clone, [logs["a"]], forge=forge, embedder="tfidf")
        again = next(a for a in run.actions if a.fingerprint == target.fingerprint)
        assert again.outcome == "not-verified" and "its check is now failure" in again.detail, again.detail
    states = [st["state"] for st in fake.statuses[tip]]
    assert states[0] == "success" and states[-1] == "failure"
    assert "FAIL" in fake.statuses[tip][-1]["description"]
    stale = [c for c in fake.comments.get(int(str(target.pr)), []) if "policyctl:stale" in c["body"]]
    assert len(stale) == 1 and "no longer passes its shadow replay on `main`" in stale[0]["body"]
    assert git(bare, "rev-parse", str(target.branch)) == tip  # nothing pushed over it
