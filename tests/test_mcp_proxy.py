"""`policyctl mcp-proxy` end to end: a real MCP client, the proxy process, a real MCP server, a real gateway."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from conftest import PROJECT, commit_all, git, write
from mcp import ClientSession, StdioServerParameters, stdio_client
from test_gateway import WAIT_S, Served, log_lines

from policyctl.cli.main import main
from policyctl.model import Event

FILES_SERVER = Path(__file__).parent / "mcp_servers" / "files.py"

MCP_RULE = """# METADATA
# title: Tool calls on the files server
# description: >-
#   Agents never delete files; the xls writer is retired, so a conversion to xls
#   is routed to xlsx.
# custom:
#   mode: enforce
package agentgov.rules.mcp_files

import rego.v1

decisions contains {"id": "deny_delete_file", "action": "deny", "params": {},
\t"message": "agents may not delete files"} if {
\tinput.kind == "action"
\tinput.action.type == "tool_call"
\tinput.action.tool == "delete_file"
}

decisions contains {
\t"id": "route_xls_to_xlsx", "action": "route",
\t"params": {"action": {"arguments": {"format": "xlsx"}}},
\t"message": "the xls writer is retired; convert to xlsx",
} if {
\tinput.kind == "action"
\tinput.action.type == "tool_call"
\tinput.action.tool == "convert"
\tinput.action.arguments.format == "xls"
}
"""


def tool_input(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": "a1", "role": "etl"}],
            "action": {"type": "tool_call", "tool": tool, "arguments": arguments},
            "resource": {"kind": "mcp_server", "id": "files"}}


MCP_FIXTURES = [
    {"id": "mcp-delete-001", "input": tool_input("delete_file", path="notes.txt"),
     "expect": {"action": "deny"}, "why": "prevent"},
    {"id": "mcp-xls-001", "input": tool_input("convert", path="notes.txt", format="xls"),
     "expect": {"action": "route", "params": {"action": {"arguments": {"format": "xlsx"}}}}, "why": "prevent"},
    {"id": "mcp-read-keep-001", "input": tool_input("read_file", path="notes.txt"),
     "expect": {"action": "allow"}, "why": "keep"},
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's policy set plus the files server's rule module and its fixtures."""
    repo = tmp_path_factory.mktemp("mcp") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides"):
        shutil.copytree(PROJECT / top, repo / top)
    shutil.copy(PROJECT / "policyctl.toml", repo / "policyctl.toml")
    write(repo, "policies/mcp/files.rego", MCP_RULE)
    write(repo, "shadow_fixtures/mcp/files.jsonl", "".join(json.dumps(f) + "\n" for f in MCP_FIXTURES))
    commit_all(repo, "rules for the files MCP server")
    return repo


@pytest.fixture
def gateway(repo: Path, tmp_path: Path) -> Iterator[Callable[[], Served]]:
    """Start a gateway on `repo` that logs to tmp_path/log; stopped after the test."""
    started: list[Served] = []

    def start() -> Served:
        gw = Served(repo, tmp_path, "--workers", "1", "--log-dir", str(tmp_path / "log"), "--log-flush", "0.05")
        started.append(gw)
        gw.ready()
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    (root / "notes.txt").write_text("ship the q3 report\n")
    return root


@contextlib.asynccontextmanager
async def proxied(gateway_url: str, root: Path, stderr: Path) -> AsyncIterator[tuple[ClientSession,
                                                                                     types.InitializeResult]]:
    """A real MCP client session with `policyctl mcp-proxy … -- python files.py ROOT`, as an MCP host runs it."""
    command = [sys.executable, "-m", "policyctl.cli.main", "mcp-proxy", "--gateway", gateway_url,
               "--agent-id", "a1", "--role", "etl", "--call-timeout", "1.5", "--", sys.executable, str(FILES_SERVER), str(root)]
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    with stderr.open("a") as errlog, anyio.fail_after(WAIT_S):
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            yield session, init


def calls(root: Path) -> list[dict[str, Any]]:
    """What reached the files server, in order."""
    path = root / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def logged(gw: Served, log_dir: Path, count: int) -> list[dict[str, Any]]:
    """The decision log's records once `count` outcomes are on disk, each an Event the bot can read."""
    def outcomes() -> list[dict[str, Any]] | None:
        records = log_lines(log_dir) if log_dir.exists() else []
        return records if sum("outcome" in r for r in records) >= count else None
    records: list[dict[str, Any]] = gw.wait_until(outcomes, f"{count} outcomes in the decision log")
    for record in records:
        Event.from_dict(record)
    return records


def test_tool_calls_are_decided_routed_refused_and_their_outcomes_logged(gateway: Callable[[], Served],
                                                                         root: Path, tmp_path: Path) -> None:
    gw = gateway()

    async def session() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with proxied(gw.url, root, tmp_path / "proxy.stderr") as (client, init):
            seen["server"] = init.server_info.name
            seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            seen["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
            index = await client.read_resource("files://index")
            seen["index"] = [c.text for c in index.contents if isinstance(c, types.TextResourceContents)]
            prompt = await client.get_prompt("summarize", {"path": "notes.txt"})
            seen["prompt"] = [m.content.text for m in prompt.messages if isinstance(m.content, types.TextContent)]
            seen["read"] = await client.call_tool("read_file", {"path": "notes.txt"})
            seen["delete"] = await client.call_tool("delete_file", {"path": "notes.txt"})
            seen["xls"] = await client.call_tool("convert", {"path": "notes.txt", "format": "xls"})
            seen["parquet"] = await client.call_tool("convert", {"path": "q3.csv", "format": "parquet"})
            seen["slow"] = await client.call_tool("slow", {"seconds": 30})
            seen["crash"] = await client.call_tool("crash", {})
            seen["after"] = await client.call_tool("read_file", {"path": "notes.txt"})
        return seen

    seen = anyio.run(session)
    assert seen["server"] == "files"  # the proxy shows the server behind it as it is
    assert seen["tools"] == ["convert", "crash", "delete_file", "read_file", "slow"]
    assert seen["resources"] == ["files://index"] and seen["index"] == ["notes.txt"]
    assert seen["prompt"] == ["Summarize the file notes.txt."]

    assert not seen["read"].is_error and text(seen["read"]) == "ship the q3 report\n"

    assert seen["delete"].is_error
    assert "deny_delete_file" in text(seen["delete"]) and "agents may not delete files" in text(seen["delete"])
    assert (root / "notes.txt").exists()

    assert not seen["xls"].is_error and text(seen["xls"]) == "converted notes.txt to notes.xlsx"
    assert (root / "notes.xlsx").exists() and not (root / "notes.xls").exists()

    assert seen["parquet"].is_error and "parquet writer failed on q3.csv" in text(seen["parquet"])
    assert seen["slow"].is_error and "did not finish within 1.5 s" in text(seen["slow"])
    assert seen["crash"].is_error and "the MCP server 'files' is gone" in text(seen["crash"])
    assert seen["after"].is_error and "restart the proxy" in text(seen["after"])

    # The server behind saw exactly the calls the gateway let through, with the routed argument.
    assert calls(root) == [
        {"tool": "read_file", "arguments": {"path": "notes.txt"}},
        {"tool": "convert", "arguments": {"path": "notes.txt", "format": "xlsx"}},
        {"tool": "convert", "arguments": {"path": "q3.csv", "format": "parquet"}},
        {"tool": "slow", "arguments": {"seconds": 30}},
        {"tool": "crash", "arguments": {}},
    ]

    records = logged(gw, tmp_path / "log", count=6)
    decisions = {r["id"]: r for r in records if "outcome" not in r}
    outcomes = {r["id"]: r["outcome"] for r in records if "outcome" in r}
    by_call = [(decisions[i]["input"]["action"]["tool"], decisions[i]["input"]["action"]["arguments"],
                decisions[i]["decision"]["action"], outcomes[i]) for i in decisions]
    assert [(tool, args, action, outcome["status"]) for tool, args, action, outcome in by_call] == [
        ("read_file", {"path": "notes.txt"}, "allow", "ok"),
        ("delete_file", {"path": "notes.txt"}, "deny", "denied"),
        ("convert", {"path": "notes.txt", "format": "xls"}, "route", "ok"),
        ("convert", {"path": "q3.csv", "format": "parquet"}, "allow", "error"),
        ("slow", {"seconds": 30}, "allow", "timeout"),
        ("crash", {}, "allow", "crash"),
    ]  # the call after the crash was refused without a decision: nothing could happen
    first = next(iter(decisions.values()))
    assert first["input"]["agents"] == [{"id": "a1", "role": "etl"}]
    assert first["input"]["resource"] == {"kind": "mcp_server", "id": "files"}
    failed = by_call[3][3]
    assert "parquet writer failed on q3.csv: column 'ts' has mixed types" in failed["message"]
    assert failed["code"] == "tool_error" and failed["duration_ms"] >= 0
    assert by_call[4][3]["code"] == "mcp_request_timeout" and "--call-timeout" in by_call[4][3]["message"]
    crashed = by_call[5][3]
    assert crashed["code"] == "mcp_connection_closed" and "closed the connection" in crashed["message"]


def test_a_gateway_that_is_down_refuses_every_tool_call(root: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def session() -> tuple[list[str], types.CallToolResult]:
        async with proxied(f"http://127.0.0.1:{port}", root, tmp_path / "proxy.stderr") as (client, _):
            tools = [t.name for t in (await client.list_tools()).tools]
            return tools, await client.call_tool("read_file", {"path": "notes.txt"})

    tools, refused = anyio.run(session)
    assert "read_file" in tools  # listing needs no decision
    assert refused.is_error and "gateway gave no decision" in text(refused) and "failing closed" in text(refused)
    assert "gateway_unreachable" in text(refused)
    assert calls(root) == []  # nothing reached the server behind
    assert "not ready" in (tmp_path / "proxy.stderr").read_text()


def test_the_failing_tool_becomes_a_cluster(gateway: Callable[[], Served], root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    gw = gateway()
    plan = []
    for i in range(40):
        if i % 3 == 0:
            plan.append(("convert", {"path": f"exports/batch-{i:03d}.csv", "format": "parquet"}))
        elif i % 3 == 1:
            plan.append(("read_file", {"path": "notes.txt"}))
        else:
            plan.append(("convert", {"path": "notes.txt", "format": ("csv", "json")[i % 2]}))

    async def session() -> list[bool]:
        async with proxied(gw.url, root, tmp_path / "proxy.stderr") as (client, _):
            return [(await client.call_tool(tool, args)).is_error for tool, args in plan]

    errors = anyio.run(session)
    assert errors == [tool == "convert" and args["format"] == "parquet" for tool, args in plan]
    assert sum(errors) == 14

    records = logged(gw, tmp_path / "log", count=40)
    failing = {r["id"] for r in records if r.get("outcome", {}).get("status") == "error"}
    assert len(failing) == 14
    assert gw.stop() == 0

    out = tmp_path / "clusters.json"
    logs = sorted(str(p) for p in (tmp_path / "log").glob("decisions-*.jsonl"))
    assert main(["cluster", *logs, "--embedder", "tfidf", "-o", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads(out.read_text())
    clusters = [c for c in doc["clusters"] if set(c["members"]) & failing]
    assert len(clusters) == 1, json.dumps(doc["clusters"], indent=1)[:3000]
    found = clusters[0]
    assert set(found["members"]) == failing and found["size"] == 14
    assert "parquet writer failed" in json.dumps(found["examples"])
