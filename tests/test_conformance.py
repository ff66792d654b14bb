"""OPA's conformance cases still pass on each engine wherever they passed before (the list only grows)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from policyctl.engine.conformance import (
    ENGINES,
    Case,
    CaseResult,
    case_roots,
    load_cases,
    run_cases,
)

PROJECT = Path(__file__).resolve().parent.parent
PASS_LIST = PROJECT / "bench" / "results" / "conformance_pass.json"
REGENERATE = "python bench/conformance.py"


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return load_cases(case_roots(PROJECT))


@pytest.fixture(scope="module")
def recorded() -> dict[str, list[str]]:
    return json.loads(PASS_LIST.read_text())


@pytest.fixture(scope="module")
def results(cases: list[Case]) -> dict[str, dict[str, CaseResult]]:
    return {engine: {r.note: r for r in run_cases(engine, cases, processes=2)} for engine in ENGINES}


def test_the_project_ships_cases_of_every_governance_topic(cases: list[Case]) -> None:
    own = load_cases([PROJECT / "conformance" / "opa" / "cases"])
    topics = {c.topic for c in own}
    for topic in ("comparisonexpr", "aggregates", "strings", "comprehensions", "withkeyword",
                  "elsekeyword", "defaultkeyword", "negation", "functions", "time", "netcidrcontains"):
        assert topic in topics, f"no {topic} cases under conformance/opa/cases"
    assert len({c.note for c in cases}) == len(cases), "case notes must be unique"


@pytest.mark.parametrize("engine", ENGINES)
def test_recorded_passes_still_pass(engine: str, results: dict[str, dict[str, CaseResult]],
                                    recorded: dict[str, list[str]]) -> None:
    got = results[engine]
    was = set(recorded[engine])
    # A note absent here belongs to a case folder this checkout does not have (the shared one).
    regressed = sorted(n for n in was if n in got and not got[n].passed)
    newly = sorted(n for n, r in got.items() if r.passed and n not in was)
    hint = f"{len(newly)} case(s) newly pass on {engine}; record them with `{REGENERATE}`" if newly else ""
    assert not regressed, (
        f"{len(regressed)} case(s) that passed on {engine} now fail:\n"
        + "\n".join(f"  {n}: {got[n].reason}" for n in regressed) + (f"\n{hint}" if hint else ""))
    if newly:
        warnings.warn(hint, stacklevel=1)


def test_a_divergence_between_the_engines_is_visible(cases: list[Case], recorded: dict[str, list[str]]) -> None:
    """A case one engine passes and the other fails, by the lists, still splits them when run now."""
    by_note = {c.note: c for c in cases}
    a, b = ENGINES
    split = [(n, a, b) for n in sorted(set(recorded[a]) - set(recorded[b])) if n in by_note]
    split += [(n, b, a) for n in sorted(set(recorded[b]) - set(recorded[a])) if n in by_note]
    assert split, "the recorded pass lists show no divergence between the engines"
    note, passes, fails = split[0]
    ok = run_cases(passes, [by_note[note]], processes=1)[0]
    bad = run_cases(fails, [by_note[note]], processes=1)[0]
    assert ok.passed, f"{note} should pass on {passes}: {ok.reason}"
    assert not bad.passed and bad.reason, f"{note} should fail on {fails} with a reason"


def _write_cases(folder: Path, cases: list[dict[str, object]]) -> None:
    folder.mkdir(parents=True)
    folder.joinpath("cases.yaml").write_text(yaml.safe_dump({"cases": cases}))


ORDINARY = {"note": "hostile/ordinary case after it", "query": "data.t.p = x",
            "modules": ["package t\n\np := 1 + 1\n"], "want_result": [{"x": 2}]}


def test_a_crash_is_that_case_s_failure_and_the_run_goes_on(tmp_path: Path) -> None:
    """Marshalling input nested 20,000 deep segfaults rego-cpp: a crash for that case, the next case still runs."""
    deep = "[" * 20000 + "]" * 20000
    _write_cases(tmp_path / "hostile", [
        {"note": "hostile/deep input", "query": "data.t.p = x", "modules": ["package t\n\np := count(json.marshal(input))\n"],
         "input_term": deep, "want_result": [{"x": 40000}]},
        ORDINARY])
    results = run_cases("regopy", load_cases([tmp_path]), processes=1)
    assert [r.note for r in results] == ["hostile/deep input", "hostile/ordinary case after it"]
    assert results[0].reason.startswith("crash: SIG"), results[0].reason
    assert results[1].passed, results[1].reason


def test_a_hang_is_a_timeout_and_the_run_goes_on(tmp_path: Path) -> None:
    """rego-cpp's backtracking regex takes minutes on 40 characters: the deadline ends that case only."""
    _write_cases(tmp_path / "hostile", [
        {"note": "hostile/backtracking regex", "query": "data.t.p = x",
         "modules": ['package t\n\ns := concat("", array.concat(["a" | numbers.range(1, 40)[_]], ["b"]))\n\n'
                     'p := regex.match("^(a+)+$", s)\n'],
         "want_result": [{"x": False}]},
        ORDINARY])
    results = run_cases("regopy", load_cases([tmp_path]), timeout_s=1.0, processes=1)
    assert results[0].reason.startswith("timeout"), results[0].reason
    assert results[1].passed, results[1].reason


def test_the_runner_works_without_the_shared_case_folder(tmp_path: Path) -> None:
    """A checkout with no ../shared/opa-conformance reads its own cases only, and runs them."""
    project = tmp_path / "checkout"
    _write_cases(project / "conformance" / "opa" / "cases" / "own", [ORDINARY])
    roots = case_roots(project)
    assert roots == [project / "conformance" / "opa" / "cases"]
    results = run_cases("regorus", load_cases(roots), processes=1)
    assert [(r.note, r.passed) for r in results] == [("hostile/ordinary case after it", True)]
