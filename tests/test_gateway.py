"""The gateway as an operator runs it: a real `policyctl gateway serve` on a loopback port, real git, real watchdog."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import commit_all, git, write
from prometheus_client.parser import text_string_to_metric_families

from policyctl.cli.main import main
from policyctl.model import Event

WAIT_S = 30.0  # bound on every wait; a healthy run needs well under a second for each

PARQUET_SMB = {"kind": "action", "agents": [{"id": "etl-3", "role": "etl", "priority": 5}],
               "action": {"type": "file_share", "protocol": "smb", "file_type": "parquet", "size_bytes": 1200},
               "resource": {"kind": "share", "id": "fs-2"}}
CSV_SMB = {"kind": "action", "agents": [{"id": "etl-1"}],
           "action": {"type": "file_share", "protocol": "smb", "file_type": "csv"}}
SPIN = {"kind": "action", "action": {"type": "spin"}}

BROKEN_RULE = """# METADATA
# title: Broken
# custom:
#   mode: enforce
package agentgov.rules.broken

import rego.v1

decisions contains {"id": "x", "action": "deny"} if {
\tinput.kind == "action"
\tx := [1, 2
}
"""

SPIN_RULE = """# METADATA
# title: Spin
# description: a comprehension over fifty million numbers, reached only by action type spin
# custom:
#   mode: enforce
package agentgov.rules.spin

import rego.v1

decisions contains {"id": "spin", "action": "deny", "params": {}, "message": "spun"} if {
\tinput.kind == "action"
\tinput.action.type == "spin"
\tcount([x | some x in numbers.range(0, 50000000); x > 0]) > 1
}
"""

SHADOW_RULE = """# METADATA
# title: Deny parquet (shadow)
# description: a candidate rule watched in shadow mode before it is enforced
# custom:
#   mode: shadow
package agentgov.rules.deny_parquet

import rego.v1

decisions contains {"id": "deny_parquet", "action": "deny", "params": {}, "message": "no parquet"} if {
\tinput.kind == "action"
\tinput.action.file_type == "parquet"
}
"""


class Served:
    """A `policyctl gateway serve` subprocess and an HTTP client for it."""

    def __init__(self, repo: Path, workdir: Path, *args: str, token: str | None = None) -> None:
        self.stderr_path = workdir / f"gateway-{time.monotonic_ns()}.stderr"
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "policyctl.cli.main", "gateway", "serve", "--repo", str(repo), "--port", "0",
             *args], stdout=subprocess.DEVNULL, stderr=self._err, cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = self._wait_for_url()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=WAIT_S)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited {self.proc.returncode}: {self.stderr}")
            for line in self.stderr.splitlines():
                if "listening on http://" in line:
                    return line.split("listening on ", 1)[1].split()[0]
            time.sleep(0.02)
        raise AssertionError(f"the gateway did not start: {self.stderr}")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_until(self, predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; status: {self.status()}\n{self.stderr[-3000:]}")

    def ready(self) -> None:
        self.wait_until(lambda: self.http.get("/readyz").status_code == 200, "readyz")

    def status(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.http.get("/v1/status").json()
        except httpx.HTTPError as exc:
            return {"error": str(exc)}
        return result

    def serving(self, commit: str) -> None:
        self.wait_until(lambda: (self.status().get("active") or {}).get("revision") == commit, f"serving {commit[:12]}")

    def decide(self, input: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/decide", json={"input": input})
        assert response.status_code == 200, response.text
        decision: dict[str, Any] = response.json()
        return decision

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(WAIT_S)
        finally:
            self.http.close()
            self._err.close()


def metric(text: str, name: str) -> float:
    """The value of one sample (`name` includes all its labels, in any order: the exposition sorts them)."""
    wanted = next(text_string_to_metric_families(name + " 0\n")).samples[0]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == wanted.name and sample.labels == wanted.labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name} in:\n{text}")


def log_lines(log_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(log_dir.glob("decisions-*.jsonl")):
        for line in path.read_bytes().splitlines():
            out.append(json.loads(line))
    return out


def route_to(repo: Path, protocol: str) -> None:
    """Route parquet off SMB to `protocol`, with the fixtures that say so."""
    write(repo, "policies/file_share/data.json", json.dumps({"routes": {"parquet": {"smb": protocol}}}))
    path = repo / "shadow_fixtures/file_share/parquet_smb.jsonl"
    path.write_text(re.sub(r'("params": \{"action": \{"protocol": ")\w+"', rf'\g<1>{protocol}"', path.read_text()))


# --------------------------------------------------------------------------- hot swap


def test_a_merge_goes_live_and_broken_commits_never_do(policy_repo: Path, serve: Callable[..., Served]) -> None:
    seed = git(policy_repo, "rev-parse", "HEAD")
    # --poll 600: every swap below must come from the watchdog events, not the safety-net poll.
    gw = serve(policy_repo, "--poll", "600", "--workers", "2")
    assert gw.status()["active"]["revision"] == seed
    assert gw.decide(PARQUET_SMB)["params"] == {"action": {"protocol": "sftp"}}

    git(policy_repo, "checkout", "-q", "-b", "route-nfs")
    route_to(policy_repo, "nfs")
    commit_all(policy_repo, "route parquet to nfs")
    git(policy_repo, "checkout", "-q", "main")
    git(policy_repo, "merge", "-q", "--no-ff", "-m", "Merge route-nfs", "route-nfs")
    merged = git(policy_repo, "rev-parse", "HEAD")
    gw.serving(merged)
    decision = gw.decide(PARQUET_SMB)
    assert decision["params"] == {"action": {"protocol": "nfs"}} and decision["revision"] == merged

    # A policy that does not compile: never served, and the status says which file and line.
    write(policy_repo, "policies/rules/broken.rego", BROKEN_RULE)
    broken = commit_all(policy_repo, "a rule that does not compile")
    gw.wait_until(lambda: (gw.status().get("last_error") or {}).get("revision") == broken, "the failure reported")
    status = gw.status()
    assert status["active"]["revision"] == merged and status["head"]["revision"] == broken
    assert status["degraded"] is True and status["behind"] == 1
    assert status["last_error"]["code"] == "rego_compile_error"
    assert any(p["file"] == "policies/rules/broken.rego" and p["line"] in (11, 12) for p in status["last_error"]["problems"])
    assert gw.decide(PARQUET_SMB)["revision"] == merged
    metrics = gw.metrics()
    assert metric(metrics, 'policyctl_gateway_reloads_total{result="failed"}') == 1
    assert metric(metrics, "policyctl_gateway_degraded") == 1
    assert metric(metrics, f'policyctl_gateway_last_reload_failure_timestamp_seconds{{revision="{broken}",'
                           'code="rego_compile_error"}') > 0

    # A commit that compiles but breaks a fixture: not served either.
    (policy_repo / "policies/rules/broken.rego").unlink()
    write(policy_repo, "policies/file_share/data.json", json.dumps({"routes": {"parquet": {"smb": "s3"}}}))
    bad_fixture = commit_all(policy_repo, "route to s3 without updating the fixtures")
    gw.wait_until(lambda: (gw.status().get("last_error") or {}).get("revision") == bad_fixture, "fixture failure")
    error = gw.status()["last_error"]
    assert error["code"] == "revision_invalid" and "parquet-smb-001" in error["message"]
    assert error["problems"][0]["file"] == "shadow_fixtures/file_share/parquet_smb.jsonl"
    assert gw.decide(PARQUET_SMB)["params"] == {"action": {"protocol": "nfs"}}

    # Fixing it serves the fix, and the gateway is no longer degraded.
    route_to(policy_repo, "s3")
    fixed = commit_all(policy_repo, "route to s3 with fixtures")
    gw.serving(fixed)
    status = gw.status()
    assert status["degraded"] is False and status["behind"] == 0 and status["reloads"] == {"ok": 3, "failed": 2}
    assert status["last_swap"]["revision"] == fixed and status["last_swap"]["commit_to_serving_s"] is not None
    assert gw.decide(PARQUET_SMB)["params"] == {"action": {"protocol": "s3"}}
    assert metric(gw.metrics(), "policyctl_gateway_commit_to_serving_seconds_count") == 2
    assert gw.stop() == 0



def test_what_only_a_request_would_find_is_refused_at_build(policy_repo: Path, serve: Callable[..., Served]) -> None:
    """An undefined function and a recursion compile in the engines; the gateway refuses both."""
    gw = serve(policy_repo, "--poll", "600")
    good = gw.status()["active"]["revision"]
    head = BROKEN_RULE.split("decisions contains")[0]
    cases = {
        "undefined_function": head + 'decisions contains {"id": "x", "action": "deny"} if {\n'
                                     '\tinput.kind == "action"\n\tstrings.no_such_thing(input.action.type)\n}\n',
        "recursion": head + 'a if b\n\nb if a\n\ndecisions contains {"id": "x", "action": "deny"} if {\n\ta\n}\n',
    }
    for code, text in cases.items():
        write(policy_repo, "policies/rules/broken.rego", text)
        bad = commit_all(policy_repo, code)
        gw.wait_until(lambda bad=bad: (gw.status().get("last_error") or {}).get("revision") == bad, code)
        error = gw.status()["last_error"]
        assert any(p["code"] == code and p["file"] == "policies/rules/broken.rego" and p["line"] for p in error["problems"]), error
        assert gw.status()["active"]["revision"] == good
        assert gw.decide(PARQUET_SMB)["revision"] == good
    assert gw.stop() == 0

def test_start_on_a_broken_head_serves_the_newest_good_commit(policy_repo: Path, serve: Callable[..., Served],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    route_to(policy_repo, "nfs")
    good = commit_all(policy_repo, "route parquet to nfs")
    write(policy_repo, "policies/rules/broken.rego", BROKEN_RULE)
    commit_all(policy_repo, "broken one")
    write(policy_repo, "policies/rules/other.rego", BROKEN_RULE.replace("rules.broken", "rules.other"))
    head = commit_all(policy_repo, "broken two")
    gw = serve(policy_repo)
    status = gw.status()
    assert status["ready"] is True and status["degraded"] is True
    assert status["active"]["revision"] == good and status["head"]["revision"] == head and status["behind"] == 2
    assert status["last_error"]["revision"] == head and head[:12] in status["degraded_reason"]
    assert gw.decide(PARQUET_SMB)["revision"] == good

    code = main(["gateway", "status", "--url", gw.url])
    out = capsys.readouterr().out
    assert code == 1  # degraded
    assert "DEGRADED" in out and good[:12] in out and head[:12] in out and re.search(r"policies/rules/other.rego:1[12]\b", out)
    assert main(["gateway", "status", "--url", gw.url, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["active"]["revision"] == good


def test_nothing_is_served_when_no_commit_builds(make_repo: Callable[..., Path], serve: Callable[..., Served]) -> None:
    repo = make_repo(seed=False)
    write(repo, "policies/rules/broken.rego", BROKEN_RULE)
    only = commit_all(repo, "nothing but a broken rule")
    gw = serve(repo, ready=False)
    gw.wait_until(lambda: gw.status().get("degraded"), "degraded")
    ready = gw.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    refused = gw.http.post("/v1/decide", json={"input": CSV_SMB})
    assert refused.status_code == 503 and refused.json()["code"] == "not_ready"
    assert gw.status()["active"] is None and gw.status()["last_error"]["revision"] == only
    assert gw.http.get("/healthz").status_code == 200


def test_a_replica_follows_a_remote_repository(policy_repo: Path, tmp_path: Path, serve: Callable[..., Served]) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(policy_repo), str(bare))
    gw = serve(tmp_path / "replica", "--remote", str(bare), "--poll", "0.3", "--workers", "1")
    assert gw.status()["active"]["revision"] == git(policy_repo, "rev-parse", "HEAD")
    route_to(policy_repo, "nfs")
    new = commit_all(policy_repo, "route parquet to nfs")
    git(policy_repo, "push", "-q", str(bare), "main")
    gw.serving(new)
    assert gw.decide(PARQUET_SMB)["params"] == {"action": {"protocol": "nfs"}}
    assert gw.status()["fetch"]["ok"] >= 2


# --------------------------------------------------------------------------- isolation


def test_a_pathological_policy_times_out_in_its_worker_while_others_are_answered(
        policy_repo: Path, serve: Callable[..., Served]) -> None:
    write(policy_repo, "policies/rules/spin.rego", SPIN_RULE)
    commit_all(policy_repo, "a rule that spins on one input")
    gw = serve(policy_repo, "--workers", "2", "--eval-timeout", "0.5")
    results: dict[str, Any] = {}

    def stuck() -> None:
        results["spin"] = gw.http.post("/v1/decide", json={"input": SPIN})

    thread = threading.Thread(target=stuck)
    thread.start()
    others = [gw.decide(CSV_SMB if i % 2 else PARQUET_SMB) for i in range(20)]
    thread.join(WAIT_S)
    spin = results["spin"]
    assert spin.status_code == 200
    decision = spin.json()
    assert decision["action"] == "deny" and decision["source"] == "error"
    assert decision["error"]["code"] == "eval_timeout" and "0.5 s" in decision["error"]["message"]
    assert all(d["source"] != "error" for d in others)
    assert {d["action"] for d in others} == {"allow", "route"}
    gw.wait_until(lambda: gw.status()["workers"]["ready"] == 2, "the replacement worker")
    status = gw.status()
    assert status["workers"]["timeouts"] == 1 and status["workers"]["restarts"] == {"timeout": 1}
    assert gw.decide(CSV_SMB)["action"] == "allow"
    assert metric(gw.metrics(), "policyctl_gateway_eval_timeouts_total") == 1


def test_requests_in_flight_finish_on_the_revision_they_started_with(policy_repo: Path,
                                                                    serve: Callable[..., Served]) -> None:
    # Seconds of work on one input: long enough to still be running when the next commit is live.
    write(policy_repo, "policies/rules/slow.rego", SPIN_RULE.replace("rules.spin", "rules.slow")
          .replace('"spin"', '"slow"').replace("50000000", "600000"))
    old = commit_all(policy_repo, "a rule that takes seconds on one input")
    gw = serve(policy_repo, "--workers", "2", "--eval-timeout", "120")
    results: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: results.update(slow=gw.decide({"kind": "action", "action": {"type": "slow"}})))
    slow.start()
    gw.wait_until(lambda: any(p["busy"] for p in gw.status()["workers"]["processes"] if p["role"] == "serve"),
                  "the slow request to start")
    route_to(policy_repo, "nfs")
    new = commit_all(policy_repo, "route parquet to nfs")
    gw.serving(new)  # the busy worker does not hold the swap back
    during = gw.decide(PARQUET_SMB)
    assert slow.is_alive(), "the slow request finished before the swap; the test proves nothing"
    slow.join(WAIT_S * 4)
    assert during["revision"] == new and during["params"] == {"action": {"protocol": "nfs"}}
    assert results["slow"]["revision"] == old and results["slow"]["action"] == "deny"
    assert results["slow"]["source"] == "policy" and results["slow"]["reasons"][0]["rule"] == "slow"
    gw.wait_until(lambda: all(p["revisions"] == [new] for p in gw.status()["workers"]["processes"]
                              if p["role"] == "serve"), "the old revision freed")
    assert gw.decide(CSV_SMB)["revision"] == new


def test_a_worker_killed_from_outside_is_replaced(policy_repo: Path, serve: Callable[..., Served]) -> None:
    gw = serve(policy_repo, "--workers", "2")
    victim = next(p["pid"] for p in gw.status()["workers"]["processes"] if p["role"] == "serve")
    os.kill(victim, signal.SIGKILL)
    answers = [gw.http.post("/v1/decide", json={"input": CSV_SMB}) for _ in range(20)]
    # Fail closed: a request the dead worker held is a deny with eval_crashed; none is lost.
    assert all(a.status_code == 200 for a in answers)
    assert all(a.json()["action"] == "allow" or a.json()["error"]["code"] == "eval_crashed" for a in answers)
    gw.wait_until(lambda: gw.status()["workers"]["ready"] == 2, "the replacement worker")
    status = gw.status()
    assert status["workers"]["restarts"] == {"crashed": 1}
    assert victim not in [p["pid"] for p in status["workers"]["processes"]]
    assert gw.decide(CSV_SMB)["action"] == "allow"


def test_a_verification_that_never_ends_is_stopped_off_the_request_path(policy_repo: Path,
                                                                         serve: Callable[..., Served]) -> None:
    seed = git(policy_repo, "rev-parse", "HEAD")
    gw = serve(policy_repo, "--workers", "1", "--build-timeout", "1")
    write(policy_repo, "policies/rules/spin.rego", SPIN_RULE)
    write(policy_repo, "shadow_fixtures/spin.jsonl",
          json.dumps({"id": "spin-001", "input": SPIN, "expect": {"action": "deny"}}) + "\n")
    spinning = commit_all(policy_repo, "a fixture that makes the policy spin")
    answered = 0
    while (gw.status().get("last_error") or {}).get("revision") != spinning:
        assert gw.decide(CSV_SMB)["revision"] == seed  # the serving worker never waits for the build
        answered += 1
    assert answered > 0
    error = gw.status()["last_error"]
    assert error["code"] == "build_timeout" and "within 1 s" in error["message"]
    assert gw.status()["active"]["revision"] == seed
    gw.wait_until(lambda: all(p["ready"] for p in gw.status()["workers"]["processes"]), "the new build worker")


# --------------------------------------------------------------------------- API


def test_bad_input_is_refused_with_a_code_a_message_and_the_field(policy_repo: Path,
                                                                 serve: Callable[..., Served]) -> None:
    gw = serve(policy_repo, "--workers", "1")
    cases: list[tuple[bytes, int, str, str]] = [
        (b'{"input": {"kind": "action"}}', 400, "validation_error", "input.action"),
        (b'{"input": {"kind": "action", "action": {"type": ""}}}', 400, "validation_error", "input.action.type"),
        (b'{"input": {"kind": "conflict", "agents": [{"id": "a"}]}}', 400, "validation_error", "input.agents"),
        (b'{"kind": "action", "action": {"type": "x"}}', 400, "validation_error", "input"),
        (b'{"input": ', 400, "bad_json", ""),
        (b"[1]", 400, "validation_error", ""),
    ]
    for body, status, code, path in cases:
        response = gw.http.post("/v1/decide", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert error["code"] == code and error["message"], (body, error)
        if path:
            assert error["path"] == path and error["message"].startswith(path)
    deep = {"kind": "action", "action": {"type": "x"}, "context": {}}
    node = deep["context"]
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    response = gw.http.post("/v1/decide", json={"input": deep})
    assert response.status_code == 413 and response.json()["code"] == "input_too_large"
    assert "nested deeper than" in response.json()["message"]
    very_deep = b'{"input": {"kind": "action", "action": {"type": "x"}, "context": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}}"
    response = gw.http.post("/v1/decide", content=very_deep)
    assert response.status_code == 413 and response.json()["code"] == "input_too_large"
    huge = b'{"input": {"kind": "action", "action": {"type": "x"}, "context": {"blob": "' + b"x" * 600_000 + b'"}}}'
    response = gw.http.post("/v1/decide", content=huge)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:
        yield huge[:300_000]
        yield huge[300_000:]

    response = gw.http.post("/v1/decide", content=chunks())  # chunked: no Content-Length to refuse early
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    response = gw.http.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    # The gateway still decides after all that, on a worker that never saw the bad input.
    assert gw.decide(CSV_SMB)["action"] == "allow"
    metrics = gw.metrics()
    assert metric(metrics, 'policyctl_gateway_request_errors_total{status="413",code="input_too_large"}') == 2
    assert gw.status()["workers"]["restarts"] == {}


def test_metrics_and_openapi(policy_repo: Path, serve: Callable[..., Served]) -> None:
    gw = serve(policy_repo, "--workers", "1")
    gw.decide(PARQUET_SMB)
    gw.decide(CSV_SMB)
    text = gw.metrics()
    assert gw.http.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("policyctl_gateway_decisions_total", "policyctl_gateway_decision_duration_seconds_bucket",
                 "policyctl_gateway_revision_info", "policyctl_gateway_head_info", "policyctl_gateway_reloads_total",
                 "policyctl_gateway_commit_to_serving_seconds_bucket", "policyctl_gateway_shadow_divergences_total",
                 "policyctl_gateway_decision_log_backlog", "policyctl_gateway_decision_log_lost_total",
                 "policyctl_gateway_revisions_behind", "policyctl_gateway_degraded",
                 "policyctl_gateway_eval_timeouts_total", "policyctl_gateway_worker_restarts_total"):
        assert f"# TYPE {name.removesuffix('_bucket')} " in text, name
    assert metric(text, 'policyctl_gateway_decisions_total{action="route",source="policy"}') == 1
    assert metric(text, 'policyctl_gateway_decisions_total{action="allow",source="default"}') == 1
    assert metric(text, "policyctl_gateway_decision_duration_seconds_count") == 2
    openapi = gw.http.get("/openapi.json").json()
    assert {"/v1/decide", "/v1/outcome", "/v1/status", "/healthz", "/readyz", "/metrics"} <= set(openapi["paths"])
    body = openapi["paths"]["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["input"]


def test_a_token_is_required_and_compared_for_every_v1_endpoint(policy_repo: Path, tmp_path: Path,
                                                                serve: Callable[..., Served]) -> None:
    token = "s3cret-token-0123456789abcdef"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    gw = serve(policy_repo, "--token-file", str(token_file), "--workers", "1", token=token)
    anonymous = httpx.Client(base_url=gw.url)
    wrong = httpx.Client(base_url=gw.url, headers={"Authorization": "Bearer s3cret-token-0123456789abcdeX"})
    for client in (anonymous, wrong):
        for method, path in (("POST", "/v1/decide"), ("POST", "/v1/outcome"), ("GET", "/v1/status"),
                             ("GET", "/metrics")):
            response = client.request(method, path, json={"input": CSV_SMB})
            assert response.status_code == 401, (method, path)
            assert response.json()["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/healthz").status_code == 200 and anonymous.get("/readyz").status_code == 200
    assert gw.decide(CSV_SMB)["action"] == "allow"
    assert gw.http.get("/v1/status").json()["ready"] is True


def test_a_non_loopback_address_needs_a_token_file(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gateway", "serve", "--repo", str(policy_repo), "--host", "0.0.0.0", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--host 0.0.0.0 is not a loopback address" in err and "--token-file" in err


# --------------------------------------------------------------------------- decision log and shadow mode


def test_every_decision_is_logged_and_sigterm_loses_none(policy_repo: Path, tmp_path: Path,
                                                        serve: Callable[..., Served]) -> None:
    log_dir = tmp_path / "log"
    gw = serve(policy_repo, "--log-dir", str(log_dir), "--log-flush", "5")  # only the drain can write them
    inputs = [PARQUET_SMB, CSV_SMB, {"kind": "conflict", "resource": {"kind": "port", "port": 22},
                                     "agents": [{"id": "a", "priority": 1}, {"id": "b", "priority": 2}]}]
    decisions = [gw.decide(inputs[i % 3]) for i in range(150)]
    crash = {"status": "crash", "message": "smb2: STATUS_INVALID_PARAMETER", "code": "E_SMB", "duration_ms": 812}
    joined = gw.http.post("/v1/outcome", json={"decision_id": decisions[1]["decision_id"], "outcome": crash})
    assert joined.status_code == 200 and joined.json() == {"decision_id": decisions[1]["decision_id"], "joined": True}
    unknown = gw.http.post("/v1/outcome", json={"decision_id": "nope", "outcome": {"status": "ok"}})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_decision"
    invalid = gw.http.post("/v1/outcome", json={"decision_id": decisions[0]["decision_id"],
                                                "outcome": {"status": "exploded"}})
    assert invalid.status_code == 400 and invalid.json()["path"] == "outcome.status"
    assert gw.stop(signal.SIGTERM) == 0

    records = log_lines(log_dir)
    for record in records:
        Event.from_dict(record)  # every line is an Event the bot can read
    first = [r for r in records if "outcome" not in r]
    assert [r["id"] for r in first] == [d["decision_id"] for d in decisions]
    assert all(r["decision"] == d and r["revision"] == d["revision"] for r, d in zip(first, decisions, strict=True))
    assert first[0]["input"] == PARQUET_SMB
    outcome = [r for r in records if "outcome" in r]
    assert len(outcome) == 1 and outcome[0]["id"] == decisions[1]["decision_id"]
    assert outcome[0]["outcome"] == crash and outcome[0]["input"] == CSV_SMB and outcome[0]["outcome_ts"]


def test_after_sigkill_every_complete_log_line_parses(policy_repo: Path, tmp_path: Path,
                                                      serve: Callable[..., Served]) -> None:
    log_dir = tmp_path / "log"
    gw = serve(policy_repo, "--log-dir", str(log_dir), "--workers", "1", "--log-flush", "0.05")
    for _ in range(100):
        gw.decide(CSV_SMB)
    gw.wait_until(lambda: gw.status()["decision_log"]["written"] == 100, "the flush")
    for _ in range(30):
        gw.decide(PARQUET_SMB)
    gw.stop(signal.SIGKILL)
    records = log_lines(log_dir)  # raises on any line that does not parse
    assert 100 <= len(records) <= 130


def test_the_log_rotates_by_size_and_counts_what_it_cannot_keep(tmp_path: Path) -> None:
    from policyctl.gateway.decision_log import DecisionLog

    log = DecisionLog(tmp_path / "log", max_bytes=2_000, flush_interval=0.01, max_backlog=50)
    # Not started: nothing drains the queue, as when the disk stalls. The 51st record is lost, and counted.
    log.directory.mkdir()  # type: ignore[union-attr]
    for i in range(60):
        log.decision({"id": f"d{i}", "ts": "2026-01-01T00:00:00.000Z", "input": CSV_SMB, "decision": {"action": "allow"}})
    assert log.backlog == 50 and log.lost == 10 and log.lost_backlog == 10
    log.close()
    assert log.written == 50 and log.backlog == 0
    files = sorted((tmp_path / "log").glob("decisions-*.jsonl"))
    assert len(files) > 1 and log.rotations == len(files) - 1
    assert all(f.stat().st_size <= 2_000 for f in files)
    ids = [json.loads(line)["id"] for f in files for line in f.read_text().splitlines()]
    assert ids == [f"d{i}" for i in range(50)]
    assert log.describe()["lost"] == 10


def test_shadow_rules_are_counted_and_logged_never_decided(policy_repo: Path, tmp_path: Path,
                                                           serve: Callable[..., Served]) -> None:
    write(policy_repo, "policies/rules/deny_parquet.rego", SHADOW_RULE)
    commit_all(policy_repo, "watch a stricter parquet rule in shadow mode")
    log_dir = tmp_path / "log"
    gw = serve(policy_repo, "--log-dir", str(log_dir), "--workers", "1")
    decision = gw.decide(PARQUET_SMB)
    assert decision["action"] == "route" and decision["source"] == "policy"
    assert [(s["rule"], s["action"]) for s in decision["shadow"]] == [("deny_parquet", "deny")]
    assert gw.decide(CSV_SMB)["shadow"] == []
    metrics = gw.metrics()
    assert metric(metrics, 'policyctl_gateway_shadow_divergences_total{rule="deny_parquet",shadow_action="deny",'
                           'decided_action="route"}') == 1
    status = gw.status()
    assert status["decisions"]["shadow_divergences"] == 1
    assert {"file": "policies/rules/deny_parquet.rego", "mode": "shadow"}.items() <= next(
        p for p in status["active"]["policies"] if p["package"] == "agentgov.rules.deny_parquet").items()
    assert gw.stop() == 0
    records = log_lines(log_dir)
    assert records[0]["shadow_divergence"] == [{"rule": "deny_parquet", "module": "deny_parquet", "action": "deny",
                                                "decided": "route"}]
    assert "shadow_divergence" not in records[1]


PORT22_OVERRIDE = '''"""Serialize deploy agents on port 22 until the lock service is fixed (INC-4412)."""
OVERRIDE = {"match": {"kind": "conflict", "resource.port": 22},
            "expires": "2099-11-28T00:00:00Z", "priority": 100}

def decide(input):
    ranked = sorted(input["agents"], key=lambda a: (a.get("priority", 0), a["id"]))
    return {"action": "arbitrate", "params": {"winner": ranked[0]["id"], "order": [a["id"] for a in ranked]}}
'''

FAILING_OVERRIDE = '''"""Fails at run time: skipped, counted, never fatal."""
OVERRIDE = {"match": {"kind": "action", "action.type": "boom"}, "expires": "2099-11-28T00:00:00Z"}

def decide(input):
    return 1 // 0
'''


def test_overrides_decide_first_in_the_same_revision_and_failures_are_counted(
        policy_repo: Path, serve: Callable[..., Served]) -> None:
    write(policy_repo, "overrides/port22.py", PORT22_OVERRIDE)
    write(policy_repo, "overrides/boom.py", FAILING_OVERRIDE)
    # The override inverts the port-22 order, so the fixtures move with it in the same commit.
    path = policy_repo / "shadow_fixtures/net/restricted_port_deadlock.jsonl"
    fixtures = [json.loads(line) for line in path.read_text().splitlines()]
    for fixture in fixtures:
        if fixture["input"]["resource"]["port"] == 22:
            order = [a["id"] for a in sorted(fixture["input"]["agents"], key=lambda a: (a.get("priority", 0), a["id"]))]
            fixture["expect"] = {"action": "arbitrate", "params": {"winner": order[0], "order": order}}
    path.write_text("".join(json.dumps(f) + "\n" for f in fixtures))
    commit = commit_all(policy_repo, "an emergency override on port 22")
    gw = serve(policy_repo, "--workers", "1")
    conflict = {"kind": "conflict", "resource": {"kind": "port", "port": 22},
                "agents": [{"id": "a", "priority": 1}, {"id": "b", "priority": 3}]}
    decision = gw.decide(conflict)
    assert decision["source"].startswith("override:overrides/port22.py@") and decision["revision"] == commit
    assert decision["params"] == {"winner": "a", "order": ["a", "b"]}
    assert gw.decide({"kind": "action", "action": {"type": "boom"}})["source"] == "default"
    status = gw.status()
    assert {(o["file"], o["mode"]) for o in status["active"]["overrides"]} == {
        ("overrides/port22.py", "active"), ("overrides/boom.py", "active")}
    assert status["workers"]["override_failures"] == {"override_runtime_error": 1}
    metrics = gw.metrics()
    assert metric(metrics, 'policyctl_gateway_override_failures_total{code="override_runtime_error"}') == 1
    assert metric(metrics, 'policyctl_gateway_decisions_total{action="arbitrate",source="override:overrides/port22.py"}') == 1
    assert gw.stop() == 0


def test_the_gateway_never_imports_torch_or_sklearn() -> None:
    probe = ("import sys, policyctl.gateway.app, policyctl.gateway.evaluator, policyctl.cli.gateway; "
             "from policyctl.cli.main import main; main(['gateway', '--help']); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'sentence_transformers')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("[]"), done.stdout
