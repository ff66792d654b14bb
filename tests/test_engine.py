"""The compiled policy set: precedence, defaults, shadow modules, explicit errors, the rule index."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT

from policyctl.decide import Pipeline, build_revision
from policyctl.engine import compile_policy_set
from policyctl.engine.modules import decision_bodies
from policyctl.errors import PolicyCompileError
from policyctl.model.values import tag
from policyctl.repo import Snapshot, worktree_snapshot

BASE = worktree_snapshot(PROJECT)


def rule(name: str, body: str, head: str, mode: str = "enforce") -> str:
    return f"""# METADATA
# title: {name}
# custom:
#   mode: {mode}
package agentgov.rules.{name}

import rego.v1

decisions contains {head} if {{
{body}
}}
"""


def snap(extra: dict[str, str], base: Snapshot = BASE) -> Snapshot:
    files = {p: b for p, b in base.files.items() if p.startswith("policies/")}
    files.update({p: t.encode() for p, t in extra.items()})
    return Snapshot(revision="test", files=files)


SHARE = {"kind": "action", "agents": [{"id": "a-1", "role": "etl"}],
         "action": {"type": "file_share", "protocol": "nfs", "file_type": "csv"}}


def test_precedence_deny_route_arbitrate_allow_ties_by_rule_id() -> None:
    cond = '\tinput.action.type == "file_share"'
    extra = {
        "policies/rules/z_allow.rego": rule("z_allow", cond, '{"id": "a_allow", "action": "allow"}'),
        "policies/rules/y_route.rego": rule("y_route", cond, '{"id": "b_route", "action": "route", "params": {"action": {"protocol": "sftp"}}}'),
        "policies/rules/x_route.rego": rule("x_route", cond, '{"id": "c_route", "action": "route", "params": {"action": {"protocol": "nfs"}}}'),
    }
    pipeline = Pipeline(compile_policy_set(snap(extra)))
    d = pipeline.decide_dict(SHARE)
    assert (d["action"], d["reasons"][0]["rule"]) == ("route", "b_route")
    assert d["fired"] == ["a_allow", "b_route", "c_route"]
    extra["policies/rules/w_deny.rego"] = rule("w_deny", cond, '{"id": "z_deny", "action": "deny", "message": "no"}')
    d = Pipeline(compile_policy_set(snap(extra))).decide_dict(SHARE)
    assert d["action"] == "deny" and d["reasons"][0] == {"rule": "z_deny", "file": "policies/rules/w_deny.rego", "message": "no"}


def test_result_does_not_depend_on_load_order() -> None:
    cond = '\tinput.action.type == "file_share"'
    mods = {f"policies/rules/r{i}.rego": rule(f"r{i}", cond, f'{{"id": "same", "action": "route", "params": {{"n": {i}}}}}')
            for i in range(4)}
    seen = set()
    for order in itertools.permutations(sorted(mods)):
        files = {p: b for p, b in BASE.files.items() if p.startswith("policies/")}
        files.update({p: mods[p].encode() for p in order})
        d = Pipeline(compile_policy_set(Snapshot(revision="t", files=files))).decide_dict(SHARE)
        seen.add(str(d["params"]))
    assert seen == {"{'n': 0}"}  # same id: ties by module name


def test_defaults_allow_an_action_and_negotiate_a_conflict() -> None:
    pipeline = Pipeline(compile_policy_set(BASE))
    assert pipeline.decide_dict(SHARE)["action"] == "allow"
    conflict = {"kind": "conflict", "agents": [{"id": "a"}, {"id": "b"}], "resource": {"kind": "lock", "id": "l"}}
    d = pipeline.decide_dict(conflict)
    assert (d["action"], d["source"]) == ("negotiate", "default")


def test_shadow_modules_are_evaluated_but_never_decide() -> None:
    extra = {"policies/rules/s.rego": rule("s", '\tinput.action.file_type == "csv"', '{"id": "deny_csv", "action": "deny"}', mode="shadow")}
    d = Pipeline(compile_policy_set(snap(extra))).decide_dict(SHARE)
    assert d["action"] == "allow"
    assert d["shadow"] == [{"rule": "deny_csv", "action": "deny", "params": {}, "module": "s"}]


def test_runtime_error_is_an_explicit_fail_closed_decision() -> None:
    # strict builtin errors: a type error is an error, not an undefined that falls back to allow
    extra = {"policies/rules/t.rego": rule("t", '\tinput.kind == "action"\n\tx := input.action.type + 1\n\tx > 0',
                                            '{"id": "t", "action": "allow"}')}
    d = Pipeline(compile_policy_set(snap(extra))).decide_dict(SHARE)
    assert d["action"] == "deny" and d["source"] == "error"
    assert d["error"]["code"] and d["error"]["message"]


def test_invalid_candidate_action_is_an_error_not_ignored() -> None:
    extra = {"policies/rules/v.rego": rule("v", '\tinput.kind == "action"', '{"id": "v", "action": "permit"}')}
    d = Pipeline(compile_policy_set(snap(extra))).decide_dict(SHARE)
    assert d["source"] == "error" and d["error"]["code"] == "invalid_candidate"
    assert "permit" in d["error"]["message"] and "policies/rules/v.rego" in d["error"]["message"]


def test_undefined_decision_is_explicit() -> None:
    files = dict(BASE.files)
    files["policies/main.rego"] = b"package agentgov.main\n\nimport rego.v1\n\ndecision := {\"action\": \"allow\"} if input.nothing\n"
    d = Pipeline(compile_policy_set(Snapshot(revision="t", files=files))).decide_dict(SHARE)
    assert d["source"] == "error" and d["error"]["code"] == "undefined_decision"


def test_compile_error_names_file_line_and_column() -> None:
    extra = {"policies/rules/bad.rego": rule("bad", "\tinput.kind == \n", '{"id": "b", "action": "deny"}')}
    with pytest.raises(PolicyCompileError) as info:
        compile_policy_set(snap(extra))
    where = {(p.file, p.line) for p in info.value.problems}
    assert ("policies/rules/bad.rego", 10) in where or any(f == "policies/rules/bad.rego" and ln for f, ln in where)
    assert "policies/rules/bad.rego:" in str(info.value)


def test_metadata_mode_must_be_known() -> None:
    extra = {"policies/rules/m.rego": rule("m", '\tinput.kind == "action"', '{"id": "m", "action": "deny"}', mode="sometimes")}
    with pytest.raises(PolicyCompileError, match="custom.mode 'sometimes' is not one of"):
        compile_policy_set(snap(extra))


def test_index_reads_literal_tests_and_stays_sound() -> None:
    text = '''package agentgov.rules.x
import rego.v1
decisions contains {"id": "a{", "action": "deny", "message": "} tricky"} if {
\tinput.kind == "action"
\t"smb" == input.action.protocol
\tinput.action.file_type in {"parquet", "orc"}
\tinput.size > 3
}
decisions contains {"id": "b", "action": "deny"} if input.kind == "conflict"
'''
    bodies = decision_bodies(text)
    assert bodies == [
        {"kind": frozenset({tag("action")}), "action.protocol": frozenset({tag("smb")}),
         "action.file_type": frozenset({tag("parquet"), tag("orc")})},
        {"kind": frozenset({tag("conflict")})},
    ]
    assert decision_bodies(text.replace('input.kind == "conflict"', 'true with input as {}')) is None
    assert decision_bodies("package agentgov.rules.y\ndecisions := {x | x := 1}\n") is None
    assert tag(True) != tag(1) and tag(1) == tag(1.0)


def _drafted(i: int) -> str:
    protocols = ["smb", "nfs", "sftp", "s3"]
    types = ["parquet", "csv", "json", "orc", "avro"]
    body = (f'\tinput.kind == "action"\n\tinput.action.type == "file_share"\n'
            f'\tinput.action.protocol == "{protocols[i % 4]}"\n\tinput.action.file_type == "{types[i % 5]}"\n'
            f'\tinput.action.size_bytes > {i * 1000}')
    return rule(f"drafted_{i}", body, f'{{"id": "route_{i:03d}", "action": "route", "params": {{"action": {{"protocol": "sftp"}}}}}}')


def test_indexed_decisions_equal_unindexed_decisions() -> None:
    rng = random.Random(7)
    extra = {f"policies/rules/drafted_{i}.rego": _drafted(i) for i in range(40)}
    indexed = compile_policy_set(snap(extra))
    assert indexed.index_paths
    unindexed = compile_policy_set(snap(extra))
    unindexed.index_paths = ()
    for _ in range(150):
        kind = rng.choice(["action", "conflict"])
        inp: dict[str, Any] = {"kind": kind, "agents": [{"id": "a", "priority": rng.randint(0, 9)}, {"id": "b"}]}
        if kind == "action":
            inp["action"] = {"type": rng.choice(["file_share", "exec"]), "protocol": rng.choice(["smb", "nfs", "sftp", "s3", 5]),
                             "file_type": rng.choice(["parquet", "csv", "json", "orc", "avro", None]),
                             "size_bytes": rng.randint(0, 50_000)}
        else:
            inp["resource"] = {"kind": rng.choice(["port", "lock"]), "port": rng.choice([22, 80, 5432])}
        a, b = indexed.evaluate(inp), unindexed.evaluate(inp)
        assert a == b, inp
    assert len(indexed.applicable(SHARE | {"action": {**SHARE["action"], "protocol": "smb", "file_type": "parquet"}})) < 40


def test_revision_with_failing_fixture_is_refused(tmp_path: Path) -> None:
    files = dict(BASE.files)
    files["shadow_fixtures/x.jsonl"] = (b'{"id": "wrong", "input": {"kind": "action", "action": {"type": "file_share",'
                                        b' "protocol": "smb", "file_type": "parquet"}}, "expect": {"action": "deny"}}\n')
    with pytest.raises(PolicyCompileError, match="fixture wrong: action: expected 'deny', got 'route'"):
        build_revision(Snapshot(revision="t", files=files))
