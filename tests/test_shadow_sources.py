"""The history `policyctl shadow` and `policyctl pr merge` replay without --logs: the log sources
of policyctl.toml, read by the same readers as --logs, from the commit or over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import otel_data as data
import pytest
from conftest import commit_all, git, write

from policyctl.bot.gate import verify
from policyctl.bot.local import LocalForge
from policyctl.cli.main import main
from policyctl.repo import commit_files, update_branch

TOKEN_ENV = "POLICYCTL_TEST_LOGS_TOKEN"
TOKEN = "s3cret-logs-token"
JUNK = '{"x": 1}\nnot json\n'


def event_lines(n: int, prefix: str = "evt") -> str:
    inp = {"kind": "action", "agents": [{"id": "etl-1", "role": "etl"}],
           "action": {"type": "file_share", "protocol": "nfs", "file_type": "csv", "size_bytes": 10}}
    return "".join(json.dumps({"id": f"{prefix}-{i}", "ts": "2026-03-30T12:00:00Z", "input": inp,
                               "decision": {"action": "allow", "source": "default"},
                               "outcome": {"status": "ok"}}) + "\n" for i in range(n))


def configure(repo: Path, *sources: str, token_env: str | None = None) -> str:
    toml = "version = 1\n[logs]\nsources = [" + ", ".join(json.dumps(s) for s in sources) + "]\n"
    if token_env:
        toml += f'token_env = "{token_env}"\n'
    write(repo, "policyctl.toml", toml)
    return commit_all(repo, "log sources")


def shadow(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, str, str]:
    candidate = [] if "--worktree" in args else ["--candidate", "HEAD"]
    code = main(["shadow", "--repo", str(repo), "--base", "HEAD", *candidate, "--no-fixtures", "-j", "1", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- sources in the repository


def test_configured_sources_are_read_by_their_format(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an OPA decision log and an OTLP/JSON document: as raw JSON lines neither holds one event
    write(policy_repo, "logs/decisions.log", data.opa_decision_log())
    write(policy_repo, "logs/trace.json", data.otlp_json_document())
    configure(policy_repo, "logs/decisions.log", "logs/trace.json")
    code, out, err = shadow(capsys, policy_repo, "--format", "json")
    report = json.loads(out)
    assert code == 0, err
    assert report["totals"]["events"] == 33 and report["totals"]["lines_rejected"] == 0
    assert "logs.sources: read 33 events (opa 3, otlp-json 30)" in err
    # the seed policies route parquet off SMB: every logged OPA input was evaluated
    assert report["matrix"]["route→route"] == 3


def test_worktree_sources_are_read_by_their_format_too(policy_repo: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    configure(policy_repo, "logs/*.log")
    write(policy_repo, "logs/decisions.log", data.opa_decision_log(5))  # not committed: --worktree reads it
    code, out, err = shadow(capsys, policy_repo, "--worktree", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["totals"]["events"] == 5


def test_a_source_with_nothing_readable_fails_naming_the_file(policy_repo: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "logs/junk.jsonl", JUNK)
    configure(policy_repo, "logs/*.jsonl")
    code, out, err = shadow(capsys, policy_repo)
    assert code == 1 and out == ""
    assert "Error: policyctl.toml: logs.sources: nothing readable in logs/junk.jsonl: " in err
    assert "bad_json 1" in err and "not_an_event 1" in err and "first: logs/junk.jsonl:" in err


def test_a_partly_readable_source_is_replayed_and_its_bad_lines_reported(policy_repo: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "logs/mixed.jsonl", event_lines(4) + "not json\n")
    configure(policy_repo, "logs/mixed.jsonl")
    code, out, err = shadow(capsys, policy_repo, "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["totals"]["events"] == 4 and report["totals"]["lines_rejected"] == 1
    assert {"file": "logs/mixed.jsonl", "line": 5}.items() <= report["problems"][0].items()
    assert "skipped 1 (bad_json 1)" in err


def open_pr(repo: Path, branch: str) -> int:
    """A pull request adding one harmless fixture: its merge gate replays main's configured sources."""
    fixture = {"id": "keep-csv-001", "input": json.loads(event_lines(1))["input"], "expect": {"action": "allow"},
               "why": "keep"}
    sha = commit_files(repo, "main", {"shadow_fixtures/keep.jsonl": (json.dumps(fixture) + "\n").encode()},
                       "a fixture", author=("Rita Reviewer", "rita@example.com"))
    update_branch(repo, branch, sha, None)
    return LocalForge(repo).create_pr(head=branch, base="main", title="A fixture", body="keep csv").number


def test_the_merge_gate_reads_the_sources_the_same_way(policy_repo: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "logs/decisions.log", data.opa_decision_log())
    configure(policy_repo, "logs/decisions.log")
    found = verify(policy_repo, open_pr(policy_repo, "fixture-1"), jobs=1)
    assert found.report is not None and found.report.t["events"] == 3
    assert found.history == ["logs/decisions.log"]

    write(policy_repo, "logs/decisions.log", JUNK)
    commit_all(policy_repo, "the log is garbage now")
    number = open_pr(policy_repo, "fixture-2")
    before = git(policy_repo, "rev-parse", "main")
    assert main(["pr", "merge", str(number), "--repo", str(policy_repo), "-j", "1"]) == 1
    err = capsys.readouterr().err
    assert "Error: policyctl.toml: logs.sources: nothing readable in logs/decisions.log: " in err
    assert "bad_json 1" in err and "not_an_event 1" in err
    assert git(policy_repo, "rev-parse", "main") == before


# ---------------------------------------------------------------------- sources over HTTP


class LogServer:
    """A log store on 127.0.0.1: serves `files` to requests bearing `token`, and records every request
    (as a proxy too: a request for another host arrives with its absolute URL). No token: no check."""

    def __init__(self, files: dict[str, bytes], token: str) -> None:
        self.files, self.token = files, token
        self.requests: list[tuple[str, str | None]] = []
        seen, store = self.requests, self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                auth = self.headers.get("Authorization")
                seen.append((self.path, auth))
                body = store.files.get(self.path.split("://", 1)[1] if "://" in self.path else self.path.lstrip("/"))
                status = 401 if store.token and auth != f"Bearer {store.token}" else 404 if body is None else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if status == 200 and body:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LogServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def log_server() -> Iterator[Callable[..., LogServer]]:
    servers: list[LogServer] = []

    def start(files: dict[str, bytes], token: str = TOKEN) -> LogServer:
        servers.append(LogServer(files, token).__enter__())
        return servers[-1]

    yield start
    for s in servers:
        s.__exit__()


def test_a_url_source_is_fetched_with_the_bearer_token(policy_repo: Path, capsys: pytest.CaptureFixture[str],
                                                       log_server: Callable[..., LogServer],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server = log_server({"agents/day.jsonl": event_lines(7).encode(),
                         "agents/decisions.log": data.opa_decision_log().encode()})
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    configure(policy_repo, f"{server.url}/agents/day.jsonl", f"{server.url}/agents/decisions.log", token_env=TOKEN_ENV)
    code, out, err = shadow(capsys, policy_repo, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["totals"]["events"] == 10 and "read 10 events (events 7, opa 3)" in err
    assert server.requests == [("/agents/day.jsonl", f"Bearer {TOKEN}"), ("/agents/decisions.log", f"Bearer {TOKEN}")]

    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    code, _, err = shadow(capsys, policy_repo)
    assert code == 1 and f"GET {server.url}/agents/day.jsonl answered 401" in err


def test_a_token_is_never_sent_over_plain_http_to_another_host(policy_repo: Path, capsys: pytest.CaptureFixture[str],
                                                               log_server: Callable[..., LogServer],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the log server is this process's HTTP proxy: whatever is sent to example.com arrives there
    proxy = log_server({"example.com/agents/day.jsonl": event_lines(2).encode()}, token="")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    url = "http://example.com/agents/day.jsonl"
    configure(policy_repo, url, token_env=TOKEN_ENV)
    code, out, err = shadow(capsys, policy_repo)
    assert code == 1 and out == ""
    assert f"Error: policyctl.toml: logs.sources: '{url}' is not https://, and logs.token_env is set" in err
    assert "use https://" in err
    assert proxy.requests == []  # nothing was sent, the token least of all

    # without a token nothing secret is at stake: plain http is fetched (through the proxy: the
    # assertion above would have seen a request)
    configure(policy_repo, url)
    code, out, err = shadow(capsys, policy_repo)
    assert code == 0, err
    assert [path for path, _ in proxy.requests] == [url] and proxy.requests[0][1] is None
