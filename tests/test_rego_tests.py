"""`policyctl test`: Rego unit tests in `*_test.rego` modules, never served; no engine crash aborts a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit_all, write

from policyctl.cli.main import main
from policyctl.engine import ENGINE_ENV, compile_policy_set
from policyctl.repo import snapshot

POLICYCTL = str(Path(sys.executable).parent / "policyctl")

PARQUET_TESTS = """package agentgov.lib.parquet_smb_test

import rego.v1

parquet_over_smb := {"kind": "action", "agents": [{"id": "etl-1"}],
	"action": {"type": "file_share", "protocol": "smb", "file_type": "parquet"}}

# The route follows data.agentgov.file_share.routes.
test_routes_over_the_configured_protocol if {
	d := data.agentgov.main.decision with input as parquet_over_smb
		with data.agentgov.file_share.routes as {"parquet": {"smb": "nfs"}}
	d.action == "route"
	d.params.action.protocol == "nfs"
}

# Fails: the committed data routes to sftp.
test_routes_to_ftp if {
	d := data.agentgov.main.decision with input as parquet_over_smb
	d.params.action.protocol == "ftp"
}
"""

# The module that made regopy abort `check` and `decide --worktree` (exit 134, no Error line).
ABORTING = """package agentgov.lib.x_test

import rego.v1

test_route if {
	d := data.agentgov.main.decision with input as {"kind": "action", "agents": [{"id": "a"}],
		"action": {"type": "file_share", "protocol": "smb", "file_type": "parquet"}}
	d.action == "route"
}
"""


@pytest.fixture
def regorus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluate with regorus (regopy crashes on `with` over these rules); --engine sets the same variable,
    which monkeypatch then removes again."""
    monkeypatch.setenv(ENGINE_ENV, "regorus")


@pytest.fixture
def tested_repo(policy_repo: Path) -> Path:
    write(policy_repo, "policies/file_share/parquet_test.rego", PARQUET_TESTS)
    commit_all(policy_repo, "tests for the parquet rule")
    return policy_repo


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("regorus")
def test_reports_the_passing_and_the_failing_test_and_exits_1(tested_repo: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "test", "--repo", str(tested_repo), "--engine", "regorus", "-v")
    assert code == 1
    assert "data.agentgov.lib.parquet_smb_test.test_routes_over_the_configured_protocol: PASS" in out
    assert "data.agentgov.lib.parquet_smb_test.test_routes_to_ftp: FAIL" in out
    assert "policies/file_share/parquet_test.rego:17: undefined" in out
    assert out.rstrip().endswith("PASS: 1/2\nFAIL: 1/2")

    code, out, _ = run(capsys, "test", "--repo", str(tested_repo), "--engine", "regorus")
    assert code == 1
    assert "test_routes_to_ftp: FAIL" in out and ": PASS" not in out  # passes are listed with -v only


@pytest.mark.usefixtures("regorus")
def test_run_selects_by_regex_and_paths_select_files(tested_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "test", "--repo", str(tested_repo), "--run", "configured_protocol$", "-v")
    assert code == 0
    assert "test_routes_to_ftp" not in out
    assert "PASS: 1/1" in out

    code, _, err = run(capsys, "test", "--repo", str(tested_repo), "--run", "no_such_test")
    assert code == 1 and "matches --run 'no_such_test'" in err

    code, _, err = run(capsys, "test", "--repo", str(tested_repo), "policies/net")
    assert code == 1 and "no tests found under policies/net" in err


@pytest.mark.usefixtures("regorus")
def test_junit_and_json_reports_count_the_results(tested_repo: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "out" / "rego-tests.xml"
    code, _, _ = run(capsys, "test", "--repo", str(tested_repo), "--format", "junit", "-o", str(report))
    assert code == 1
    root = ET.parse(report).getroot()
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == ("testsuites", "2", "1", "0")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "policies/file_share/parquet_test.rego"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    ftp = cases["data.agentgov.lib.parquet_smb_test.test_routes_to_ftp"]
    assert ftp.find("failure") is not None
    assert list(cases["data.agentgov.lib.parquet_smb_test.test_routes_over_the_configured_protocol"]) == []

    code, out, _ = run(capsys, "test", "--repo", str(tested_repo), "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["counts"] == {"total": 2, "pass": 1, "fail": 1, "error": 0, "skipped": 0}
    assert {r["name"]: r["status"] for r in doc["results"]}["test_routes_to_ftp"] == "FAIL"


@pytest.mark.usefixtures("regorus")
def test_errors_skips_and_no_tests(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", "--repo", str(policy_repo))
    assert code == 1 and "no tests found under policies/" in err

    write(policy_repo, "policies/net/ports_test.rego", """package agentgov.rules.restricted_port_deadlock_test

import rego.v1

test_port_is_a_number if { to_number("twenty-two") == 22 }

todo_test_ipv6 if { false }
""")
    code, out, _ = run(capsys, "test", "--repo", str(policy_repo))
    assert code == 1
    assert "data.agentgov.rules.restricted_port_deadlock_test.test_port_is_a_number: ERROR" in out
    assert "policies/net/ports_test.rego:5:" in out  # where the evaluation failed
    assert "ERROR: 1/2" in out and "SKIPPED: 1/2" in out


@pytest.mark.usefixtures("regorus")
def test_check_accepts_and_counts_test_modules_without_metadata(tested_repo: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    write(tested_repo, "policies/net/ports_test.rego", "package agentgov.rules.restricted_port_deadlock_test\n\n"
          "import rego.v1\n\ntest_ssh_is_restricted if { 22 in data.agentgov.net.restricted_ports }\n")
    code, out, err = run(capsys, "check", "--repo", str(tested_repo))
    assert code == 0, err
    assert "ok: 3 policies, 3 tests," in out

    write(tested_repo, "policies/net/ports_test.rego", "package agentgov.rules.restricted_port_deadlock_test\n\n"
          "test_broken if {\n")
    code, _, err = run(capsys, "check", "--repo", str(tested_repo))
    assert code == 1 and "policies/net/ports_test.rego" in err
    # a test that does not compile is check's problem, never the decision's
    input_file = write(tested_repo, "input.json", json.dumps({"kind": "action", "action": {"type": "x"}}))
    code, out, _ = run(capsys, "decide", "--repo", str(tested_repo), "--worktree", "--input", str(input_file))
    assert code == 0 and out.startswith("allow")


def test_test_modules_are_never_served_or_bundled(tested_repo: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    write(tested_repo, "policies/net/ports_test.rego", "package agentgov.rules.restricted_port_deadlock_test\n\n"
          "import rego.v1\n\ntest_ssh if { 22 in data.agentgov.net.restricted_ports }\n")
    commit_all(tested_repo, "a test in a rules package")
    policy_set = compile_policy_set(snapshot(tested_repo))
    assert sorted(m.file for m in policy_set.tests) == ["policies/file_share/parquet_test.rego",
                                                        "policies/net/ports_test.rego"]
    assert not any(m.file.endswith("_test.rego") for m in policy_set.modules)

    bundle = tmp_path / "bundle.tar.gz"
    code, _, err = run(capsys, "bundle", "build", "--repo", str(tested_repo), "-o", str(bundle))
    assert code == 0, err
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile("agentgov/meta/data.json"))  # type: ignore[arg-type]
    assert "policies/file_share/parquet.rego" in names
    assert not [n for n in names if n.endswith("_test.rego")]
    assert "restricted_port_deadlock_test" not in meta["modules"]


# --------------------------------------------------------------------------- engine crashes, in real processes


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENGINE_ENV}
    return subprocess.run([POLICYCTL, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def aborting_repo(make_repo: Callable[..., Path]) -> Path:
    repo = make_repo()
    write(repo, "policies/lib/x_test.rego", ABORTING)
    write(repo, "input.json", json.dumps({"kind": "action", "action": {"type": "x"}}))
    commit_all(repo, "a test module regopy cannot compile")
    return repo


def test_a_test_module_that_aborts_regopy_never_aborts_a_command(aborting_repo: Path) -> None:
    checked = cli(aborting_repo, "check", "--engine", "regopy")
    assert checked.returncode == 0, checked.stderr  # never served: a warning, and `test` says more
    assert "policies/lib/x_test.rego: warning: engine_crashed: the Rego engine crashed (SIGABRT)" in checked.stdout

    tested = cli(aborting_repo, "test", "--engine", "regopy")
    assert tested.returncode == 1, tested.stderr
    assert "data.agentgov.lib.x_test.test_route: ERROR" in tested.stdout
    assert "the Rego engine crashed (SIGABRT)" in tested.stdout

    decided = cli(aborting_repo, "decide", "--worktree", "--engine", "regopy", "--input", "input.json")
    assert decided.returncode == 0, decided.stderr
    assert decided.stdout.startswith("allow")

    assert cli(aborting_repo, "test", "--engine", "regorus").returncode == 0  # the test itself is right


def test_a_served_module_that_aborts_regopy_is_an_error_naming_it(aborting_repo: Path) -> None:
    write(aborting_repo, "policies/lib/x.rego", ABORTING.replace("agentgov.lib.x_test", "agentgov.lib.x"))
    checked = cli(aborting_repo, "check", "--engine", "regopy")
    assert checked.returncode == 1
    assert "policies/lib/x.rego: error: engine_crashed: the Rego engine crashed (SIGABRT)" in checked.stderr

    for args in (("decide", "--worktree", "--input", "input.json"), ("test",)):
        done = cli(aborting_repo, *args, "--engine", "regopy")
        assert done.returncode == 1, (args, done.returncode, done.stderr)
        assert "Error: policies/lib/x.rego: the Rego engine crashed (SIGABRT)" in done.stderr


def test_the_gateway_names_the_module_that_kills_its_build_worker(aborting_repo: Path, tmp_path: Path) -> None:
    import time

    import httpx

    good = commit_all(aborting_repo, "good")
    log = (tmp_path / "gateway.stderr").open("wb")
    env = {k: v for k, v in os.environ.items() if k != ENGINE_ENV}
    proc = subprocess.Popen([POLICYCTL, "gateway", "serve", "--repo", str(aborting_repo), "--port", "0",
                             "--workers", "1", "--engine", "regopy"], stdout=subprocess.DEVNULL, stderr=log,
                            cwd=tmp_path, env=env)

    def wait_for(what: str, predicate: Callable[[], object]) -> object:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {(tmp_path / 'gateway.stderr').read_text()[-2000:]}")

    def url() -> str | None:
        for line in (tmp_path / "gateway.stderr").read_text(errors="replace").splitlines():
            if "listening on http://" in line:
                return line.split("listening on ", 1)[1].split()[0]
        return None

    try:
        http = httpx.Client(base_url=str(wait_for("the gateway", url)), timeout=30)
        wait_for("serving", lambda: (http.get("/v1/status").json().get("active") or {}).get("revision") == good)
        write(aborting_repo, "policies/lib/x.rego", ABORTING.replace("agentgov.lib.x_test", "agentgov.lib.x"))
        bad = commit_all(aborting_repo, "a library regopy cannot compile")
        failure: dict[str, str] = wait_for("the failed build", lambda: (  # type: ignore[assignment]
            (s := http.get("/v1/status").json()).get("last_error") or {}).get("revision") == bad and s["last_error"])
        assert failure["message"].startswith("policies/lib/x.rego: the Rego engine crashed (SIGABRT)"), failure
        assert "the evaluation worker died (signal SIGABRT)" in failure["message"]
        status = http.get("/v1/status").json()
        assert status["active"]["revision"] == good  # the last good commit is still served
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
