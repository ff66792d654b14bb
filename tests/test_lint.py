"""`policyctl lint`: each rule fires on a minimal bad module, never on this project's policies;
exit codes, --strict, --disable, --json, and `check` running it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PROJECT, commit_all, write

from policyctl.cli.main import main

META = """# METADATA
# title: Linted
# description: a rule module for the lint tests
# custom:
#   mode: enforce
"""
HEAD = META + "package agentgov.rules.linted\n\nimport rego.v1\n\n"
RULE = "policies/rules/linted.rego"
DENY = 'decisions contains {"id": "x", "action": "deny"} if {\n'

# code -> (file, text, line, severity)
BAD = {
    "L001": (RULE, META + "package agentgov.rules.other\n\nimport rego.v1\n\nx := 1\n", 6, "warning"),
    "L002": (RULE, "package agentgov.rules.linted\n\nimport rego.v1\n\nx := 1\n", 1, "warning"),
    "L003": (RULE, HEAD + DENY + "\tinput.action.size_bytes > 1000\n}\n", 11, "warning"),
    "L004": (RULE, HEAD + DENY + '\tregex.match("^(a+)+$", input.action.path)\n}\n', 11, "warning"),
    "L005": (RULE, HEAD + DENY + "\topa.runtime().env.DEPLOY == \"freeze\"\n}\n", 11, "error"),
    "L006": (RULE, HEAD + DENY + '\thttp.send({"method": "get", "url": "http://x"}).status_code == 200\n}\n', 11, "error"),
}


def lint(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, dict]:
    code = main(["lint", "--repo", str(repo), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("code", sorted(BAD))
def test_each_rule_fires_on_a_minimal_bad_module(policy_repo: Path, capsys: pytest.CaptureFixture[str],
                                                 code: str) -> None:
    path, text, line, severity = BAD[code]
    write(policy_repo, path, text)
    commit_all(policy_repo, f"a module breaking {code}")
    status, doc = lint(capsys, policy_repo, "--ref", "HEAD")
    found = [(p["file"], p["line"], p["code"], p["severity"]) for p in doc["problems"]]
    assert found == [(path, line, code, severity)], doc["problems"]
    assert status == (1 if severity == "error" else 0)


def test_this_projects_policies_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = lint(capsys, PROJECT)
    assert status == 0 and doc["modules"] >= 3
    assert [p for p in doc["problems"] if p["severity"] == "error"] == []


def test_the_seed_policies_of_init_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = lint(capsys, PROJECT / "policyctl/scaffold/seed", "--strict")
    assert status == 0 and doc["problems"] == []


def test_strict_fails_on_warnings_and_disable_turns_a_rule_off(policy_repo: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, RULE, BAD["L003"][1])
    assert lint(capsys, policy_repo)[0] == 0
    assert lint(capsys, policy_repo, "--strict")[0] == 1
    status, doc = lint(capsys, policy_repo, "--strict", "--disable", "untyped-comparison")
    assert status == 0 and doc["problems"] == []
    assert main(["lint", "--repo", str(policy_repo), "--disable", "L999"]) == 2
    assert "no such lint rule" in capsys.readouterr().err


def test_a_type_guard_silences_the_comparison(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, RULE, HEAD + DENY + "\tis_number(input.action.size_bytes)\n\tinput.action.size_bytes > 1000\n}\n")
    assert lint(capsys, policy_repo, "--strict")[1]["problems"] == []
    write(policy_repo, RULE, HEAD + DENY + "\tsize := input.action.size_bytes\n\tsize > 1000\n}\n")
    problems = lint(capsys, policy_repo)[1]["problems"]
    assert [(p["code"], p["line"]) for p in problems] == [("L003", 12)] and "is_number(size)" in problems[0]["message"]


def test_regex_patterns(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        '\tregex.match("^[a-z0-9_]+$", input.action.path)': [],
        '\tregex.match("^(a+)+$", "aaaa")': [],  # constant text: nothing to craft
        '\tregex.match(input.action.pattern, input.action.path)': ["L004"],
        '\tregex.replace(input.action.path, "(\\\\w+\\\\.)*x", "")': ["L004"],
    }
    for line, expected in cases.items():
        write(policy_repo, RULE, HEAD + DENY + line + "\n}\n")
        assert [p["code"] for p in lint(capsys, policy_repo)[1]["problems"]] == expected, line


def test_a_test_that_mocks_http_send_is_not_calling_it(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/rules/linted_test.rego", "package agentgov.rules.linted_test\n\nimport rego.v1\n\n"
          'test_mocked if {\n\tnot data.agentgov.main.decision.error with http.send as {"status_code": 200}\n}\n')
    assert lint(capsys, policy_repo, "--strict")[1]["problems"] == []


def test_the_text_report_and_paths(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, RULE, BAD["L006"][1])
    write(policy_repo, "policies/rules/other.rego", BAD["L003"][1].replace("linted", "other"))
    assert main(["lint", "--repo", str(policy_repo)]) == 1
    err = capsys.readouterr().err
    assert f"{RULE}:11:2: error: L006: http-send: http.send is not allowed in a policy" in err
    assert "policies/rules/other.rego:11:2: warning: L003: untyped-comparison: " in err
    assert "FAILED: 5 modules in the working tree: 1 errors, 1 warnings" in err
    assert main(["lint", "--repo", str(policy_repo), "policies/rules/other.rego"]) == 0  # as pre-commit passes files
    assert "ok: " in capsys.readouterr().out


def test_check_runs_lint(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, RULE, BAD["L003"][1])
    assert main(["check", "--repo", str(policy_repo)]) == 0
    assert f"{RULE}:11:2: warning: L003: untyped-comparison: " in capsys.readouterr().out
    write(policy_repo, RULE, BAD["L005"][1])
    assert main(["check", "--repo", str(policy_repo)]) == 1
    err = capsys.readouterr().err
    assert f"{RULE}:11:2: error: " in err and "opa.runtime" in err and "1 errors" in err  # once, not twice
