"""The build refuses what OPA's compiler refuses: undefined functions and rules, recursion, unsafe
variables, wrong arity; without false alarms on this project's policies or on valid Rego."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import PROJECT, commit_all, write

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.engine import compile_policy_set, load_data, load_modules
from policyctl.engine.analyze import analyze, builtin_arities
from policyctl.errors import PolicyCompileError
from policyctl.repo import Snapshot, snapshot, worktree_snapshot

HEAD = """# METADATA
# title: Under test
# description: a rule module for the static analysis tests
# custom:
#   mode: enforce
package agentgov.rules.checked

import rego.v1

"""
FIRST = HEAD.count("\n") + 1  # the line the body below HEAD starts on

BROKEN = {
    "undefined_function": ('decisions contains {"id": "x", "action": "deny"} if {\n'
                           '\tinput.kind == "action"\n\tis_blocked(input.action.type)\n}\n', FIRST + 2, 2),
    "recursion": ('decisions contains {"id": "x", "action": "deny"} if blocked\n\n'
                  'blocked if {\n\tinput.kind == "action"\n\tnot allowed\n}\n\n'
                  'allowed if not blocked\n', FIRST + 2, 1),
    "unsafe_var": ('decisions contains {"id": "x", "action": "deny"} if {\n'
                   '\tinput.kind == "action"\n\tsize > 1000\n}\n', FIRST + 2, 2),
    "wrong_arity": ('decisions contains {"id": "x", "action": "deny"} if {\n'
                    '\tinput.kind == "action"\n\tstartswith(input.action.type)\n}\n', FIRST + 2, 2),
    "undefined_rule": ('decisions contains {"id": "x", "action": "deny"} if {\n'
                       '\tinput.resource.port in data.agentgov.net.blocked_ports\n}\n', FIRST + 1, 25),
}


def check(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["check", "--repo", str(repo), *extra])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("code", sorted(BROKEN))
def test_check_refuses_a_commit_the_engine_would_accept(policy_repo: Path, capsys: pytest.CaptureFixture[str],
                                                        code: str) -> None:
    body, line, col = BROKEN[code]
    write(policy_repo, "policies/rules/checked.rego", HEAD + body)
    commit_all(policy_repo, f"a rule with {code}")
    status, text = check(policy_repo, capsys, "--ref", "HEAD")
    assert status == 1, text
    assert f"policies/rules/checked.rego:{line}:{col}: error: {code}: " in text, text


def test_messages_say_what_and_how(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/rules/checked.rego", HEAD + BROKEN["recursion"][0])
    commit_all(policy_repo, "recursion")
    _, text = check(policy_repo, capsys, "--ref", "HEAD")
    assert ("recursion: data.agentgov.rules.checked.blocked (policies/rules/checked.rego:12) -> "
            "data.agentgov.rules.checked.allowed (policies/rules/checked.rego:17) -> "
            "data.agentgov.rules.checked.blocked; a rule or function must not depend on itself") in text
    write(policy_repo, "policies/rules/checked.rego", HEAD + BROKEN["undefined_rule"][0])
    _, text = check(policy_repo, capsys)
    assert "data.agentgov.net.blocked_ports is not defined" in text
    assert "did you mean data.agentgov.net.restricted_ports?" in text
    write(policy_repo, "policies/rules/checked.rego", HEAD + BROKEN["wrong_arity"][0])
    _, text = check(policy_repo, capsys)
    assert "startswith takes 2 arguments, called with 1" in text


@pytest.mark.parametrize("code", sorted(BROKEN))
def test_build_revision_refuses_the_snapshot(policy_repo: Path, code: str) -> None:
    write(policy_repo, "policies/rules/checked.rego", HEAD + BROKEN[code][0])
    commit_all(policy_repo, code)
    with pytest.raises(PolicyCompileError) as caught:
        build_revision(snapshot(policy_repo, "HEAD"))
    assert [(p.file, p.code) for p in caught.value.problems] == [("policies/rules/checked.rego", code)]


def test_test_modules_are_analysed_too(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/net/ports_test.rego", "package agentgov.rules.restricted_port_deadlock_test\n\n"
          "import rego.v1\n\ntest_two_agents if {\n\tnot data.agentgov.rules.restricted_port_deadlock.decisions "
          "with input as {}\n\tassert_empty([])\n}\n")
    status, text = check(policy_repo, capsys)
    assert status == 1
    assert "policies/net/ports_test.rego:7:2: error: undefined_function: call to undefined function assert_empty" in text


def test_this_projects_policies_build_clean() -> None:
    policy_set = compile_policy_set(worktree_snapshot(PROJECT))
    assert policy_set.rule_modules


def test_generated_and_drafted_shaped_modules_analyse_clean() -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        from engine import drafted_module  # bench/engine.py's 200 drafted-shaped rules
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    base = worktree_snapshot(PROJECT)
    files = {p: b for p, b in base.files.items() if p.startswith("policies/")}
    files.update({path: text.encode() for path, text in (drafted_module(i) for i in range(200))})
    snap = Snapshot(revision="bench", files=files)
    modules, problems = load_modules(snap)
    data, _ = load_data(snap)
    assert not problems and analyze(modules, data) == []


# Valid Rego that a careless analysis would call broken: each must build.
VALID = {
    "output argument": "n_agents := n if { count(input.agents, n) }",
    "relation builtin": 'paths contains p if { walk(input, [p, v]); v == "smb" }',
    "else chain": "size := s if { s := input.action.size_bytes } else := 0",
    "unification": "pair := [a, b] if { [a, b] = [input.kind, 1] }",
    "object pattern": 'proto := p if { {"protocol": p} := input.action }',
    "negated iteration": "quiet if { not input.agents[_].loud }",
    "some declaration": "first := x if { some x; input.agents[0].id = x }",
    "comprehension scope": "ids := [a.id | some a in input.agents; a.priority > limit] if { limit := 3 }",
    "every": "all_named if { every a in input.agents { a.id != \"\" } }",
    "data.json document": "restricted if { input.resource.port in data.agentgov.net.restricted_ports }",
    "function and output": "twice(x) := x * 2\n\nfour if { twice(2, y); y == 4 }",
    "print is variadic": 'noisy if { print("a", 1, input.kind) }',
    "rule shadowed by a local": "limit := 3\n\nbig if { limit := 5; input.action.size_bytes > limit }",
    "multi-part rule": 'caps.max := 3\n\nover if { count(input.agents) > caps.max }',
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_rego_builds(name: str) -> None:
    base = worktree_snapshot(PROJECT)
    files = {p: b for p, b in base.files.items() if p.startswith("policies/")}
    files["policies/rules/checked.rego"] = (HEAD + VALID[name] + "\n").encode()
    compile_policy_set(Snapshot(revision=None, files=files))


def test_a_library_function_called_through_an_import(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policies/lib/ports.rego", "package agentgov.lib.ports\n\nimport rego.v1\n\n"
          "restricted(port) if port in data.agentgov.net.restricted_ports\n")
    write(policy_repo, "policies/rules/checked.rego", HEAD.replace("import rego.v1\n", "import rego.v1\n"
          "import data.agentgov.lib.ports\n") + 'decisions contains {"id": "x", "action": "deny"} if {\n'
          "\tports.restricted(input.resource.port)\n}\n")
    assert check(policy_repo, capsys)[0] == 0
    write(policy_repo, "policies/rules/checked.rego", HEAD.replace("import rego.v1\n", "import rego.v1\n"
          "import data.agentgov.lib.ports\n") + 'decisions contains {"id": "x", "action": "deny"} if {\n'
          "\tports.is_restricted(input.resource.port)\n}\n")
    status, text = check(policy_repo, capsys)
    assert status == 1 and "undefined_function: call to undefined function ports.is_restricted" in text


def test_the_builtin_table_knows_what_the_policies_use() -> None:
    table = builtin_arities()
    assert table["object.get"] == 3 and table["count"] == 1 and table["numbers.range"] == 2
    assert table["print"] == -1 and table["time.now_ns"] == 0 and "http.send" in table


def test_a_rule_that_reads_the_decision_is_recursive_through_main(policy_repo: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """main.rego reads every rule module's document, so a rule reading main's decision is a cycle."""
    write(policy_repo, "policies/rules/checked.rego", HEAD + 'decisions contains {"id": "x", "action": "deny"} if {\n'
          '\tdata.agentgov.main.decision.action == "route"\n}\n')
    status, text = check(policy_repo, capsys)
    assert status == 1 and "error: recursion: " in text
    assert "(policies/main.rego:" in text and "data.agentgov.rules.checked.decisions (policies/rules/checked.rego:10)" in text
