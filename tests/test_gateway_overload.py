"""The gateway under memory pressure and overload: real gateway processes, real git, real sockets."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import commit_all, write
from test_gateway import Served, log_lines, metric

MIB = 1024 * 1024


# either reason keeps a slow commit out: much slower than the serving revision, or near the deadline
SLOW_REASON = re.compile(r"slower than the serving revision|of the [\d.]+ s evaluation deadline")


def slow_rule(n: int) -> str:
    """A rule that matches `action.type == "slow"` and spends ~0.3 µs per number of a comprehension over n."""
    return f"""# METADATA
# title: Slow
# description: a comprehension over {n} numbers, reached only by action type slow
# custom:
#   mode: enforce
package agentgov.rules.slow

import rego.v1

decisions contains {{"id": "slow", "action": "deny", "params": {{}}, "message": "slow"}} if {{
\tinput.kind == "action"
\tinput.action.type == "slow"
\tcount([x | some x in numbers.range(0, {n}); x > 0]) > 1
}}
"""


SLOW = {"kind": "action", "action": {"type": "slow"}}


def large_input(i: int, size: int) -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": f"etl-{i}"}],
            "action": {"type": "file_share", "protocol": "smb", "file_type": "csv"},
            "context": {"blob": "x" * size, "n": i}}


# --------------------------------------------------------------------------- bounded memory


def test_the_outcome_window_and_the_log_backlog_stay_within_their_bytes(
        policy_repo: Path, tmp_path: Path, serve: Callable[..., Served]) -> None:
    log_dir = tmp_path / "log"
    # 1 MiB of window and 0.5 MiB of backlog against 80 inputs of 100 KB; a 1 s flush lets the backlog fill.
    gw = serve(policy_repo, "--poll", "600", "--workers", "2", "--log-dir", str(log_dir), "--log-window-mb", "1",
               "--log-backlog-mb", "0.5", "--log-flush", "1")
    peaks = {"window": 0, "backlog": 0}
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            while not stop.is_set():
                log = client.get("/v1/status").json()["decision_log"]
                peaks["window"] = max(peaks["window"], log["window_bytes"])
                peaks["backlog"] = max(peaks["backlog"], log["backlog_bytes"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    ids = []
    try:
        for i in range(80):
            response = gw.http.post("/v1/decide", json={"input": large_input(i, 100_000)})
            assert response.status_code == 200, response.text
            ids.append(response.json()["decision_id"])
    finally:
        stop.set()
        watcher.join()

    status = gw.status()["decision_log"]
    assert status["window_max_bytes"] == MIB and status["max_backlog_bytes"] == MIB // 2
    assert 0 < peaks["window"] <= MIB and peaks["backlog"] <= MIB // 2
    assert status["window_bytes"] <= MIB and 0 < status["window_entries"] <= 10
    assert status["window_evicted"] >= 70
    assert status["lost_backlog_full"] > 0  # the writer was behind: counted, not silently dropped
    metrics = gw.metrics()
    assert metric(metrics, "policyctl_gateway_outcome_window_evictions_total") == status["window_evicted"]
    assert metric(metrics, "policyctl_gateway_outcome_window_bytes") <= MIB
    assert metric(metrics, "policyctl_gateway_decision_log_backlog_bytes") <= MIB // 2
    assert metric(metrics, 'policyctl_gateway_decision_log_lost_total{reason="backlog_full"}') > 0

    # The oldest decision was evicted: its outcome has nothing to join. The newest is still held.
    outcome = {"status": "ok"}
    assert gw.http.post("/v1/outcome", json={"decision_id": ids[0], "outcome": outcome}).status_code == 404
    assert gw.http.post("/v1/outcome", json={"decision_id": ids[-1], "outcome": outcome}).status_code == 200
    assert gw.stop() == 0
    # Every decision is either on disk or counted as lost; none vanished.
    lines = log_lines(log_dir)
    decided = [line for line in lines if "outcome" not in line]
    assert len(decided) + status["lost_backlog_full"] == len(ids)
    assert {line["id"] for line in decided} <= set(ids)


# --------------------------------------------------------------------------- overload admission


def test_a_flood_is_refused_at_once_and_abandoned_requests_are_never_logged(
        policy_repo: Path, tmp_path: Path, serve: Callable[..., Served]) -> None:
    write(policy_repo, "policies/rules/slow.rego", slow_rule(250_000))  # ~70 ms per evaluation
    commit_all(policy_repo, "a slow rule for action type slow")
    log_dir = tmp_path / "log"
    # a long queue bound, so requests do queue and their clients give up while they wait
    # (the default bound refuses them first: bench/hostile.py measures that)
    gw = serve(policy_repo, "--poll", "600", "--workers", "2", "--log-dir", str(log_dir), "--max-queue-wait", "5")
    warm = {gw.decide(SLOW)["decision_id"]}  # a first evaluation, so the gateway knows what one costs

    results: list[tuple[str, int, float, dict[str, Any], dict[str, str]]] = []
    lock = threading.Lock()
    until = time.monotonic() + 3.0

    def client(patient: bool) -> None:
        # Half say how long they wait (and are refused at once when that is too short); half only give up.
        headers = {"X-Request-Timeout": "0.5"} if patient else {}
        with httpx.Client(base_url=gw.url, timeout=0.4 if not patient else 5.0, headers=headers) as http:
            while time.monotonic() < until:
                started = time.monotonic()
                try:
                    response = http.post("/v1/decide", json={"input": SLOW})
                except httpx.TimeoutException:
                    with lock:
                        results.append(("gone", 0, time.monotonic() - started, {}, {}))
                    continue
                with lock:
                    results.append(("answered", response.status_code, time.monotonic() - started, response.json(),
                                    dict(response.headers)))
                if response.status_code == 503:
                    time.sleep(0.1)  # a short back-off, not Retry-After: the flood must go on

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    answered = [r for r in results if r[0] == "answered" and r[1] == 200]
    refused = [r for r in results if r[0] == "answered" and r[1] == 503]
    gone = [r for r in results if r[0] == "gone"]
    # on a loaded machine every request may be refused; some must be, and some clients must give up
    assert refused and (answered or gone), (len(answered), len(refused), len(gone))
    assert all(r[3]["code"] == "overloaded" and int(r[4]["retry-after"]) >= 1 for r in refused)
    # Refused at once, not after queueing up to the client's deadline.
    assert min(r[2] for r in refused) < 0.25

    status = gw.status()["workers"]
    assert status["overload_refused"] >= len(refused) and status["abandoned"]["queued"] > 0
    metrics = gw.metrics()
    # read after the status: a client that left in between may add one more
    assert metric(metrics, 'policyctl_gateway_abandoned_total{stage="queued"}') >= status["abandoned"]["queued"]
    assert metric(metrics, "policyctl_gateway_overload_refused_total") >= status["overload_refused"]
    assert metric(metrics, "policyctl_gateway_queue_wait_seconds_count") > 0
    assert metric(metrics, "policyctl_gateway_eval_mean_seconds") > 0
    assert gw.stop() == 0

    # The decision log holds the requests that were answered, and not the ones whose client left
    # (a request answered in the instant its client gave up may be in both: at most a few).
    logged = {line["id"] for line in log_lines(log_dir)} - warm
    answered_ids = {r[3]["decision_id"] for r in answered}
    assert answered_ids <= logged
    assert len(logged) - len(answered_ids) <= max(2, len(gone) // 10), (len(logged), len(answered_ids), len(gone))


# --------------------------------------------------------------------------- slow commits


@pytest.mark.parametrize("on_slow", ["degrade", "refuse"])
def test_a_commit_much_slower_than_the_serving_one_is_not_activated(
        policy_repo: Path, serve: Callable[..., Served], on_slow: str) -> None:
    seed = commit_all(policy_repo, "the fast revision")
    gw = serve(policy_repo, "--poll", "600", "--workers", "1", "--on-slow", on_slow)
    for _ in range(4):  # recent traffic the next commit's verification is timed on
        assert gw.decide(SLOW)["action"] == "allow"

    write(policy_repo, "policies/rules/slow.rego", slow_rule(700_000))  # ~200 ms per slow evaluation
    slow = commit_all(policy_repo, "a correct rule that takes 200 ms per evaluation")
    gw.wait_until(lambda: gw.status().get("degraded"), "the slow commit kept out")
    status = gw.status()
    assert status["active"]["revision"] == seed and status["head"]["revision"] == slow
    assert gw.decide(SLOW)["revision"] == seed
    metrics = gw.metrics()
    assert metric(metrics, "policyctl_gateway_degraded") == 1
    assert metric(metrics, "policyctl_gateway_slow_revisions_total") == 1
    assert metric(metrics, f'policyctl_gateway_slow_revision_info{{revision="{slow}",on_slow="{on_slow}"}}') == 1
    if on_slow == "degrade":
        assert "too slow to serve" in status["degraded_reason"] and SLOW_REASON.search(status["degraded_reason"])
        assert status["slow_revision"]["revision"] == slow and status["reloads"]["failed"] == 0
        assert status["last_error"] is None
    else:  # like a broken commit: the last error, a failed reload, never rebuilt
        assert status["last_error"]["revision"] == slow and status["last_error"]["code"] == "revision_slow"
        assert SLOW_REASON.search(status["last_error"]["message"])
        assert status["reloads"]["failed"] == 1 and status["slow_revision"] is None

    # Making it fast again goes live and clears the degraded state.
    write(policy_repo, "policies/rules/slow.rego", slow_rule(2))
    fast = commit_all(policy_repo, "the rule, fast")
    gw.serving(fast)
    assert gw.status()["degraded"] is False
    assert gw.stop() == 0


# --------------------------------------------------------------------------- batches


def costly_rule() -> str:
    """A rule whose cost the input chooses: n × n iterations (about 0.5 µs each on Regorus)."""
    return """# METADATA
# title: Costly
# description: n x n iterations, reached only by action type costly
# custom:
#   mode: enforce
package agentgov.rules.costly

import rego.v1

decisions contains {"id": "costly", "action": "deny", "params": {}, "message": "costly"} if {
\tinput.kind == "action"
\tinput.action.type == "costly"
\tcount([1 | some i in numbers.range(1, input.action.n); some j in numbers.range(1, input.action.n); i * j < 0]) == 0
}
"""


def costly(n: int, who: str) -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": who}], "action": {"type": "costly", "n": n}}


def test_requests_that_queue_together_share_a_frame_and_an_overrun_fails_only_its_culprit(
        policy_repo: Path, serve: Callable[..., Served]) -> None:
    write(policy_repo, "policies/rules/costly.rego", costly_rule())
    commit_all(policy_repo, "a rule whose cost the input chooses")
    gw = serve(policy_repo, "--poll", "600", "--workers", "1", "--eval-timeout", "2", "--max-queue-wait", "20",
               "--queue-deadline", "60", "--engine", "regorus")
    for i in range(5):  # the typical evaluation is a cheap one: batches may be full
        assert gw.decide(costly(10, f"warm-{i}"))["source"] == "policy"

    answers: dict[str, dict[str, Any]] = {}

    def ask(name: str, n: int) -> None:
        with httpx.Client(base_url=gw.url, timeout=90, trust_env=False) as http:
            answers[name] = http.post("/v1/decide", json={"input": costly(n, name)}).json()

    # the only worker spends ~0.5 s on one request while the others queue behind it, a spinning
    # one (~8 s, past the 2 s deadline) among them
    busy = threading.Thread(target=ask, args=("busy", 1000))
    busy.start()
    gw.wait_until(lambda: any(p["busy"] for p in gw.status()["workers"]["processes"] if p["role"] == "serve"),
                  "the worker busy")
    names = ["cheap-0", "cheap-1", "cheap-2", "spin", "cheap-3", "cheap-4", "cheap-5"]
    threads = [threading.Thread(target=ask, args=(name, 4000 if name == "spin" else 10)) for name in names]
    for t in threads:
        t.start()
        time.sleep(0.01)  # in this order in the queue
    for t in [busy, *threads]:
        t.join(120)

    status = gw.status()["workers"]
    assert status["batches"]["frames"] >= 1 and status["batches"]["decisions"] >= 2, status["batches"]
    # the batch that held the spinning request overran: its requests went again one by one, so the
    # spinning one alone failed closed and every other one got its decision
    assert answers["busy"]["source"] == "policy"
    for name in names:
        if name != "spin":
            assert answers[name]["source"] == "policy" and answers[name]["action"] == "deny", answers[name]
    assert answers["spin"]["source"] == "error" and answers["spin"]["error"]["code"] == "eval_timeout", answers["spin"]
    assert status["timeouts"] >= 2  # the batch, then the spinning request alone
    assert metric(gw.metrics(), "policyctl_gateway_batched_decisions_total") >= 2
