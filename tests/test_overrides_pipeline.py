"""Overrides in the decision pipeline, from real git commits: ahead of the policies, expiring, failing safely."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.decide.checks import run_check
from policyctl.errors import PolicyctlError
from policyctl.repo import snapshot, worktree_snapshot
from policyctl.sandbox import OverrideSet, SandboxCompileError, WorkerPool, load_overrides

PROJECT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
EXPIRES = datetime(2031, 6, 1, tzinfo=UTC)

DB_LOCK = '''"""Migrations first on the db-migrations lock until the lock service is fixed (INC-5120).

The lock service hands the lock to whoever asks first; migrations must not wait behind readers.
"""
OVERRIDE = {"match": {"kind": "conflict", "resource.kind": "lock", "resource.id": "db-migrations"},
            "expires": "2031-06-01T00:00:00Z", "priority": 50}

def decide(input):
    migrators = sorted(a["id"] for a in input["agents"] if a.get("role") == "migrate")
    if not migrators:
        return None
    rest = sorted(a["id"] for a in input["agents"] if a["id"] not in migrators)
    return {"action": "arbitrate", "params": {"winner": migrators[0], "order": migrators + rest}}
'''

LOCK_INPUT: dict[str, Any] = {
    "kind": "conflict",
    "agents": [{"id": "reader-7", "role": "read", "priority": 9}, {"id": "migrate-1", "role": "migrate", "priority": 1}],
    "resource": {"kind": "lock", "id": "db-migrations"},
}
READERS_ONLY: dict[str, Any] = {
    "kind": "conflict",
    "agents": [{"id": "reader-7", "role": "read"}, {"id": "reader-2", "role": "read"}],
    "resource": {"kind": "lock", "id": "db-migrations"},
}
DB_LOCK_FIXTURES = [
    {"id": "db-lock-001", "input": LOCK_INPUT, "why": "prevent",
     "expect": {"action": "arbitrate", "params": {"winner": "migrate-1", "order": ["migrate-1", "reader-7"]}}},
    {"id": "db-lock-002", "input": READERS_ONLY, "why": "keep", "expect": {"action": "negotiate", "source": "default"}},
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write(repo: Path, path: str, text: str) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this project's policies and fixtures plus the db_lock override."""
    root = tmp_path / "policy-repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides"):
        if (PROJECT / top).is_dir():
            shutil.copytree(PROJECT / top, root / top)
    write(root, "policyctl.toml", (PROJECT / "bench/vocabularies/demo.toml").read_text())  # the seed's vocabulary
    write(root, "overrides/db_lock.py", DB_LOCK)
    write(root, "shadow_fixtures/overrides/db_lock.jsonl", "".join(json.dumps(f) + "\n" for f in DB_LOCK_FIXTURES))
    commit(root, "db_lock override")
    return root


def build(repo: Path, opened: list[OverrideSet], *, verify: bool = True, clock: Any = None) -> Any:
    kwargs = {"clock": clock} if clock is not None else {}
    revision = build_revision(snapshot(repo, "HEAD"), verify=verify, load_overrides=load_overrides, **kwargs)
    if isinstance(revision.pipeline.overrides, OverrideSet):
        opened.append(revision.pipeline.overrides)
    return revision


def test_an_override_decides_ahead_of_the_policies(repo: Path, opened: list[OverrideSet]) -> None:
    revision = build(repo, opened)  # verify=True: every fixture, the override's too, passes
    assert revision.fixture_results and not revision.failed_fixtures
    blob = git(repo, "rev-parse", "HEAD:overrides/db_lock.py")
    decision = revision.pipeline.decide_dict(LOCK_INPUT)
    assert decision["source"] == f"override:overrides/db_lock.py@{blob}"
    assert decision["action"] == "arbitrate"
    assert decision["params"] == {"winner": "migrate-1", "order": ["migrate-1", "reader-7"]}
    assert decision["reasons"] == [{"rule": "db_lock", "file": "overrides/db_lock.py", "message":
                                    "Migrations first on the db-migrations lock until the lock service is fixed "
                                    "(INC-5120)."}]
    assert decision["revision"] == git(repo, "rev-parse", "HEAD") and decision["decision_id"]
    # None from decide() means no opinion: the policies (here the default) decide.
    assert revision.pipeline.decide_dict(READERS_ONLY)["source"] == "default"
    # An input the match does not select never reaches the sandbox.
    port = {"kind": "conflict", "agents": LOCK_INPUT["agents"], "resource": {"kind": "port", "port": 22}}
    assert revision.pipeline.decide_dict(port)["source"] == "policy"
    stats = revision.pipeline.overrides.stats()
    assert stats["decisions"]["db_lock"] >= 1 and stats["failures"] == {"db_lock": 0}


def test_an_expired_override_stops_applying_without_a_new_commit(repo: Path, opened: list[OverrideSet]) -> None:
    now = [EXPIRES - timedelta(seconds=1)]
    revision = build(repo, opened, verify=False, clock=lambda: now[0])
    assert revision.pipeline.decide_dict(LOCK_INPUT)["source"].startswith("override:overrides/db_lock.py@")
    now[0] = EXPIRES
    assert revision.pipeline.decide_dict(LOCK_INPUT)["source"] == "default"
    # `policyctl check` flags it from then on.
    report = run_check(snapshot(repo, "HEAD"), now=EXPIRES)
    assert [p.code for p in report.warnings] == ["override_expired"]


def test_a_failing_override_is_skipped_logged_and_counted(repo: Path, opened: list[OverrideSet],
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # each failure on its own: a budget large enough that the runaway leaves time for the rest
    # (the budget itself is tested in test_quarantine.py)
    monkeypatch.setenv("POLICYCTL_OVERRIDE_BUDGET_MS", "5000")
    write(repo, "overrides/a_runaway.py", '"""Runs forever."""\n'
          'OVERRIDE = {"match": {"kind": "conflict"}, "expires": "2031-06-01T00:00:00Z", "priority": 90, '
          '"timeout_ms": 200}\n\ndef decide(input):\n    while True:\n        pass\n')
    write(repo, "overrides/b_broken.py", '"""Raises."""\n'
          'OVERRIDE = {"match": {"kind": "conflict"}, "expires": "2031-06-01T00:00:00Z", "priority": 80}\n\n'
          'def decide(input):\n    return input["no-such-field"]\n')
    write(repo, "overrides/c_bad_answer.py", '"""Answers nonsense."""\n'
          'OVERRIDE = {"match": {"kind": "conflict"}, "expires": "2031-06-01T00:00:00Z", "priority": 70}\n\n'
          'def decide(input):\n    return {"action": "arbitrate", "params": {"winner": "nobody"}}\n')
    for name in ("a_runaway", "b_broken", "c_bad_answer"):
        write(repo, f"shadow_fixtures/overrides/{name}.jsonl", json.dumps(DB_LOCK_FIXTURES[0] | {"id": name}) + "\n")
    commit(repo)
    revision = build(repo, opened, verify=False)
    overrides = revision.pipeline.overrides
    assert [o.name for o in overrides.overrides] == ["a_runaway", "b_broken", "c_bad_answer", "db_lock"]
    with caplog.at_level("WARNING", logger="policyctl.sandbox"):
        decision = revision.pipeline.decide_dict(LOCK_INPUT)
    # All three fail, the next override (db_lock, priority 50) decides.
    assert decision["source"].startswith("override:overrides/db_lock.py@")
    assert overrides.failures == {"a_runaway": 1, "b_broken": 1, "c_bad_answer": 1, "db_lock": 0}
    assert overrides.failures_by_code == {"sandbox_timeout": 1, "override_runtime_error": 1, "invalid_decision": 1}
    logged = caplog.text
    assert "override overrides/a_runaway.py skipped (sandbox_timeout): no answer within 200 ms" in logged
    assert "override overrides/b_broken.py:5 skipped (override_runtime_error): KeyError" in logged
    # With no override left to decide, the policies decide; the gateway never sees an exception.
    port = {"kind": "conflict", "agents": LOCK_INPUT["agents"], "resource": {"kind": "port", "port": 22}}
    decision = revision.pipeline.decide_dict(port)
    assert decision["source"] == "policy" and decision["params"]["winner"] == "reader-7"
    assert overrides.failures["a_runaway"] == 2
    assert overrides.stats()["pool"]["timeouts"] >= 2


def test_overrides_run_by_priority_then_name(repo: Path, opened: list[OverrideSet]) -> None:
    for name, priority in (("zz_first", 60), ("aa_second", 50)):
        write(repo, f"overrides/{name}.py", f'"""{name}."""\n'
              f'OVERRIDE = {{"match": {{"resource.id": "db-migrations"}}, "expires": "2031-06-01T00:00:00Z", '
              f'"priority": {priority}}}\n\ndef decide(input):\n    return {{"action": "deny", "params": {{"by": "{name}"}}}}\n')
    commit(repo)
    revision = build(repo, opened, verify=False)
    assert [o.name for o in revision.pipeline.overrides.overrides] == ["zz_first", "aa_second", "db_lock"]
    assert revision.pipeline.decide_dict(LOCK_INPUT)["params"] == {"by": "zz_first"}


def test_a_broken_override_makes_the_revision_unservable(repo: Path) -> None:
    write(repo, "overrides/bad.py", '"""Tries to escape."""\nimport os\n'
          'OVERRIDE = {"match": {"kind": "conflict"}, "expires": "2031-06-01T00:00:00Z"}\n\n'
          'def decide(input):\n    return input.__class__\n')
    commit(repo)
    with pytest.raises(PolicyctlError) as info:
        build_revision(snapshot(repo, "HEAD"), load_overrides=load_overrides)
    assert isinstance(info.value, SandboxCompileError)
    assert "overrides/bad.py:2:" in info.value.message and "imports are not allowed" in info.value.message
    assert [p.line for p in info.value.problems] == [2, 6]
    # `policyctl check` (and so pre-commit and CI) reports the same problems, with lines
    # (a week before the expiry, so it is within the override horizon).
    report = run_check(worktree_snapshot(repo), now=EXPIRES - timedelta(days=7))
    assert [(p.line, p.code) for p in report.errors if p.file == "overrides/bad.py"] == [
        (None, "override_without_fixtures"), (2, "override_compile"), (6, "override_compile")]


def test_a_bad_header_makes_the_revision_unservable(repo: Path) -> None:
    write(repo, "overrides/late.py", '"""No expiry."""\nOVERRIDE = {"match": {}, "priority": 1}\n\n'
          'def decide(input):\n    return None\n')
    commit(repo)
    with pytest.raises(SandboxCompileError, match=r"overrides/late.py:2: override_expires: .*expires"):
        load_overrides(snapshot(repo, "HEAD"))


def test_no_overrides_means_no_override_slot(repo: Path) -> None:
    git(repo, "rm", "-q", "-r", "overrides/db_lock.py", "shadow_fixtures/overrides/db_lock.jsonl")
    commit(repo)
    assert load_overrides(snapshot(repo, "HEAD")) is None


def test_closing_one_revisions_overrides_keeps_the_others_working(repo: Path) -> None:
    first = load_overrides(snapshot(repo, "HEAD"))
    second = load_overrides(snapshot(repo, "HEAD"))
    assert first is not None and second is not None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        first.close()
        first.close()  # idempotent
        assert second.decide(LOCK_INPUT, now) is not None
        # A request in flight on the old revision during a hot swap still gets an answer.
        assert first.decide(LOCK_INPUT, now) is not None
    finally:
        second.close()


def test_an_explicit_pool_belongs_to_its_owner(repo: Path) -> None:
    pool = WorkerPool(size=1)
    try:
        overrides = load_overrides(snapshot(repo, "HEAD"), pool=pool)
        assert overrides is not None
        assert overrides.decide(LOCK_INPUT, datetime(2030, 1, 1, tzinfo=UTC))["action"] == "arbitrate"
        overrides.close()
        assert not pool.closed
    finally:
        pool.close()


# ------------------------------------------------------------------------- the CLI


def test_override_new_scaffolds_a_script_that_passes_check_once_its_docstring_is_written(
        tmp_path: Path, opened: list[OverrideSet], capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    shutil.copytree(PROJECT / "policies", root / "policies")
    assert main(["override", "new", "lock_fix", "--repo", str(root), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created == {"script": "overrides/lock_fix.py", "fixtures": "shadow_fixtures/overrides/lock_fix.jsonl"}
    source = (root / "overrides/lock_fix.py").read_text()
    expires = datetime.fromisoformat(source.split('"expires": "')[1].split('"')[0].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    # The TODO docstring would be every decision's reason: check refuses it until it is written.
    assert main(["check", "--repo", str(root)]) == 1
    assert "overrides/lock_fix.py:1: error: override_doc_placeholder" in capsys.readouterr().err
    todo = source.splitlines()[0]
    (root / "overrides/lock_fix.py").write_text(source.replace(todo, '"""Backups first on the lock (INC-1).'))
    assert main(["check", "--repo", str(root)]) == 0
    commit(root, "scaffold")
    revision = build(root, opened)  # the scaffold's own fixture passes through the real sandbox
    assert [r.fixture.id for r in revision.fixture_results] == ["override-lock-fix-001"]
    # Running it again refuses to overwrite.
    assert main(["override", "new", "lock_fix", "--repo", str(root)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_override_test_runs_a_script_in_the_sandbox(repo: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps({"input": LOCK_INPUT}))
    assert main(["override", "test", "overrides/db_lock.py", "--repo", str(repo), "--input", str(input_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('arbitrate  params: {"order": ["migrate-1", "reader-7"], "winner": "migrate-1"}')

    assert main(["override", "test", str(repo / "overrides/db_lock.py"), "--repo", str(repo),
                 "--input", str(input_file), "--json"]) == 0
    trial = json.loads(capsys.readouterr().out)
    assert trial["ok"] and trial["selects"] and not trial["expired"]
    assert trial["decision"] == {"action": "arbitrate", "params": {"winner": "migrate-1",
                                                                   "order": ["migrate-1", "reader-7"]}}


def test_override_test_reports_sandbox_errors_with_file_and_line(repo: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(LOCK_INPUT))
    write(repo, "overrides/slow.py", '"""Slow."""\nOVERRIDE = {"match": {"kind": "action"}, '
          '"expires": "2031-06-01T00:00:00Z", "timeout_ms": 100}\n\ndef decide(input):\n'
          '    print("thinking")\n    while True:\n        pass\n')
    assert main(["override", "test", "overrides/slow.py", "--repo", str(repo), "--input", str(input_file),
                 "--force"]) == 1
    captured = capsys.readouterr()
    assert "does not select this input" in captured.out
    assert "Error: overrides/slow.py: no answer within 100 ms" in captured.err and "sandbox_timeout" in captured.err

    write(repo, "overrides/probe.py", '"""Probes."""\nOVERRIDE = {"match": {}, "expires": "2031-06-01T00:00:00Z"}\n\n'
          'def decide(input):\n    return "{0.__class__}".format(input)\n')
    assert main(["override", "test", "overrides/probe.py", "--repo", str(repo), "--input", str(input_file)]) == 1
    assert "Error: overrides/probe.py:5: attribute 'format' is not allowed" in capsys.readouterr().err

    write(repo, "overrides/imports.py", '"""Imports."""\nimport os\nOVERRIDE = {"match": {}, '
          '"expires": "2031-06-01T00:00:00Z"}\n\ndef decide(input):\n    return None\n')
    assert main(["override", "test", "overrides/imports.py", "--repo", str(repo), "--input", str(input_file),
                 "--json"]) == 1
    trial = json.loads(capsys.readouterr().out)
    assert not trial["ran"] and trial["problems"][0]["line"] == 2
