"""The gateway's lifecycle and input limits as an operator meets them: a lost ref, SIGTERM, slow clients, big inputs."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import commit_all, git, write
from test_gateway import CSV_SMB, SPIN_RULE, WAIT_S, Served, log_lines, metric

from policyctl.cli.main import main
from policyctl.model.limits import MAX_INPUT_BYTES


def host_port(gw: Served) -> tuple[str, int]:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def post_decide(conn: http.client.HTTPConnection, input: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
    conn.request("POST", "/v1/decide", body=json.dumps({"input": input}), headers={"content-type": "application/json"})
    response = conn.getresponse()
    body: dict[str, Any] = json.loads(response.read())
    return response.status, body, response.getheader("connection")


# --------------------------------------------------------------------------- a ref that cannot be read


def test_a_deleted_branch_degrades_the_gateway_which_keeps_serving_and_recovers(
        policy_repo: Path, serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]) -> None:
    gw = serve(policy_repo, "--workers", "1", "--poll", "0.5")
    head = git(policy_repo, "rev-parse", "HEAD")
    gw.serving(head)
    git(policy_repo, "update-ref", "-d", "refs/heads/main")  # the served branch is deleted, HEAD still names it

    status = gw.wait_until(lambda: (s := gw.status()).get("degraded") and s, "degraded after the branch is gone")
    assert "refs/heads/main" in status["degraded_reason"] and "deleted" in status["degraded_reason"]
    assert head[:12] in status["degraded_reason"]
    assert "refs/heads/main" in status["repo_error"] and "deleted" in status["repo_error"]
    assert "no commits yet" not in status["repo_error"]
    assert status["behind"] is None  # never "up to date" about a ref that is not there
    assert status["ready"] and status["active"]["revision"] == head
    assert gw.decide(CSV_SMB)["revision"] == head  # still serving the last good revision
    assert metric(gw.metrics(), "policyctl_gateway_degraded") == 1

    capsys.readouterr()
    assert main(["gateway", "status", "--url", gw.url]) == 1
    out = capsys.readouterr().out
    assert "DEGRADED" in out and "refs/heads/main was deleted" in out and "up to date" not in out

    git(policy_repo, "update-ref", "refs/heads/main", head)  # the branch comes back
    status = gw.wait_until(lambda: (s := gw.status()).get("degraded") is False and s, "recovered")
    assert status["repo_error"] is None and status["behind"] == 0 and status["degraded_reason"] is None
    assert metric(gw.metrics(), "policyctl_gateway_degraded") == 0
    write(policy_repo, "policies/file_share/data.json", json.dumps({"routes": {"parquet": {"smb": "sftp"}}}))
    newer = commit_all(policy_repo, "after the branch came back")
    gw.serving(newer)  # and it follows the ref again


def test_a_moved_repository_degrades_the_gateway_until_it_is_back(policy_repo: Path,
                                                                  serve: Callable[..., Served]) -> None:
    gw = serve(policy_repo, "--workers", "1", "--poll", "0.3")
    head = git(policy_repo, "rev-parse", "HEAD")
    gw.serving(head)
    moved = policy_repo.with_name(policy_repo.name + "-moved")
    policy_repo.rename(moved)
    try:
        status = gw.wait_until(lambda: (s := gw.status()).get("degraded") and s, "degraded after the move")
        assert str(policy_repo) in status["degraded_reason"] and "gone" in status["degraded_reason"]
        assert "refs/heads/main" in status["repo_error"]
        assert gw.decide(CSV_SMB)["revision"] == head
    finally:
        moved.rename(policy_repo)
    gw.wait_until(lambda: gw.status().get("degraded") is False, "recovered after the move back")


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_answers_open_connections_503_drains_in_flight_and_exits_0(policy_repo: Path, tmp_path: Path,
                                                                          serve: Callable[..., Served]) -> None:
    write(policy_repo, "policies/rules/spin.rego", SPIN_RULE)
    commit_all(policy_repo, "a rule that evaluates for seconds")
    log_dir = tmp_path / "log"
    gw = serve(policy_repo, "--workers", "2", "--eval-timeout", "2", "--log-dir", str(log_dir))
    host, port = host_port(gw)
    keep_alive = http.client.HTTPConnection(host, port, timeout=WAIT_S)
    assert post_decide(keep_alive, CSV_SMB)[0] == 200

    slow: dict[str, Any] = {}

    def in_flight() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
        slow["status"], slow["body"], _ = post_decide(conn, {"kind": "action", "action": {"type": "spin"}})

    thread = threading.Thread(target=in_flight)
    thread.start()
    gw.wait_until(lambda: any(p["busy"] and p["role"] == "serve" for p in gw.status()["workers"]["processes"]),
                  "the slow request in flight")
    gw.proc.send_signal(signal.SIGTERM)

    answers = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # until the signal is handled, requests are still answered
        status, body, connection = post_decide(keep_alive, CSV_SMB)
        answers.append(status)
        if status != 200:
            break
        time.sleep(0.02)
    assert status == 503 and body["code"] == "shutting_down" and body["message"], (answers, body)
    assert connection == "close"
    assert set(answers[:-1]) <= {200}

    assert gw.proc.wait(WAIT_S) == 0
    thread.join(WAIT_S)
    assert slow["status"] == 200, slow  # the request in flight at SIGTERM was finished, not cut
    assert slow["body"]["error"]["code"] == "eval_timeout"
    logged = {line["id"] for line in log_lines(log_dir)}
    assert slow["body"]["decision_id"] in logged  # and the decision log was flushed
    assert len(logged) == answers.count(200) + 2


# --------------------------------------------------------------------------- slow and idle connections


def _closed_after(sock: socket.socket, trickle: bytes, limit: float) -> tuple[float, bytes]:
    """Send `trickle` a byte every 0.2 s until the server closes; the seconds it took and what it sent."""
    began = time.monotonic()
    received = b""
    sock.settimeout(0.2)
    for byte in (trickle[i:i + 1] for i in range(len(trickle))):
        if time.monotonic() - began > limit:
            break
        try:
            if byte:
                sock.sendall(byte)
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - began, received
        received += chunk
        if not chunk:
            return time.monotonic() - began, received
    raise AssertionError(f"the connection was still open after {limit} s; received {received!r}")


def test_slow_headers_and_idle_connections_are_closed(policy_repo: Path, serve: Callable[..., Served]) -> None:
    gw = serve(policy_repo, "--workers", "1", "--header-timeout", "1", "--idle-timeout", "1")
    host, port = host_port(gw)
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n" + "X-Pad: " + "a" * 200 + "\r\n\r\n"

    with socket.create_connection((host, port)) as slowloris:  # a byte every 0.2 s: 40 s for the headers
        took, received = _closed_after(slowloris, request.encode(), limit=8)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["code"] == "header_timeout"
    assert took < 8

    with socket.create_connection((host, port)) as silent:  # connects and never sends a byte
        took, received = _wait_closed(silent, 8)
    assert received == b""

    with socket.create_connection((host, port)) as kept:  # one request, then idle on keep-alive
        kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        took, received = _wait_closed(kept, 8)
    assert received.startswith(b"HTTP/1.1 200 ") and b'{"status":"ok"}' in received

    assert gw.decide(CSV_SMB)["action"] == "allow"  # a prompt client is unaffected


def _wait_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; the seconds it took and everything it sent."""
    began = time.monotonic()
    received = b""
    sock.settimeout(limit)
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"the connection was still open after {limit} s; received {received!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - began, received
        received += chunk


# --------------------------------------------------------------------------- one input limit everywhere


def test_an_input_over_the_limit_is_refused_on_every_path(policy_repo: Path, tmp_path: Path,
                                                         serve: Callable[..., Served],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    big = {"kind": "action", "action": {"type": "file_share"}, "context": {"blob": "x" * 400_000}}
    gw = serve(policy_repo, "--workers", "1")
    response = gw.http.post("/v1/decide", json={"input": big})
    assert response.status_code == 413, response.text
    error = response.json()
    assert error["code"] == "request_too_large" and str(MAX_INPUT_BYTES) in error["message"]

    body = json.dumps({"input": big}).encode()

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse early, refused while reading
        yield body[:200_000]
        yield body[200_000:]

    response = gw.http.post("/v1/decide", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and str(MAX_INPUT_BYTES) in response.json()["message"]
    fits = {"kind": "action", "action": {"type": "file_share"}, "context": {"blob": "x" * 200_000}}
    assert gw.decide(fits)["action"] == "allow"

    big_file = tmp_path / "big.json"
    big_file.write_text(json.dumps(big))
    capsys.readouterr()
    assert main(["decide", "--repo", str(policy_repo), "--input", str(big_file)]) == 1
    err = capsys.readouterr().err
    assert f"the limit is {MAX_INPUT_BYTES}" in err and "big.json" in err
    wrapped = tmp_path / "wrapped.json"  # under {"input": …} the input is measured, not the envelope
    wrapped.write_text(json.dumps({"input": big}))
    assert main(["decide", "--repo", str(policy_repo), "--input", str(wrapped)]) == 1
    assert f"the limit is {MAX_INPUT_BYTES}" in capsys.readouterr().err
