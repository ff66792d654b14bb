"""Two engines behind one protocol: the same decisions, disagreements found with their inputs,
no policy reading the environment, and a rule index that does not thrash."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, write

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.engine import ENGINE_ENV, ENGINES, compile_policy_set, engine_named
from policyctl.engine.differential import compare, fixture_inputs
from policyctl.errors import PolicyCompileError
from policyctl.repo import Snapshot, snapshot, worktree_snapshot

UNGUARDED = """# METADATA
# title: Deny big uploads
# custom:
#   mode: enforce
package agentgov.rules.big_uploads

import rego.v1

decisions contains {"id": "deny_big_upload", "action": "deny", "message": "too big"} if {
\tinput.kind == "action"
\tinput.action.type == "upload"
\tinput.action.size_bytes > 2000
}
"""
GUARDED = UNGUARDED.replace("\tinput.action.size_bytes > 2000", "\tis_number(input.action.size_bytes)\n"
                                                                  "\tinput.action.size_bytes > 2000")


def upload(size: Any) -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": "a1", "role": "etl"}], "action": {"type": "upload", "size_bytes": size},
            "resource": {"kind": "bucket", "id": "b1"}}


def fixture_line(i: int, size: Any, expect: str) -> str:
    return json.dumps({"id": f"upload-{i}", "input": upload(size), "expect": {"action": expect}})


@pytest.fixture
def cross_type_repo(policy_repo: Path) -> Path:
    """A rule comparing an input field with a number, unguarded, and fixtures of other types."""
    write(policy_repo, "policies/rules/big_uploads.rego", UNGUARDED)
    write(policy_repo, "shadow_fixtures/uploads.jsonl", "\n".join(
        [fixture_line(1, 5000, "deny"), fixture_line(2, 10, "allow")]) + "\n")
    commit_all(policy_repo, "deny big uploads")
    return policy_repo


def test_both_engines_decide_alike_on_the_project_policies_and_fixtures() -> None:
    snap = worktree_snapshot(PROJECT)
    report = compare(snap, fixture_inputs(snap))
    assert report.compared >= 5
    assert report.ok, [d.line() for d in report.disagreements]
    for name in ENGINES:  # every fixture passes on each engine
        assert build_revision(snap, engine=engine_named(name)).failed_fixtures == []


def test_differential_check_reports_each_cross_type_comparison_with_its_input(
        cross_type_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "odd.jsonl"
    log.write_text("\n".join(json.dumps({"id": f"e{i}", "ts": "2026-11-01T00:00:00Z", "input": upload(v),
                                         "outcome": {"status": "ok"}})
                             for i, v in enumerate([None, True, "5000", 9000, 1])) + "\n")
    code = main(["check", "--repo", str(cross_type_repo), "--differential", "--logs", str(log), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    found = [p for p in out["problems"] if p["code"] == "engine_disagreement"]
    # null, true and "5000" are ordered differently by rego-cpp; 9000 and 1 are numbers
    assert sorted(p["line"] for p in found) == [1, 2, 3]
    assert all(p["file"] == str(log) for p in found)
    by_line = {p["line"]: p["message"] for p in found}
    assert '"size_bytes": null' in by_line[1] and '"size_bytes": true' in by_line[2] and '"size_bytes": "5000"' in by_line[3]
    assert "regopy: deny" in by_line[1] and "regorus: allow" in by_line[1]

    # with the is_number guard every engine agrees
    write(cross_type_repo, "policies/rules/big_uploads.rego", GUARDED)
    assert main(["check", "--repo", str(cross_type_repo), "--differential", "--logs", str(log)]) == 0
    assert re.search(r"agree on all \d+ inputs", capsys.readouterr().err)


def test_shadow_differential_fails_on_a_disagreement_and_lists_the_input(
        cross_type_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "odd.jsonl"
    log.write_text(json.dumps({"id": "e1", "ts": "2026-11-01T00:00:00Z", "input": upload(None),
                               "outcome": {"status": "ok"}}) + "\n")
    code = main(["shadow", "--repo", str(cross_type_repo), "--base", "HEAD", "--logs", str(log), "--differential",
                 "-j", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"disagree on 1 of \d+ inputs", err) and '"size_bytes": null' in err
    assert f"{log}:1: engines disagree" in err


def test_engine_flag_chooses_the_engine_of_every_evaluation(cross_type_repo: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    doc = tmp_path / "in.json"
    doc.write_text(json.dumps(upload(None)))
    actions = {}
    for name in sorted(ENGINES):
        assert main(["decide", "--repo", str(cross_type_repo), "--engine", name, "--json", "--input", str(doc)]) == 0
        actions[name] = json.loads(capsys.readouterr().out)["action"]
        monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert actions == {"regopy": "deny", "regorus": "allow"}


@pytest.mark.parametrize("call", ["opa.runtime().env", "opa.runtime()", 'http.send({"method": "get", "url": "http://127.0.0.1:9"})'])
def test_a_policy_may_not_read_the_environment_or_the_network(policy_repo: Path, call: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["POLICYCTL_TEST_SECRET"] = "hunter2-secret"
    try:
        write(policy_repo, "policies/rules/leak.rego", UNGUARDED.replace("big_uploads", "leak").replace(
            '"message": "too big"', f'"message": json.marshal({call})'))
        commit_all(policy_repo, "leak the environment")
        for name in ENGINES:
            with pytest.raises(PolicyCompileError) as err:
                build_revision(snapshot(policy_repo, "HEAD"), engine=engine_named(name))
            problem = next(p for p in err.value.problems if p.code == "forbidden_builtin")
            assert problem.file == "policies/rules/leak.rego" and problem.line == 9
        assert main(["check", "--repo", str(policy_repo)]) == 1
        err_text = capsys.readouterr().err
        assert "policies/rules/leak.rego:9" in err_text and "forbidden_builtin" in err_text
        assert "hunter2" not in err_text
    finally:
        del os.environ["POLICYCTL_TEST_SECRET"]


def test_forbidden_names_in_comments_and_strings_are_fine(policy_repo: Path) -> None:
    text = UNGUARDED.replace('"too big"', '"never call opa.runtime() here"').replace(
        "import rego.v1", "import rego.v1\n\n# http.send is not used")
    write(policy_repo, "policies/rules/big_uploads.rego", text)
    commit_all(policy_repo, "mentions only")
    build_revision(snapshot(policy_repo, "HEAD"))


def drafted(i: int) -> str:
    return f"""# METADATA
# title: Route share fs-{i}
# custom:
#   mode: enforce
package agentgov.rules.d{i}

import rego.v1

decisions contains {{"id": "route_{i}", "action": "route", "params": {{"action": {{"protocol": "sftp"}}}}}} if {{
\tinput.kind == "action"
\tinput.action.type == "t{i % 7}"
\tinput.resource.id == "fs-{i}"
\tis_number(input.action.size_bytes)
\tinput.action.size_bytes > {i}
}}
"""


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_traffic_over_more_key_combinations_than_any_cache_compiles_each_set_once(engine: str) -> None:
    base = worktree_snapshot(PROJECT)
    files = {p: b for p, b in base.files.items() if p.startswith("policies/") and not p.endswith("_test.rego")}
    n = 300
    files.update({f"policies/rules/d{i}.rego": drafted(i).encode() for i in range(n)})
    policies = compile_policy_set(Snapshot(revision="many", files=files), engine_named(engine))
    rng = random.Random(3)
    inputs = []
    for _ in range(900):
        j = rng.randrange(n)
        inputs.append({"kind": "action", "agents": [{"id": "a", "role": "etl"}],
                       "action": {"type": f"t{rng.choice([j % 7, rng.randrange(7)])}", "size_bytes": rng.randrange(600)},
                       "resource": {"kind": "share", "id": f"fs-{j}"}})
    keys = {policies.key(i) for i in inputs}
    assert len(keys) > 300
    first = [policies.evaluate(i) for i in inputs]
    compiled = policies.compiles
    assert compiled <= len({policies.names_for(k) for k in keys})
    again = [policies.evaluate(i) for i in inputs]
    assert policies.compiles == compiled  # a second pass over the same traffic compiles nothing
    assert again == first
    for inp, decision in zip(inputs[:60], first, strict=False):  # and the index never changes a decision
        j = int(inp["resource"]["id"][3:])
        fires = inp["action"]["type"] == f"t{j % 7}" and inp["action"]["size_bytes"] > j
        assert (decision["action"] == "route") == fires, inp


def test_an_unknown_engine_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENGINE_ENV, "opa")
    with pytest.raises(Exception) as err:
        engine_named()
    assert "unknown engine 'opa'" in str(err.value)
    assert main(["check", "--engine", "opa"]) == 2
    assert "opa" in capsys.readouterr().err


def test_a_syntax_error_names_the_file_and_line_on_every_engine() -> None:
    files = dict(worktree_snapshot(PROJECT).files)
    files["policies/rules/broken.rego"] = UNGUARDED.replace("big_uploads", "broken").replace(
        "\tinput.action.size_bytes > 2000\n", "\tx := [1, 2\n").encode()
    for name in ENGINES:
        with pytest.raises(PolicyCompileError) as err:
            compile_policy_set(Snapshot(revision="b", files=files), engine_named(name))
        assert any(p.file == "policies/rules/broken.rego" and p.line in (12, 13) for p in err.value.problems), name



def test_an_engine_panic_fails_the_decision_closed_not_the_process() -> None:
    files = dict(worktree_snapshot(PROJECT).files)
    files["policies/rules/counts.rego"] = UNGUARDED.replace("big_uploads", "counts").replace(
        "\tinput.action.size_bytes > 2000\n", '\tstrings.count(input.action.type, "") > 0\n').encode()
    policies = compile_policy_set(Snapshot(revision="p", files=files), engine_named("regorus"))
    from policyctl.decide import Pipeline

    decision = Pipeline(policies).decide_dict(upload(1))
    assert decision["action"] == "deny" and decision["source"] == "error"
    assert decision["error"]["code"] == "eval_engine_panic"
