"""policyctl draft: verified rules and fixtures for each systemic failure, rejected drafts never written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git

from policyctl.cli.main import main
from policyctl.cluster import cluster_logs
from policyctl.draft import run_drafts
from policyctl.repo import snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A policy repo with main.rego only, a simulated demo-world log through it, and its clusters."""
    root = tmp_path_factory.mktemp("draft")
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "policies").mkdir()
    (repo / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
    (repo / "policyctl.toml").write_text((PROJECT / "policyctl.toml").read_text())  # the demo world's vocabulary
    commit_all(repo, "main only")
    log = root / "events.jsonl"
    assert main(["simulate", "--world", "demo", "--events", "8000", "--seed", "11", "--repo", str(repo), "-o", str(log)]) == 0
    clusters, _ = cluster_logs([log], embedder="tfidf")
    path = root / "clusters.json"
    path.write_text(json.dumps(clusters.to_dict()))
    run = run_drafts(clusters, [log], snapshot(repo, "main"))
    return {"repo": repo, "log": log, "clusters": clusters, "clusters_path": path, "run": run}


def test_every_systemic_cluster_gets_a_verified_draft(world: dict[str, Any]) -> None:
    run = world["run"]
    systemic = world["clusters"].systemic
    assert len(run.verified) == len(systemic) == 5 and not run.skipped
    for d in run.verified:
        v = d.verification
        assert v["holdout"]["prevented_pct"] >= 95
        assert v["collateral"]["collateral_pct"] <= 0.5
        assert v["compiled"] and v["fixtures_passed"]
        assert {f["why"] for f in d.fixtures} == {"prevent", "keep"}


def test_remedies_are_chosen_from_the_data(world: dict[str, Any]) -> None:
    by_fault = {d.fingerprint.split("-")[0] + ":" + d.remedy.action: d for d in world["run"].verified}
    parquet = next(d for d in world["run"].verified if "parquet" in d.fingerprint)
    assert parquet.remedy.action == "route"
    assert parquet.remedy.params["action"]["protocol"] in {"sftp", "https", "nfs"}  # any protocol that worked for parquet
    assert parquet.remedy.evidence["support"] >= 10
    words = " ".join(parquet.conditions_in_words())
    assert "file type parquet" in words and "protocol smb" in words
    deadlock = next(d for d in world["run"].verified if d.cluster.deadlock)
    assert deadlock.remedy.action == "arbitrate"
    denied = next(d for d in world["run"].verified if "database" in d.fingerprint)
    assert denied.remedy.action == "deny" and "role reporting" in " ".join(denied.conditions_in_words())
    oversize = next(d for d in world["run"].verified if "https" in d.fingerprint)
    bound = next(c for body in oversize.bodies for c in body if c.field == "action.size_bytes")
    assert bound.op == ">" and 1.5e9 <= bound.value <= 2.5e9  # the hidden threshold is 2 GiB
    assert by_fault


def test_rego_is_in_house_style_and_deterministic(world: dict[str, Any]) -> None:
    d = world["run"].verified[0]
    text = d.module_text
    assert text.startswith("# METADATA\n# title: ")
    assert f"#   cluster: {d.fingerprint}\n#   mode: enforce" in text
    assert f"package agentgov.rules.{d.name}\n\nimport rego.v1\n" in text
    assert "decisions contains {" in text and f'"id": "{d.rule_id}"' in text
    again = run_drafts(world["clusters"], [world["log"]], snapshot(world["repo"], "main"))
    assert [x.module_text for x in again.drafts] == [x.module_text for x in world["run"].drafts]
    assert [x.fixtures for x in again.drafts] == [x.fixtures for x in world["run"].drafts]


def test_cli_writes_verified_drafts_that_check_and_pass_as_tests(world: dict[str, Any], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(world["repo"]), str(repo)], check=True)
    out = tmp_path / "out"
    code = main(["draft", "--repo", str(repo), "--clusters", str(world["clusters_path"]), "--logs", str(world["log"]),
                 "--write", "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "5 verified drafts" in printed.out
    doc = json.loads((out / "draft.json").read_text())
    assert doc["verified"] == 5 and (out / "DRAFTS.md").read_text().count("```rego") == 5
    assert len(list((repo / "policies/rules").glob("*.rego"))) == 5
    assert main(["check", "--repo", str(repo)]) == 0
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "shadow_fixtures"],
                          cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0 and "passed" in done.stdout, done.stdout


def _event(i: int, ftype: str, status: str, ts: str) -> dict[str, Any]:
    return {"id": f"e{i:04d}", "ts": ts,
            "input": {"kind": "action", "agents": [{"id": f"etl-{i % 5}", "role": "etl"}],
                      "action": {"type": "file_share", "protocol": "smb" if status != "ok" or i % 2 else "nfs",
                                 "file_type": ftype}},
            "decision": {"action": "allow", "source": "default"},
            "outcome": {"status": status, "message": f"smb2 write failed on {ftype} chunk {i}" if status != "ok" else "ok"}}


def test_a_draft_that_fails_verification_is_rejected_and_never_written(world: dict[str, Any], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # drift: early failures are parquet over smb, the latest ones orc over smb; a rule learned on the
    # early ones cannot prevent the held-out, and must not reach a pull request
    events = [_event(i, "parquet", "crash", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(80)]
    events += [_event(100 + i, "orc", "crash", f"2026-01-02T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(25)]
    events += [_event(200 + i, ["csv", "json", "parquet", "orc"][i % 4], "ok", "2026-01-01T12:00:00Z") for i in range(400)]
    log = tmp_path / "drift.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    cluster = {"fingerprint": "crash-smb-drift-00000000", "title": "crash over smb", "systemic": True, "status": "crash",
               "size": 105, "share": 1.0, "members": [e["id"] for e in events if e["outcome"]["status"] == "crash"],
               "distinguishing": [{"field": "action.protocol", "value": "smb", "share": 1.0, "success_share": 0.5}],
               "numeric": [], "deadlock": None}
    clusters = tmp_path / "clusters.json"
    totals = {"failures": 105, "successes": 400, "systemic_clusters": 1, "systemic_events": 105, "rare_events": 0}
    clusters.write_text(json.dumps({"version": 1, "embedder": "tfidf", "totals": totals, "clusters": [cluster]}))
    repo = world["repo"]
    out = tmp_path / "out"
    code = main(["draft", "--repo", str(repo), "--clusters", str(clusters), "--logs", str(log), "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    doc = json.loads((out / "draft.json").read_text())
    assert doc["verified"] == 0 and doc["rejected"] == 1
    assert "held-out failures" in doc["drafts"][0]["reasons"][0]
    assert not (out / "policies").exists()
    assert "NO" in printed


def test_unknown_fingerprint_and_bad_clusters_file(world: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["draft", "--repo", str(world["repo"]), "--clusters", str(world["clusters_path"]),
                 "--logs", str(world["log"]), "--cluster", "nope-123"])
    assert code == 1 and "no systemic cluster with fingerprint nope-123" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code = main(["draft", "--repo", str(world["repo"]), "--clusters", str(bad), "--logs", str(world["log"])])
    assert code == 1 and f"{bad}: cannot read clusters" in capsys.readouterr().err
    doc = json.loads(world["clusters_path"].read_text())
    doc["clusters"][1]["size"] = "many"
    bad.write_text(json.dumps(doc))
    code = main(["draft", "--repo", str(world["repo"]), "--clusters", str(bad), "--logs", str(world["log"])])
    assert code == 1 and f"{bad}: clusters[1].size: expected integer" in capsys.readouterr().err
