"""policyctl shadow, the pytest plugin, pre-commit hooks and the CI workflow, as a reviewer meets them."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git, write

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.repo import snapshot
from policyctl.shadow import replay

BIN = Path(sys.executable).parent


def make_log(repo: Path, path: Path, n: int = 400, seed: int = 3) -> dict[str, int]:
    """Events as the gateway logs them at main, with a hidden fault: orc over smb crashes."""
    pipeline = build_revision(snapshot(repo, "main"), verify=False).pipeline
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    with path.open("w") as f:
        for i in range(n):
            if rng.random() < 0.7:
                ftype, proto = rng.choice(["parquet", "orc", "csv"]), rng.choice(["smb", "nfs"])
                inp: dict[str, Any] = {"kind": "action", "agents": [{"id": f"etl-{i % 7}", "role": "etl"}],
                                       "action": {"type": "file_share", "protocol": proto, "file_type": ftype,
                                                  "size_bytes": rng.randint(1, 10**6)}}
                group = f"{ftype}/{proto}"
            else:
                port = rng.choice([22, 80])
                inp = {"kind": "conflict", "agents": [{"id": "deploy-1", "priority": 5}, {"id": "backup-1", "priority": 9}],
                       "resource": {"kind": "port", "port": port}}
                group = f"port{port}"
            d = pipeline.decide_dict(inp)
            routed = d["action"] == "route"
            status = "crash" if group == "orc/smb" and not routed else "ok"
            counts[group] = counts.get(group, 0) + 1
            f.write(json.dumps({"id": f"evt-{i:04d}", "ts": "2026-11-01T00:00:00Z", "input": inp,
                                "decision": {"action": d["action"], "params": d["params"], "source": d["source"]},
                                "outcome": {"status": status, "message": "smb2: STATUS_INVALID_PARAMETER" if status == "crash" else ""}}) + "\n")
    return counts


def candidate_orc(repo: Path) -> str:
    """The candidate: the parquet rule also routes orc off smb."""
    rule = (repo / "policies/file_share/parquet.rego").read_text()
    rule = rule.replace('input.action.file_type == "parquet"', 'input.action.file_type in {"parquet", "orc"}')
    rule = rule.replace("data.agentgov.file_share.routes.parquet[input.action.protocol]",
                        "data.agentgov.file_share.routes[input.action.file_type][input.action.protocol]")
    write(repo, "policies/file_share/parquet.rego", rule)
    write(repo, "policies/file_share/data.json", json.dumps({"routes": {"parquet": {"smb": "sftp"}, "orc": {"smb": "sftp"}}}))
    write(repo, "shadow_fixtures/file_share/orc_smb.jsonl", json.dumps(
        {"id": "orc-smb-001", "input": {"kind": "action", "action": {"type": "file_share", "protocol": "smb", "file_type": "orc"}},
         "expect": {"action": "route", "params": {"action": {"protocol": "sftp"}}}, "why": "prevent"}) + "\n")
    git(repo, "checkout", "-q", "-b", "candidate")
    return commit_all(repo, "route orc off smb")


@pytest.fixture
def scenario(policy_repo: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    log = tmp_path / "events.jsonl"
    counts = make_log(policy_repo, log)
    candidate_orc(policy_repo)
    return policy_repo, log, counts


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_shadow_shows_exactly_the_expected_transitions(scenario: tuple[Path, Path, dict[str, int]],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    repo, log, counts = scenario
    code, out, _ = run(capsys, "shadow", "--repo", str(repo), "--base", "main", "--candidate", "candidate",
                       "--logs", str(log), "--format", "json", "-j", "1")
    report = json.loads(out)
    assert code == 0, report["verdict"]
    orc_smb = counts["orc/smb"]
    changed = {k: v for k, v in report["matrix"].items() if k.split("→")[0] != k.split("→")[1]}
    assert changed == {"allow→route": orc_smb + 1}  # the logged orc/smb events and the new fixture
    t = report["totals"]
    assert t["failures"] == orc_smb and t["prevented"] == orc_smb and t["newly_prevented"] == orc_smb and t["exposed"] == 0
    assert t["collateral"] == 0 and report["collateral_pct"] == 0
    assert t["fixtures_failed"] == 0 and t["fixtures"] == 8
    # the unrelated rule's traffic: unchanged, zero collateral
    port = report["by_rule"]["arbitrate_restricted_port"]["matrix"]
    assert port == {"arbitrate→arbitrate": counts["port22"] + 2}  # the logged events and its 2 fixtures
    assert report["by_rule"]["route_parquet_off_smb"]["cluster"] == "seed-parquet-smb"
    assert report["by_fixture_file"]["shadow_fixtures/file_share/orc_smb.jsonl"] == {"allow→route": 1}


def test_parallel_replay_equals_serial(scenario: tuple[Path, Path, dict[str, int]]) -> None:
    repo, log, _ = scenario
    base, cand = snapshot(repo, "main"), snapshot(repo, "candidate")
    serial = replay(base, cand, [log], jobs=1, fixtures=False).to_dict()
    parallel = replay(base, cand, [log, log], jobs=2, fixtures=False).to_dict()
    assert parallel["matrix"] == {k: 2 * v for k, v in serial["matrix"].items()}
    assert parallel["totals"]["prevented"] == 2 * serial["totals"]["prevented"] > 0
    assert replay(base, cand, [], jobs=2).to_dict()["fixtures"] == replay(base, cand, [], jobs=1).to_dict()["fixtures"]


def test_collateral_over_budget_fails_and_names_the_worst(policy_repo: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "events.jsonl"
    make_log(policy_repo, log)
    git(policy_repo, "checkout", "-q", "-b", "candidate")
    write(policy_repo, "policies/rules/deny_csv.rego", '''# METADATA
# title: Deny csv
# custom:
#   mode: enforce
package agentgov.rules.deny_csv

import rego.v1

decisions contains {"id": "deny_csv", "action": "deny", "message": "no csv"} if {
\tinput.action.file_type == "csv"
}
''')
    commit_all(policy_repo, "deny csv")
    code, out, err = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--candidate", "candidate",
                         "--logs", str(log), "--format", "markdown")
    assert code == 1
    assert "exceeds the budget of 0.5%" in out
    assert "allow→deny" in out and "Collateral" in out and '"file_type": "csv"' in out
    code, _, _ = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--candidate", "candidate",
                     "--logs", str(log), "--max-collateral", "100", "--format", "json")
    assert code == 1  # within budget now, but the candidate also breaks csv-smb-keep-001
    code, _, _ = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--candidate", "candidate",
                     "--logs", str(log), "--max-collateral", "100", "--no-fixtures", "--format", "json")
    assert code == 0


def test_failing_fixture_fails_the_replay_with_junit(policy_repo: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = policy_repo / "shadow_fixtures/file_share/parquet_smb.jsonl"
    fixtures.write_text(fixtures.read_text().replace('"protocol": "sftp"}}}, "why": "prevent", "origin"',
                                                     '"protocol": "nfs"}}}, "why": "prevent", "origin"'))
    junit = tmp_path / "shadow.xml"
    code, _, err = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--worktree",
                       "--format", "junit", "-o", str(junit))
    assert code == 1 and "1 fixture(s) fail" in err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["parquet-smb-001"]
    assert "params.action.protocol: expected 'nfs', got 'sftp'" in (failed[0].find("failure").get("message") or "")  # type: ignore[union-attr]


def test_candidate_that_does_not_compile_names_file_and_line(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/rules/oops.rego", "package agentgov.rules.oops\n\nimport rego.v1\n\nx := [1,\n")
    code, _, err = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--worktree")
    assert code == 1
    assert "candidate revision (worktree) does not build" in err and "policies/rules/oops.rego:" in err


def test_malformed_log_lines_are_counted_with_file_and_line(policy_repo: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "events.jsonl"
    make_log(policy_repo, log, n=20)
    with log.open("ab") as f:
        f.write(b"{truncated\n\xff\xfe\n" + json.dumps({"id": "x"}).encode() + b"\n")
    code, out, _ = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--logs", str(log), "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["totals"]["events"] == 20 and report["totals"]["lines_rejected"] == 3
    where = [(p["line"], p["code"]) for p in report["problems"]]
    assert where == [(21, "bad_json"), (22, "bad_json"), (23, "not_an_event")]
    assert "input: required field is missing" in report["problems"][2]["message"]
    code, out, _ = run(capsys, "shadow", "--repo", str(policy_repo), "--base", "main", "--logs", str(log))
    assert "malformed log lines" in out and f"{log}:21" in out


def test_pytest_collects_fixtures_and_explains_a_failure(policy_repo: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "shadow_fixtures"],
                          cwd=policy_repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert "7 passed" in done.stdout
    fixtures = policy_repo / "shadow_fixtures/net/restricted_port_deadlock.jsonl"
    fixtures.write_text(fixtures.read_text().replace('"winner": "backup-1"', '"winner": "deploy-2"'))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "shadow_fixtures"],
                          cwd=policy_repo, capture_output=True, text=True)
    assert done.returncode == 1
    out = done.stdout
    assert "port22-deadlock-001" in out
    assert "params.winner: expected 'deploy-2', got 'backup-1'" in out
    assert "input:" in out and '"port": 22' in out and "expected (subset of the decision):" in out
    assert "decision:" in out and "rules that fired: arbitrate_restricted_port" in out
    # --policy-ref runs the committed fixtures and policies instead of the edited ones
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "shadow_fixtures",
                           "--policy-ref", "main"], cwd=policy_repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_pre_commit_hooks_run_and_block_a_broken_policy(policy_repo: Path) -> None:
    config = (PROJECT / ".pre-commit-config.yaml").read_text().replace(".venv/bin/", f"{BIN}/")
    config = config.split("      - id: ruff")[0]  # the policy hooks only
    write(policy_repo, ".pre-commit-config.yaml", config)
    commit_all(policy_repo, "hooks")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(policy_repo), "PRE_COMMIT_HOME": str(policy_repo / ".pc")}
    pre_commit = [str(BIN / "pre-commit"), "run", "--all-files"]
    done = subprocess.run(pre_commit, cwd=policy_repo, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    write(policy_repo, "policies/rules/bad.rego", "package agentgov.rules.bad\n\nx := [\n")
    git(policy_repo, "add", "-A")
    done = subprocess.run(pre_commit, cwd=policy_repo, capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "policies/rules/bad.rego:" in done.stdout


def test_hook_manifest_and_config_are_valid() -> None:
    for cmd in (["validate-manifest", ".pre-commit-hooks.yaml"], ["validate-config", ".pre-commit-config.yaml"]):
        done = subprocess.run([str(BIN / "pre-commit"), *cmd], cwd=PROJECT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow", sorted(p.name for p in (PROJECT / ".github/workflows").glob("*.yml")))
def test_workflows_pass_real_linters(workflow: str) -> None:
    path = PROJECT / ".github/workflows" / workflow
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = path.read_text()
    for line in text.splitlines():
        if re.match(r"^\s*(-\s*)?uses:", line):
            ref = line.split("@", 1)[1].split()[0]
            assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), f"{line.strip()}: not pinned to a commit"


def test_ci_workflow_writes_the_shadow_report_to_the_job_summary() -> None:
    text = (PROJECT / ".github/workflows/ci.yml").read_text()
    assert "permissions:\n  contents: read" in text
    assert "policyctl shadow --base" in text and "--format markdown" in text and "GITHUB_STEP_SUMMARY" in text
    assert shutil.which("git")
