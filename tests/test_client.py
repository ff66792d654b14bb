"""policyctl.client against a real `policyctl gateway serve` process (stopped, overloaded, token refused), and
against a real tiny server that sheds in the shapes a real gateway does not produce on demand."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PROJECT, commit_all, git, write
from test_gateway import PARQUET_SMB as _PARQUET_SMB
from test_gateway import WAIT_S, Served, log_lines

from policyctl.client import (
    AsyncGatewayClient,
    ClientError,
    Decision,
    Denied,
    GatewayClient,
    GatewayUnavailable,
    Reason,
    RetryPolicy,
    Unauthorized,
    action_input,
    deep_merge,
)
from policyctl.errors import ValidationError
from policyctl.model import Event

PARQUET_SMB: dict[str, Any] = _PARQUET_SMB
TOKEN = "client-test-token-0123456789abcdef"
CSV_SMB = action_input("file_share", agent="etl-1", role="etl", protocol="smb", file_type="csv")
SHELL = action_input("shell", agent="ops-1", role="ops", command="rm -rf /srv/share")
# Fast retries: the tests wait for real back-off and Retry-After, never longer than needed.
QUICK = RetryPolicy(attempts=3, backoff=0.02, max_backoff=0.05, deadline=3.0)

NO_SHELL_RULE = """# METADATA
# title: No shell for agents
# description: agents run tools, never shell commands
# custom:
#   mode: enforce
package agentgov.rules.no_shell

import rego.v1

decisions contains {"id": "deny_shell", "action": "deny", "params": {}, "message": "agents may not run shell commands"} if {
\tinput.kind == "action"
\tinput.action.type == "shell"
}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client")


@pytest.fixture(scope="module")
def repo(workdir: Path) -> Path:
    """This project's policy set plus a rule that denies shell commands, on main of a real git repository."""
    repo = workdir / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides"):
        shutil.copytree(PROJECT / top, repo / top)
    shutil.copy(PROJECT / "policyctl.toml", repo / "policyctl.toml")
    write(repo, "policies/agents/no_shell.rego", NO_SHELL_RULE)
    commit_all(repo, "policy set with a deny rule")
    return repo


@pytest.fixture(scope="module")
def gateway(repo: Path, workdir: Path) -> Iterator[Served]:
    """One gateway for the module, writing its decision log to workdir/log."""
    gw = Served(repo, workdir, "--workers", "1", "--log-dir", str(workdir / "log"), "--log-flush", "0.05")
    try:
        gw.ready()
        yield gw
    finally:
        gw.stop()


def outcome_of(gw: Served, log_dir: Path, decision_id: str) -> dict[str, Any]:
    """The outcome the gateway joined to `decision_id`, once its line is on disk."""
    def find() -> dict[str, Any] | None:
        for record in log_lines(log_dir):
            if record["id"] == decision_id and "outcome" in record:
                Event.from_dict(record)
                outcome: dict[str, Any] = record["outcome"]
                return outcome
        return None
    found: dict[str, Any] = gw.wait_until(find, f"the outcome of {decision_id}")
    return found


# --------------------------------------------------------------------------- decisions


def test_allow_route_and_deny_come_back_as_typed_decisions(gateway: Served, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with GatewayClient(gateway.url, retry=QUICK) as client:
        allow = client.decide(CSV_SMB)
        route = client.decide(PARQUET_SMB)
        deny = client.decide(SHELL)
        invalid = client.decide({"kind": "action", "action": {"type": ""}})

    assert isinstance(allow, Decision) and allow.action == "allow" and allow.source == "default"
    assert allow.revision == head and allow.decision_id and not allow.is_error

    assert route.action == "route" and route.source == "policy"
    assert route.params == {"action": {"protocol": "sftp"}}
    assert route.reasons == [Reason("route_parquet_off_smb", "policies/file_share/parquet.rego",
                                    "parquet over smb crashes agents; use sftp")]

    assert deny.action == "deny" and deny.source == "policy"
    assert deny.reasons[0].rule == "deny_shell" and deny.reasons[0].file == "policies/agents/no_shell.rego"
    assert len({allow.decision_id, route.decision_id, deny.decision_id}) == 3

    # An input the gateway refuses is no decision either: denied by the client, with the gateway's reason.
    assert invalid.action == "deny" and invalid.source == "client_error" and invalid.error is not None
    assert invalid.error["code"] == "validation_error" and "input.action.type" in invalid.error["message"]


def test_the_guard_reports_ok_error_and_denied_outcomes_into_the_decision_log(gateway: Served,
                                                                              workdir: Path) -> None:
    log_dir = workdir / "log"
    with GatewayClient(gateway.url, retry=QUICK) as client:
        with client.guard(PARQUET_SMB) as ok:
            # The routed input: the route's params deep-merged, the agent's intent untouched.
            assert ok.action == "route" and ok.input["action"]["protocol"] == "sftp"
            assert ok.input["action"]["file_type"] == "parquet" and ok.input["resource"] == PARQUET_SMB["resource"]
            assert ok.requested == PARQUET_SMB and PARQUET_SMB["action"]["protocol"] == "smb"

        with pytest.raises(RuntimeError, match="STATUS_INVALID_PARAMETER"), client.guard(CSV_SMB) as failed:
            assert failed.allowed and failed.input == CSV_SMB
            raise RuntimeError("smb2: STATUS_INVALID_PARAMETER writing q3.csv")

        with pytest.raises(Denied) as denied, client.guard(SHELL):
            raise AssertionError("a denied block must not run")
        assert denied.value.reasons[0].rule == "deny_shell"
        assert "deny_shell" in str(denied.value) and "agents may not run shell commands" in str(denied.value)

        with client.guard(SHELL, raise_on_deny=False) as checked:
            assert not checked.allowed and "agents may not run shell commands" in checked.refusal

        with client.guard(CSV_SMB) as told:
            told.set_outcome("crash", message="the share went away", code="E_SHARE")

    assert ok.reported is not None and ok.reported.status == "ok"
    logged = outcome_of(gateway, log_dir, ok.decision.decision_id or "")
    assert logged["status"] == "ok" and logged["duration_ms"] >= 0

    logged = outcome_of(gateway, log_dir, failed.decision.decision_id or "")
    assert logged == {"status": "error", "message": "RuntimeError: smb2: STATUS_INVALID_PARAMETER writing q3.csv",
                      "code": "RuntimeError", "duration_ms": logged["duration_ms"]}

    logged = outcome_of(gateway, log_dir, denied.value.decision.decision_id or "")
    assert logged["status"] == "denied" and "deny_shell" in logged["message"]
    assert outcome_of(gateway, log_dir, checked.decision.decision_id or "")["status"] == "denied"
    logged = outcome_of(gateway, log_dir, told.decision.decision_id or "")
    assert logged == {"status": "crash", "message": "the share went away", "code": "E_SHARE",
                      "duration_ms": logged["duration_ms"]} and logged["duration_ms"] >= 0


def test_report_outcome_joins_the_decision_or_says_why_not(gateway: Served, workdir: Path) -> None:
    with GatewayClient(gateway.url, retry=QUICK) as client:
        decision = client.decide(CSV_SMB)
        assert client.report_outcome(decision.decision_id, "timeout", message="share did not answer in 30 s",
                                     code="E_TIMEOUT", duration_ms=30000)
        assert not client.report_outcome("no-such-decision", "ok")
        with pytest.raises(ClientError) as unknown:
            client.report_outcome("no-such-decision", "ok", raise_errors=True)
        assert unknown.value.code == "unknown_decision" and unknown.value.status == 404
        assert not client.report_outcome(None, "ok")  # a client-made decision has nothing to join
        with pytest.raises(ValidationError, match="exploded"):
            client.report_outcome(decision.decision_id, "exploded")
    assert outcome_of(gateway, workdir / "log", decision.decision_id or "") == {
        "status": "timeout", "message": "share did not answer in 30 s", "code": "E_TIMEOUT", "duration_ms": 30000}


def test_async_client_decides_guards_and_reports(gateway: Served, workdir: Path) -> None:
    async def scenario() -> tuple[Decision, Decision, str, str]:
        async with AsyncGatewayClient(gateway.url, retry=QUICK) as client:
            route = await client.decide(PARQUET_SMB)
            deny = await client.decide(SHELL)
            async with client.guard(PARQUET_SMB) as ok:
                assert ok.input["action"]["protocol"] == "sftp"
                await asyncio.sleep(0)
            with pytest.raises(KeyError):
                async with client.guard(CSV_SMB) as failed:
                    raise KeyError("size_bytes")
            with pytest.raises(Denied):
                async with client.guard(SHELL):
                    raise AssertionError("a denied block must not run")
            return route, deny, ok.decision.decision_id or "", failed.decision.decision_id or ""

    route, deny, ok_id, failed_id = asyncio.run(scenario())
    assert route.action == "route" and route.params == {"action": {"protocol": "sftp"}}
    assert deny.action == "deny" and deny.reasons[0].rule == "deny_shell"
    assert outcome_of(gateway, workdir / "log", ok_id)["status"] == "ok"
    failed = outcome_of(gateway, workdir / "log", failed_id)
    assert failed["status"] == "error" and failed["code"] == "KeyError" and "size_bytes" in failed["message"]


# --------------------------------------------------------------------------- tokens


def test_a_wrong_token_fails_closed_and_the_right_one_decides(repo: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    gw = Served(repo, tmp_path, "--workers", "1", "--token-file", str(token_file), token=TOKEN)
    try:
        gw.ready()
        caplog.set_level(logging.DEBUG)
        wrong = "wrong-token-0123456789abcdefghij"
        with GatewayClient(gw.url, token=wrong, retry=QUICK) as client:
            decision = client.decide(CSV_SMB)
            assert decision.action == "deny" and decision.source == "client_error"
            assert decision.error is not None and decision.error["code"] == "unauthorized"
            assert "token" in decision.error["message"] and decision.decision_id is None
            with pytest.raises(Unauthorized) as refused:
                client.decide(CSV_SMB, raise_errors=True)
            assert refused.value.status == 401 and refused.value.attempts == 1  # a 401 is never retried
            assert wrong not in repr(client)
        with GatewayClient(gw.url, retry=QUICK) as client:
            assert client.decide(CSV_SMB).error == decision.error  # no token at all: the same refusal
        with GatewayClient(gw.url, token_file=token_file, retry=QUICK) as client:
            allowed = client.decide(CSV_SMB)
            assert allowed.action == "allow" and allowed.source == "default"
            assert client.status()["ready"] is True
        assert wrong not in caplog.text and TOKEN not in caplog.text
    finally:
        gw.stop()


# --------------------------------------------------------------------------- gateway down


def test_a_stopped_gateway_is_retried_then_denied_unless_the_call_fails_open(repo: Path, tmp_path: Path) -> None:
    gw = Served(repo, tmp_path, "--workers", "1")
    gw.ready()
    with GatewayClient(gw.url, retry=QUICK) as client:
        assert client.decide(CSV_SMB).action == "allow"
        assert gw.stop(signal.SIGTERM) == 0

        closed = client.decide(CSV_SMB)
        assert closed.action == "deny" and closed.source == "client_error"
        assert closed.error is not None and closed.error["code"] == "gateway_unreachable"
        assert gw.url in closed.error["message"]

        opened = client.decide(CSV_SMB, fail_open=True)
        assert opened.action == "allow" and opened.source == "client_error" and opened.error == closed.error

        with pytest.raises(GatewayUnavailable) as down:
            client.decide(CSV_SMB, raise_errors=True)
        assert down.value.attempts == QUICK.attempts  # every attempt was made, then it gave up

        with pytest.raises(Denied) as denied, client.guard(CSV_SMB):
            raise AssertionError("no decision, no action")
        assert "failing closed" in str(denied.value)
        with client.guard(CSV_SMB, fail_open=True) as g:
            assert g.allowed and g.decision.source == "client_error"
        assert not client.ready()


# --------------------------------------------------------------------------- overload: the real gateway

# An evaluation whose cost the input chooses: n × n iterations (about 0.5 µs each on Regorus), so
# a few cheap ones set the gateway's typical evaluation and one dear one holds its only worker.
COSTLY_RULE = """# METADATA
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
CHEAP, DEAR = 300, 2200  # about 45 ms; about 2.5 s


def costly(n: int) -> dict[str, Any]:
    return action_input("costly", agent="batch-1", role="etl", n=n)


@pytest.fixture
def overloadable(policy_repo: Path, serve: Callable[..., Served]) -> Served:
    """A gateway with one worker and a queue that holds nothing: while the worker evaluates, every
    other request is refused at once (503 overloaded, Retry-After: 1), as in a flood."""
    write(policy_repo, "policies/rules/costly.rego", COSTLY_RULE)
    commit_all(policy_repo, "a rule whose cost the input chooses")
    # Regorus: regopy answers this rule with an eval_error, at once; the dear evaluation must fit
    # the evaluation deadline with room to spare
    gw = serve(policy_repo, "--engine", "regorus", "--workers", "1", "--max-queue-wait", "0.001",
               "--eval-timeout", "20", "--poll", "600")
    for _ in range(5):  # the typical evaluation (the median) is a cheap one: Retry-After stays 1 s
        assert gw.decide(costly(CHEAP))["action"] == "deny"
    return gw


class Busy:
    """One dear evaluation on the gateway's only worker, from another thread, until `join()`."""

    def __init__(self, gw: Served) -> None:
        self.answer: httpx.Response | None = None
        self.thread = threading.Thread(target=self._ask, args=(gw.url,))
        self.thread.start()
        gw.wait_until(lambda: any(p["busy"] for p in gw.status()["workers"]["processes"] if p["role"] == "serve"),
                      "the worker busy with the dear evaluation")
        self.since = time.monotonic()

    def _ask(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=WAIT_S, trust_env=False) as http:
            self.answer = http.post("/v1/decide", json={"input": costly(DEAR)})

    def join(self) -> None:
        self.thread.join(WAIT_S)
        assert self.answer is not None and self.answer.status_code == 200, self.answer


class Answers:
    """Every answer a client's httpx transport received: when, its status and its Retry-After."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int, str | None]] = []

    def http(self) -> httpx.Client:
        def note(response: httpx.Response) -> None:
            self.seen.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))
        return httpx.Client(trust_env=False, event_hooks={"response": [note]})

    @property
    def statuses(self) -> list[int]:
        return [status for _, status, _ in self.seen]

    def waits_honoured(self) -> bool:
        """Each retry came no sooner than the Retry-After of the 503 before it."""
        pairs = zip(self.seen, self.seen[1:], strict=False)
        return all(after is not None and t1 - t0 >= float(after) - 0.05 for (t0, _, after), (t1, _, _) in pairs)


def test_an_overloaded_gateway_is_retried_after_its_retry_after_then_decides(overloadable: Served) -> None:
    answers = Answers()
    with answers.http() as http, GatewayClient(overloadable.url, http=http,
                                               retry=RetryPolicy(attempts=8, deadline=WAIT_S)) as client:
        busy = Busy(overloadable)
        decision = client.decide(CSV_SMB)
        busy.join()
    # the gateway's own decision, once its worker was free, not one the client made up
    assert decision.action == "allow" and decision.source == "default" and decision.decision_id
    assert answers.statuses[0] == 503 and answers.statuses[-1] == 200, answers.seen
    assert set(answers.statuses[:-1]) == {503} and all(after == "1" for _, _, after in answers.seen[:-1])
    assert answers.waits_honoured(), answers.seen
    assert overloadable.status()["workers"]["overload_refused"] >= len(answers.statuses) - 1


def test_an_overloaded_gateway_fails_closed_and_open_only_when_a_call_asks(overloadable: Served) -> None:
    once, patient = Answers(), Answers()
    with once.http() as http1, patient.http() as http2, \
            GatewayClient(overloadable.url, http=http1, retry=RetryPolicy(attempts=1)) as client, \
            GatewayClient(overloadable.url, http=http2, retry=RetryPolicy(attempts=5, deadline=1.5)) as retrying:
        busy = Busy(overloadable)
        opened = client.decide(CSV_SMB, fail_open=True)
        closed = client.decide(CSV_SMB)  # failing open was that call's choice, not the client's
        with pytest.raises(Denied) as denied, client.guard(CSV_SMB):
            raise AssertionError("no decision, no action")
        with client.guard(CSV_SMB, fail_open=True) as g:
            assert g.allowed and g.decision.source == "client_error"
        # Retry-After: 1 twice, and a third wait would end past the 1.5 s deadline: it gives up
        started = time.monotonic()
        late = retrying.decide(CSV_SMB)
        gave_up = time.monotonic() - started
        assert time.monotonic() < busy.since + 2.0  # all of it while the worker was still busy
        busy.join()

    assert once.statuses == [503] * 4  # one attempt per call, each refused at once
    assert opened.action == "allow" and opened.source == "client_error"
    for decision in (closed, late):
        assert decision.action == "deny" and decision.source == "client_error" and decision.decision_id is None
        assert decision.error is not None and decision.error["code"] == "overloaded"
        assert f"{overloadable.url}/v1/decide: 503 overloaded" in decision.error["message"]
        assert "--max-queue-wait" in decision.error["message"]  # the gateway's own reason
    assert opened.error == closed.error
    assert str(denied.value).startswith("the gateway gave no decision (overloaded: ")
    assert str(denied.value).endswith("failing closed")
    assert patient.statuses == [503, 503] and patient.waits_honoured(), patient.seen
    assert 1.0 <= gave_up < 1.5
    # the gateway is itself again: the same client decides
    with GatewayClient(overloadable.url, retry=QUICK) as client:
        assert client.decide(CSV_SMB).source == "default"


# --------------------------------------------------------------------------- overload: shapes on demand
# A real tiny server that sheds exactly as told: no Retry-After at all, a Retry-After past the
# deadline, an exact count of refusals for the async client. The real gateway always sends its
# own estimate (at least 1 s) and refuses by timing, so these shapes are tested here; retrying
# after its Retry-After is tested against the gateway itself, above.


class Shedding:
    """A real HTTP server on 127.0.0.1 that answers 503 + Retry-After `shed` times, then a decision."""

    def __init__(self, shed: int, retry_after: str | None = "1") -> None:
        self.shed = shed
        self.arrivals: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.arrivals.append(time.monotonic())
                if len(outer.arrivals) <= outer.shed:
                    body = json.dumps({"code": "overloaded", "message": "2048 requests already waiting"}).encode()
                    self.send_response(503)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                else:
                    body = json.dumps({"decision_id": "d-1", "action": "allow", "params": {}, "reasons": [],
                                       "source": "default", "revision": "abc", "shadow": []}).encode()
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shedding() -> Iterator[type[Shedding]]:
    started: list[Shedding] = []

    class Started(Shedding):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Started
    for server in started:
        server.close()


def test_503_past_the_attempts_or_the_deadline_fails_closed(shedding: type[Shedding]) -> None:
    server = shedding(shed=100, retry_after=None)
    with GatewayClient(server.url, retry=QUICK) as client:
        decision = client.decide(CSV_SMB)
        assert decision.action == "deny" and decision.source == "client_error"
        assert decision.error is not None and decision.error["code"] == "overloaded"
        assert len(server.arrivals) == QUICK.attempts  # backoff with jitter, then it gave up

    patient = shedding(shed=100, retry_after="30")
    with GatewayClient(patient.url, retry=RetryPolicy(attempts=5, deadline=2.0)) as client, \
            pytest.raises(GatewayUnavailable) as shed:
        client.decide(CSV_SMB, raise_errors=True)
    # Waiting 30 s would end past the 2 s deadline: it gives up at once instead of sleeping.
    assert shed.value.attempts == 1 and shed.value.status == 503 and len(patient.arrivals) == 1


def test_async_503_is_retried_then_decides(shedding: type[Shedding]) -> None:
    server = shedding(shed=2, retry_after="0")

    async def scenario() -> Decision:
        async with AsyncGatewayClient(server.url, retry=QUICK) as client:
            return await client.decide(CSV_SMB)

    decision = asyncio.run(scenario())
    assert decision.action == "allow" and len(server.arrivals) == 3


def test_deep_merge_merges_objects_and_replaces_the_rest() -> None:
    base: dict[str, Any] = {"action": {"type": "tool_call", "arguments": {"path": "a.csv", "format": "xls"}}, "tags": [1, 2]}
    merged = deep_merge(base, {"action": {"arguments": {"format": "xlsx"}}, "tags": [3]})
    assert merged == {"action": {"type": "tool_call", "arguments": {"path": "a.csv", "format": "xlsx"}}, "tags": [3]}
    assert base["action"]["arguments"]["format"] == "xls"  # nothing shared with the input
