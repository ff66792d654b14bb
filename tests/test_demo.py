"""policyctl demo: the whole loop, end to end, as the README's main job runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_whole_loop_and_failures_fall(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "policyctl.cli.main", "demo", "-o", str(out), "--events", "3000",
                           "--embedder", "tfidf"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "demo.json").read_text())
    assert result["reduction_pct"] >= 90
    assert result["collateral"] <= 0.01 * result["ok_without"] and result["diverted"] == 0
    assert result["pull_requests"]
    # the figures the demo prints per pull request are the ones in its body (one replay, one set of figures)
    from policyctl.bot.local import LocalForge

    forge = LocalForge(Path(result["repo"]))
    for number, f in result["pull_request_figures"].items():
        body = forge.record(int(number))["body"]
        assert f["verdict"] == "PASS"
        assert f"**{f['prevented']}** of {f['failures']} " in body
        assert f"**{f['collateral']}** of {f['successes']} ({f['collateral_pct']:.2f}%;" in body
        assert (f"{f['prevented']} of {f['failures']} logged failures prevented, {f['collateral']} of "
                f"{f['successes']} successes changed outside the failure region") in done.stdout
    for step in ("policyctl gateway serve", "policyctl bot run", "policyctl pr merge", "hot-swaps", "without a restart"):
        assert step in done.stdout
    # the merges are real: main holds the drafted rules, and the gateway logged every decision it made
    repo = Path(result["repo"])
    rules = list((repo / "policies/rules").glob("*.rego"))
    assert len(rules) == len(result["pull_requests"])
    log = subprocess.run(["git", "log", "--oneline", "main"], cwd=repo, capture_output=True, text=True).stdout
    assert log.count("Merge") >= len(result["pull_requests"]) or len(log.splitlines()) > len(result["pull_requests"])
    assert (out / "clusters.html").read_text().count("<circle") >= 1
    logged = sum(1 for f in (out / "decision-logs").rglob("*.jsonl*") for _ in f.open("rb"))
    assert logged >= 2 * 3000
