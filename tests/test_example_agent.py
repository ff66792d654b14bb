"""examples/langgraph: a real LangGraph agent, offline, whose tools go through a real gateway process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git
from test_gateway import WAIT_S, Served, log_lines

from policyctl.model import Event

EXAMPLE = PROJECT / "examples" / "langgraph"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Served]:
    """This project's policy set plus the example's rule and fixtures, as its README says to install them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides"):
        shutil.copytree(PROJECT / top, repo / top)
    shutil.copy(PROJECT / "policyctl.toml", repo / "policyctl.toml")
    (repo / "policies/agents").mkdir()
    (repo / "shadow_fixtures/agents").mkdir()
    shutil.copy(EXAMPLE / "policies/agents/no_delete_on_prod.rego", repo / "policies/agents/")
    shutil.copy(EXAMPLE / "policies/agents/no_delete_on_prod.jsonl", repo / "shadow_fixtures/agents/")
    commit_all(repo, "the example agent's rule")
    gw = Served(repo, tmp_path, "--workers", "1", "--log-dir", str(tmp_path / "log"), "--log-flush", "0.05")
    try:
        gw.ready()
        yield gw
    finally:
        gw.stop()


def test_the_langgraph_agent_is_routed_refused_and_its_failure_logged(gateway: Served, tmp_path: Path) -> None:
    shares = tmp_path / "shares"
    done = subprocess.run([sys.executable, str(EXAMPLE / "agent.py"), "--gateway", gateway.url, "--shares",
                           str(shares), "--json"], capture_output=True, text=True, timeout=WAIT_S * 2,
                          env={**os.environ, "LANGSMITH_TRACING": "false"})
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    tools = [(m["name"], m["content"]) for m in messages if m["type"] == "tool"]
    assert [name for name, _ in tools] == ["share_file", "delete_file", "share_file"]

    routed, refused, failed = (content for _, content in tools)
    assert routed == ("shared reports/q3.parquet on fs-2 over sftp "
                      "(routed from smb: parquet over smb crashes agents; use sftp)")
    assert (shares / "fs-2/sftp/reports/q3.parquet").exists() and not (shares / "fs-2/smb").exists()
    assert refused.startswith("REFUSED: denied by policy") and "deny_delete_on_prod" in refused
    assert "prod-finance is production" in refused
    assert failed == "FAILED: nfs: stale file handle writing reports/q3.csv to fs-2"

    final = messages[-1]
    assert final["type"] == "ai" and not final["tool_calls"]
    assert all(content in final["content"] for _, content in tools)  # the model read every tool result

    def outcomes() -> list[dict[str, Any]] | None:
        records = log_lines(tmp_path / "log") if (tmp_path / "log").exists() else []
        return records if sum("outcome" in r for r in records) >= 3 else None

    records: list[dict[str, Any]] = gateway.wait_until(outcomes, "the agent's three outcomes")
    for record in records:
        Event.from_dict(record)
    decided = [(r["input"]["action"]["type"], r["decision"]["action"]) for r in records if "outcome" not in r]
    assert decided == [("file_share", "route"), ("file_delete", "deny"), ("file_share", "allow")]
    reported = [r["outcome"] for r in records if "outcome" in r]
    assert [o["status"] for o in reported] == ["ok", "denied", "error"]
    assert reported[2]["code"] == "ShareUnavailable"
    assert reported[2]["message"] == "ShareUnavailable: nfs: stale file handle writing reports/q3.csv to fs-2"
    assert records[0]["input"]["agents"] == [{"id": "report-agent-1", "role": "reporting", "priority": 3}]
