"""Overrides cannot take the gateway down: one that keeps failing is quarantined, and all of a decision's overrides share a budget."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import commit_all, write
from test_gateway import CSV_SMB, PARQUET_SMB, Served, metric

from policyctl.decide import build_revision
from policyctl.gateway.status import format_status
from policyctl.repo import snapshot
from policyctl.sandbox import OverrideSet, WorkerPool, load_overrides

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

# The incident this guards against: `match` selects everything and `decide` loops, except on the
# override's own fixture input, so the revision builds and goes live.
SPIN = '''"""Spin on every input but the fixture's (a bug that passes the build)."""
OVERRIDE = {"match": {}, "expires": "2031-06-01T00:00:00Z", "priority": %(priority)d, "timeout_ms": %(timeout_ms)d}

def decide(input):
    if input.get("context", {}).get("fixture"):
        return None
    n = 0
    while True:
        n += 1
'''

BROKEN = '''"""Reads a field no input has (a KeyError on every call)."""
OVERRIDE = {"match": {"kind": "action"}, "expires": "2031-06-01T00:00:00Z"}

def decide(input):
    return {"action": "deny", "params": input["missing"]}
'''

FIXTURE_INPUT: dict[str, Any] = {"kind": "action", "agents": [{"id": "probe"}], "action": {"type": "probe"},
                                 "context": {"fixture": True}}


def add_spin(repo: Path, name: str = "spin", *, priority: int = 0, timeout_ms: int = 250) -> None:
    """A spinning override and the fixture it passes (the policies decide its own input)."""
    write(repo, f"overrides/{name}.py", SPIN % {"priority": priority, "timeout_ms": timeout_ms})
    fixture = {"id": f"{name}-001", "input": FIXTURE_INPUT, "why": "keep", "expect": {"source": "default"}}
    write(repo, f"shadow_fixtures/overrides/{name}.jsonl", json.dumps(fixture) + "\n")


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    own = WorkerPool(2)
    own.wait_ready()
    yield own
    own.close()


def slot(repo: Path, pool: WorkerPool, **kwargs: Any) -> OverrideSet:
    overrides = load_overrides(snapshot(repo, "HEAD"), pool=pool, **kwargs)
    assert overrides is not None
    return overrides


# --------------------------------------------------------------------------- the slot, on the real sandbox


def test_failures_quarantine_only_within_the_window_and_a_new_revision_starts_clean(
        make_repo: Callable[..., Path], pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo(seed=False)
    write(repo, "overrides/broken.py", BROKEN)
    commit_all(repo, "a broken override")
    overrides = slot(repo, pool)
    # Two failures, then one more two minutes later: never three within 60 s, so it keeps running.
    for at in (T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=150)):
        assert overrides.decide(CSV_SMB, at) is None
    assert overrides.quarantined == {} and overrides.calls["broken"] == 3
    # Three within the window: quarantined, with the failures that tripped it.
    for at in (T0 + timedelta(seconds=170), T0 + timedelta(seconds=190)):
        overrides.decide(CSV_SMB, at)
    stats = overrides.stats()
    assert stats["quarantined"] == [{"name": "broken", "file": "overrides/broken.py", "code": "override_runtime_error",
                                     "count": 3, "codes": {"override_runtime_error": 3},
                                     "first": "2030-01-01T12:02:30Z", "last": "2030-01-01T12:03:10Z"}]
    assert "override overrides/broken.py quarantined until the next revision: 3 failures" in caplog.text
    # Skipped from now on: the script is not run again.
    for i in range(5):
        assert overrides.decide(CSV_SMB, T0 + timedelta(seconds=200 + i)) is None
    assert overrides.calls["broken"] == 5 and overrides.failures["broken"] == 5
    overrides.close()
    # The next revision (a new slot) runs it again.
    fresh = slot(repo, pool)
    assert fresh.quarantined == {}
    fresh.decide(CSV_SMB, T0)
    assert fresh.calls["broken"] == 1
    fresh.close()


def test_a_timeout_weighs_double_and_one_alone_does_not_quarantine(make_repo: Callable[..., Path],
                                                                    pool: WorkerPool) -> None:
    repo = make_repo(seed=False)
    add_spin(repo, timeout_ms=100)
    commit_all(repo, "a spinning override")
    overrides = slot(repo, pool)
    assert overrides.decide(FIXTURE_INPUT, T0) is None  # its fixture input: no opinion, no failure
    overrides.decide(CSV_SMB, T0)
    assert overrides.quarantined == {}
    overrides.decide(CSV_SMB, T0 + timedelta(seconds=59))
    assert [q.to_dict()["code"] for q in overrides.quarantined.values()] == ["sandbox_timeout"]
    assert overrides.quarantined["spin"].count == 2
    overrides.decide(CSV_SMB, T0 + timedelta(seconds=60))
    assert overrides.failures_by_code == {"sandbox_timeout": 2} and overrides.calls["spin"] == 3
    overrides.close()


def test_two_spinning_overrides_share_one_budget_then_both_are_quarantined(
        make_repo: Callable[..., Path], pool: WorkerPool, caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo(seed=False)
    # Each may run 2 s on its own: together 4 s, past the gateway's 3 s evaluation deadline.
    add_spin(repo, "first", priority=10, timeout_ms=2000)
    add_spin(repo, "second", priority=0, timeout_ms=2000)
    commit_all(repo, "two spinning overrides")
    overrides = slot(repo, pool, budget_ms=200)
    caplog.set_level(logging.WARNING, logger="policyctl.sandbox")

    overrides.decide(CSV_SMB, T0)
    # The first had the whole budget and was stopped at it, not at its own 2 s; the second never started.
    assert "overrides/first.py skipped (sandbox_timeout): no answer within 200 ms" in caplog.text
    assert "overrides overrides/second.py skipped: this decision's 200 ms override budget is spent" in caplog.text
    assert overrides.calls == {"first": 1, "second": 0}
    assert overrides.failures_by_code == {"sandbox_timeout": 1, "override_budget_exhausted": 1}

    overrides.decide(CSV_SMB, T0 + timedelta(seconds=1))
    assert set(overrides.quarantined) == {"first"}  # two timeouts; the second was never blamed
    for i in range(2, 5):
        overrides.decide(CSV_SMB, T0 + timedelta(seconds=i))
    assert set(overrides.quarantined) == {"first", "second"}
    assert overrides.calls == {"first": 2, "second": 2}
    assert overrides.stats()["budget_ms"] == 200
    overrides.close()


def test_policyctl_decide_quarantines_like_the_gateway(make_repo: Callable[..., Path]) -> None:
    """The pipeline every caller builds carries the same slot: a replay sees the quarantine production had."""
    repo = make_repo()
    add_spin(repo, timeout_ms=100)
    commit_all(repo, "a spinning override on the real policy set")
    revision = build_revision(snapshot(repo, "HEAD"), verify=False)
    try:
        decisions = [revision.pipeline.decide_dict(PARQUET_SMB) for _ in range(4)]
        assert [d["source"] for d in decisions] == ["policy"] * 4
        overrides = revision.pipeline.overrides
        assert isinstance(overrides, OverrideSet)
        assert set(overrides.quarantined) == {"spin"} and overrides.calls["spin"] == 2
    finally:
        overrides = revision.pipeline.overrides
        if isinstance(overrides, OverrideSet):
            overrides.close()


# --------------------------------------------------------------------------- a real gateway


def quarantined(gw: Served) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (gw.status().get("overrides") or {}).get("quarantined") or []
    return found


def test_a_spinning_override_is_quarantined_by_the_gateway_until_the_next_commit(
        policy_repo: Path, serve: Callable[..., Served]) -> None:  # noqa: F811
    add_spin(policy_repo, timeout_ms=2000)
    spun = commit_all(policy_repo, "emergency override (it spins)")
    gw = serve(policy_repo, "--workers", "1", "--poll", "600", "--override-budget-ms", "150")
    gw.serving(spun)
    assert gw.status()["overrides"] == {"budget_ms": 150, "quarantined": []}
    said = "override overrides/spin.py quarantined until the next revision"
    said_at_build = gw.stderr.count(said)  # the builder ran the fixtures through the same slot

    # A few requests: each is still answered (by the policies), and the override is quarantined.
    for _ in range(6):
        assert gw.decide(PARQUET_SMB)["source"] == "policy"
        if quarantined(gw):
            break
    [entry] = quarantined(gw)
    assert entry["name"] == "spin" and entry["file"] == "overrides/spin.py"
    assert entry["code"] == "sandbox_timeout" and entry["count"] == 2 and entry["first"] <= entry["last"]
    listed = {o["file"]: o for o in gw.status()["active"]["overrides"]}
    assert listed["overrides/spin.py"]["mode"] == "quarantined"
    text = format_status(gw.status())
    assert "override quarantined overrides/spin.py" in text and "quarantined: 2 failures (sandbox_timeout)" in text
    # the override workers' kernel wall, as `gateway status` shows it (this machine has all three)
    wall = gw.status()["active"]["sandbox_wall"]
    assert wall["complete"] and wall["seccomp"] and wall["no_new_privs"] and wall["landlock_abi"], wall
    assert "seccomp filter, Landlock ABI" in text and "MISSING" not in text
    assert metric(gw.metrics(), 'policyctl_gateway_overrides_quarantined{override="spin",file="overrides/spin.py",'
                                'code="sandbox_timeout"}') == 1
    # The budget, not the override's own 2 s, bounded each call; the quarantine is said on stderr.
    assert "no answer within 150 ms" in gw.stderr
    gw.wait_until(lambda: gw.stderr.count(said) > said_at_build, "the quarantine said on stderr")

    # From now on the policies answer, and the override is not run again.
    timeouts = gw.status()["workers"]["override_failures"]["sandbox_timeout"]
    for _ in range(10):
        assert gw.decide(PARQUET_SMB)["source"] == "policy"
        assert gw.decide(CSV_SMB)["source"] == "default"
    status = gw.status()
    assert status["workers"]["override_failures"]["sandbox_timeout"] == timeouts
    assert status["workers"]["timeouts"] == 0  # no evaluation ran into the gateway's deadline

    # A new commit is a new revision: it starts clean, and the override runs again.
    write(policy_repo, "overrides/README.md", "Emergency overrides; see docs/overrides.md.\n")
    fresh = commit_all(policy_repo, "any later commit")
    gw.serving(fresh)
    assert quarantined(gw) == []
    assert "policyctl_gateway_overrides_quarantined{" not in gw.metrics()
    assert gw.decide(PARQUET_SMB)["source"] == "policy"
    assert gw.status()["workers"]["override_failures"]["sandbox_timeout"] == timeouts + 1
