"""check, decide and bundle as a user runs them, on real git repositories."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import PROJECT, commit_all, git, write

from policyctl.cli.main import main

BROKEN = """# METADATA
# title: Broken
# custom:
#   mode: enforce
package agentgov.rules.broken_{n}

import rego.v1

decisions contains {{"id": "x", "action": "deny"}} if {{
\tinput.kind == "action"
\tx := [1, 2
}}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_on_this_repository(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "--repo", str(PROJECT))
    assert code == 0, out + err
    assert "0 errors" in out


def test_check_names_every_broken_file_with_its_line(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/rules/broken_a.rego", BROKEN.format(n="a"))
    write(policy_repo, "policies/rules/broken_b.rego", "\n\n" + BROKEN.format(n="b"))
    bad = commit_all(policy_repo, "two broken rules")
    git(policy_repo, "checkout", "-q", "HEAD~1")  # the working tree is fine: --ref must read the commit
    code, out, err = run(capsys, "check", "--repo", str(policy_repo), "--ref", bad)
    assert code == 1
    assert re.search(r"policies/rules/broken_a.rego:1[12]:", err)  # the open `[` (regopy) or where `]` was due
    assert re.search(r"policies/rules/broken_b.rego:1[34]:", err)
    assert "FAILED" in err
    code, _, _ = run(capsys, "check", "--repo", str(policy_repo))
    assert code == 0


def test_check_reports_fixture_fields_and_line(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "shadow_fixtures/bad.jsonl", "\n".join([
        json.dumps({"id": "ok-1", "input": {"kind": "action", "action": {"type": "x"}}, "expect": {"action": "allow"}}),
        json.dumps({"id": "bad-1", "input": {"kind": "action", "action": {"type": "x"}}, "expect": {"action": "permit"}}),
        json.dumps({"id": "bad-2", "input": {"kind": "wander"}, "expect": {"action": "allow"}}),
        "{not json",
    ]) + "\n")
    code, out, err = run(capsys, "check", "--repo", str(policy_repo))
    assert code == 1
    assert "shadow_fixtures/bad.jsonl:2: error: validation_error: expect.action: \"permit\" is not one of" in err
    assert "shadow_fixtures/bad.jsonl:3:" in err and "input.kind" in err
    assert "shadow_fixtures/bad.jsonl:4:" in err and "not JSON" in err


def test_check_json_is_machine_readable(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/data.json", "{broken")
    code, out, _ = run(capsys, "check", "--repo", str(policy_repo), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["problems"][0]["file"] == "policies/data.json"
    assert report["counts"]["fixtures"] >= 7


def test_decide_routes_the_readme_example(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = git(policy_repo, "rev-parse", "HEAD")
    example = str(PROJECT / "examples/inputs/parquet-smb.json")
    code, out, _ = run(capsys, "decide", "--repo", str(policy_repo), "--input", example, "--json")
    decision = json.loads(out)
    assert code == 0
    assert decision["action"] == "route"
    assert decision["params"] == {"action": {"protocol": "sftp"}}
    assert decision["revision"] == head
    assert decision["reasons"][0]["file"] == "policies/file_share/parquet.rego"
    code, out, _ = run(capsys, "decide", "--repo", str(policy_repo), "--input", example)
    assert out.startswith("route") and "route_parquet_off_smb" in out


def test_decide_arbitrates_the_conflict_example(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = str(PROJECT / "examples/inputs/port22-conflict.json")
    code, out, _ = run(capsys, "decide", "--repo", str(policy_repo), "--input", example, "--json")
    decision = json.loads(out)
    # priority 10 beats 5 (rego-cpp's sort would put "10" before "5" as strings: we rank with <)
    assert decision["params"]["order"] == ["backup-1", "deploy-1", "deploy-2"]
    assert decision["params"]["winner"] == "backup-1"


def test_decide_ignores_uncommitted_edits_unless_worktree(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = policy_repo / "policies/file_share/data.json"
    data.write_text(json.dumps({"routes": {"parquet": {"smb": "nfs"}}}))
    example = str(PROJECT / "examples/inputs/parquet-smb.json")
    _, out, _ = run(capsys, "decide", "--repo", str(policy_repo), "--input", example, "--json")
    assert json.loads(out)["params"]["action"]["protocol"] == "sftp"
    _, out, _ = run(capsys, "decide", "--repo", str(policy_repo), "--input", example, "--json", "--worktree")
    assert json.loads(out)["params"]["action"]["protocol"] == "nfs"


@pytest.mark.parametrize(("doc", "needle"), [
    ('{"kind": "action"}', "input.action: required field is missing"),
    ('{"kind": "conflict", "agents": [{"id": "a"}]}', "input.agents: a conflict needs at least 2 agents"),
    ('{"kind": "action", "action": {"type": "x"}, "agents": [{"id": 7}]}', "input.agents[0].id"),
    ('[1, 2]', "input: expected an object"),
    ('{"kind": "action", "action": ', "not JSON"),
    ('{"kind": "teleport"}', "input.kind: \"teleport\" is not one of") ,
])
def test_decide_refuses_inputs_of_the_wrong_shape(policy_repo: Path, tmp_path: Path, doc: str, needle: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.json"
    path.write_text(doc)
    code, _, err = run(capsys, "decide", "--repo", str(policy_repo), "--input", str(path))
    assert code == 1
    assert err.startswith(f"Error: {path}")
    assert needle.replace('"teleport"', "'teleport'") in err or needle in err


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_input_is_refused_before_the_engine(policy_repo: Path, tmp_path: Path, depth: int,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"kind": "action", "action": {"type": "x"}, "context": {"a": ' + "[" * depth + "]" * depth + "}}")
    code, _, err = run(capsys, "decide", "--repo", str(policy_repo), "--input", str(path))
    assert code == 1
    assert "nested deeper than" in err


def test_empty_repository_and_missing_ref(make_repo, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    empty = make_repo(seed=False)
    example = str(PROJECT / "examples/inputs/parquet-smb.json")
    code, _, err = run(capsys, "decide", "--repo", str(empty), "--input", example)
    assert code == 1 and "no commits yet" in err
    repo = make_repo()
    code, _, err = run(capsys, "check", "--repo", str(repo), "--ref", "no-such-branch")
    assert code == 1 and "ref 'no-such-branch' not found" in err and "main" in err
    code, _, err = run(capsys, "check", "--repo", str(repo / "nope"))
    assert code == 1 and "no such directory" in err


def test_bundle_build_writes_an_opa_bundle(policy_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = git(policy_repo, "rev-parse", "HEAD")
    out_path = tmp_path / "bundle.tar.gz"
    code, out, _ = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path))
    assert code == 0 and head in out
    with tarfile.open(out_path) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(".manifest").read())  # type: ignore[union-attr]
        data = json.loads(tar.extractfile("agentgov/net/data.json").read())  # type: ignore[union-attr]
        meta = json.loads(tar.extractfile("agentgov/meta/data.json").read())  # type: ignore[union-attr]
    assert manifest["revision"] == head and manifest["roots"] == ["agentgov"]
    assert {"policies/main.rego", "policies/file_share/parquet.rego", "policies/net/ports.rego"} <= set(names)
    assert data["restricted_ports"] == [22, 2375, 5432]
    assert meta["modules"]["parquet_smb"]["mode"] == "enforce"
    again = tmp_path / "again.tar.gz"
    run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(again))
    assert again.read_bytes() == out_path.read_bytes()  # reproducible


def test_bundle_refuses_a_commit_that_does_not_compile(policy_repo: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/rules/broken_a.rego", BROKEN.format(n="a"))
    commit_all(policy_repo, "broken")
    code, _, err = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(tmp_path / "b.tar.gz"))
    assert code == 1 and re.search(r"policies/rules/broken_a.rego:1[12]", err)
    assert not (tmp_path / "b.tar.gz").exists()


def test_console_script_exit_codes_and_help(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "policyctl.cli.main"]
    done = subprocess.run([*exe, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "policyctl" in done.stdout
    done = subprocess.run([*exe, "decide"], capture_output=True, text=True)
    assert done.returncode == 2 and "--input" in done.stderr
    done = subprocess.run([*exe, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "check" in done.stdout and "decide" in done.stdout
    # --help must not import the heavy stacks
    probe = "import sys; from policyctl.cli.main import main; main(['--help']); print(sorted(m for m in ('torch', 'sklearn', 'regopy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().endswith("[]")
