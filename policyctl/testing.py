"""Rego unit tests as `opa test` runs them: the `test_*` rules of `policies/**/*_test.rego`.

A test module is compiled with the policy set it tests (its rules, libraries, data and the
`data.agentgov.meta` policyctl builds) and is never served. Each `test_*` rule passes when
it is true, fails when it is false or undefined, and errors when its evaluation does;
`todo_test_*` rules are skipped. With an engine that can kill its process (regopy), the
tests run in a child process: a crash is an ERROR of the test that caused it, or an error
naming the module when the set itself cannot be compiled.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policyctl.engine import PolicySet, compile_policy_set, engine_named, load_modules, with_meta
from policyctl.engine.guarded import CRASH_CODE, can_abort, crash_problems
from policyctl.engine.modules import RULES_PREFIX, TEST_SUFFIX, RegoModule
from policyctl.errors import EvaluationError, PolicyCompileError, PolicyctlError, Problem
from policyctl.repo import Snapshot
from policyctl.workers.oneshot import Report, run_in_child

PASS, FAIL, ERROR, SKIP = "PASS", "FAIL", "ERROR", "SKIPPED"
MAX_CRASHES = 20  # tests that may crash the engine before the rest are given up
# A rule head at the start of a line: `test_x if`, `test_x {`, `test_x :=`, `test_x = …` (not a function).
_TEST_RULE = re.compile(r"^((?:todo_)?test_\w*)(?=\s*(?:if\b|\{|:=|=|contains\b|$))", re.M)


class NoTests(PolicyctlError):
    """No test rule was found where the command looked."""

    code = "no_tests"


@dataclass(frozen=True)
class TestCase:
    """One `test_*` rule of a test module."""

    file: str
    package: str
    name: str
    line: int

    @property
    def ref(self) -> str:
        return f"data.{self.package}.{self.name}"

    @property
    def skipped(self) -> bool:
        return self.name.startswith("todo_")


@dataclass
class TestResult:
    case: TestCase
    status: str
    duration_ms: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.case.file, "line": self.case.line, "package": self.case.package,
                "name": self.case.name, "status": self.status, "duration_ms": round(self.duration_ms, 3),
                "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestResult:
        case = TestCase(d["file"], d["package"], d["name"], d["line"])
        return cls(case, d["status"], d["duration_ms"], d["message"])


@dataclass
class TestReport:
    """Every test run, in file then line order, and where they ran."""

    revision: str | None
    engine: str
    results: list[TestResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return not self.count(FAIL) and not self.count(ERROR)

    def to_dict(self) -> dict[str, Any]:
        counts = {s.lower(): self.count(s) for s in (PASS, FAIL, ERROR, SKIP)}
        return {"revision": self.revision, "engine": self.engine, "ok": self.ok,
                "counts": {"total": len(self.results), **counts}, "results": [r.to_dict() for r in self.results]}


# --------------------------------------------------------------------------- discovery


def discover(modules: Sequence[RegoModule], paths: Sequence[str] = (), pattern: str | None = None) -> list[TestCase]:
    """The test rules of the test modules under `paths` (all when empty) whose ref matches `pattern`.

    A rule defined by several bodies is one test, at its first line, as in OPA.
    """
    wanted = [p.rstrip("/") for p in paths]
    regex = re.compile(pattern) if pattern else None
    cases: list[TestCase] = []
    for module in sorted(modules, key=lambda m: m.file):
        if not module.is_test or (wanted and not any(p in ("", ".") or module.file == p
                                                     or module.file.startswith(p + "/") for p in wanted)):
            continue
        seen: set[str] = set()
        for m in _TEST_RULE.finditer(module.text):
            name = m.group(1)
            case = TestCase(module.file, module.package, name, module.text.count("\n", 0, m.start()) + 1)
            if name in seen or (regex is not None and not regex.search(case.ref)):
                continue
            seen.add(name)
            cases.append(case)
    return cases


# --------------------------------------------------------------------------- evaluation, per engine

# The served Program answers only agentgov.main.decision, so tests query their rules through
# the libraries directly: value of the rule, or UNDEFINED; EvaluationError when it errs.
UNDEFINED = object()
Evaluate = Callable[[str], Any]


def _regorus(modules: list[RegoModule], data: dict[str, Any]) -> Evaluate:
    import regorus

    engine = regorus.Engine()
    engine.set_rego_v0(False)
    for module in modules:
        engine.add_policy(module.file, module.text)
    engine.add_data_json(json.dumps(data))

    def evaluate(ref: str) -> Any:
        try:
            value = engine.eval_rule(ref)
        except RuntimeError as exc:
            raise EvaluationError(_regorus_message(str(exc))) from exc
        return UNDEFINED if value is None else value

    return evaluate


def _regorus_message(text: str) -> str:
    """`file:line:col: message` from Regorus's error text, without its source excerpt and backtrace."""
    text = text.split("Stack backtrace:", 1)[0]
    at = re.search(r"-->\s*([^\n]+?:\d+:\d+)", text)
    msg = re.search(r"^error:\s*(.*)$", text, re.M)
    message = msg.group(1).strip() if msg else text.strip()[:300]
    return f"{at.group(1)}: {message}" if at else message


def _regopy(modules: list[RegoModule], data: dict[str, Any]) -> Evaluate:
    from regopy import Interpreter, LogLevel, RegoError

    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE
    interpreter.strict_built_in_errors = True  # as the served program evaluates
    for module in modules:
        interpreter.add_module(module.file, module.text)
    interpreter.add_data(data)

    def evaluate(ref: str) -> Any:
        try:
            out = interpreter.query(f"x = {ref}")
        except RegoError as exc:
            raise EvaluationError(str(exc)[:300]) from exc
        text = str(out)
        if not out.ok() or text.lstrip().startswith(("(error", "<error")):
            raise EvaluationError("the evaluation failed (regopy gives no detail; --engine regorus names the "
                                  "cause)" if text.strip() == "<error>" else text.strip()[:300])
        if text.strip() == "undefined":
            return UNDEFINED
        result = json.loads(text)
        result = result[0] if isinstance(result, list) and result else result
        return result.get("bindings", {}).get("x", UNDEFINED) if isinstance(result, dict) else UNDEFINED

    return evaluate


RUNNERS: dict[str, Callable[[list[RegoModule], dict[str, Any]], Evaluate]] = {"regorus": _regorus, "regopy": _regopy}


def _result(case: TestCase, evaluate: Evaluate) -> TestResult:
    if case.skipped:
        return TestResult(case, SKIP)
    started = time.perf_counter()
    try:
        value = evaluate(case.ref)
    except EvaluationError as exc:
        message = exc.message
        if "recursion" in message and case.package.startswith(RULES_PREFIX):
            message += ("; agentgov.main reads every package under data.agentgov.rules, so a test there that "
                        "evaluates the decision depends on itself: move it to agentgov.lib.<name>_test")
        return TestResult(case, ERROR, _ms(started), message)
    if value is True:
        return TestResult(case, PASS, _ms(started))
    why = "undefined" if value is UNDEFINED else f"got {json.dumps(value)[:200]}, want true"
    return TestResult(case, FAIL, _ms(started), why)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


# --------------------------------------------------------------------------- running


def run_cases(report: Report, snapshot: Snapshot, engine_name: str, paths: Sequence[str], pattern: str | None,
              done: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Compile the set, then evaluate every selected test not in `done`, reporting each result as it comes.

    Raises PolicyCompileError when the set (tests included) does not compile, NoTests when
    nothing is selected. Runs in this process or, for an engine that can abort, in a child.
    """
    engine = engine_named(engine_name)
    report(("compile", None))
    policy_set = compile_policy_set(snapshot, engine, check_tests=True)
    cases = [c for c in discover(policy_set.tests, paths, pattern) if c.ref not in set(done)]
    if not cases and not done:
        raise NoTests(_no_tests(policy_set, paths, pattern))
    evaluate = RUNNERS[engine.name]([*policy_set.modules, *policy_set.tests], with_meta(policy_set.data,
                                                                                        policy_set.modules))
    out = []
    for case in cases:
        report(("test", case.ref))
        result = _result(case, evaluate).to_dict()
        report(("result", result))
        out.append(result)
    return out


def _no_tests(policy_set: PolicySet, paths: Sequence[str], pattern: str | None) -> str:
    where = ", ".join(paths) if paths else "policies/"
    if pattern and discover(policy_set.tests, paths):
        return f"no test under {where} matches --run {pattern!r}"
    return (f"no tests found under {where}: a test is a `test_` rule in a policies/**/*_test.rego module "
            "(see docs/testing.md)")


def run_tests(snapshot: Snapshot, *, engine_name: str | None = None, paths: Sequence[str] = (),
              pattern: str | None = None) -> TestReport:
    """Run the selected tests with the chosen engine; a test that crashes the engine is an ERROR."""
    name = engine_named(engine_name).name
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            from policyctl.errors import UsageError

            raise UsageError(f"--run {pattern!r} is not a regular expression ({exc})") from exc
    report = TestReport(snapshot.revision, name)
    if not can_abort(name):
        results = run_cases(lambda _: None, snapshot, name, paths, pattern)
    else:
        results = _run_in_children(snapshot, name, paths, pattern)
    report.results = sorted((TestResult.from_dict(r) for r in results), key=lambda r: (r.case.file, r.case.line))
    return report


def _run_in_children(snapshot: Snapshot, engine_name: str, paths: Sequence[str],
                     pattern: str | None) -> list[dict[str, Any]]:
    """run_cases in a child. After a crash, the test it was on is an ERROR, or, when a test module kills the
    engine as it compiles, each of its tests is; the rest run in a new child without them."""
    results: list[dict[str, Any]] = []
    selected = discover(load_modules(snapshot)[0], paths, pattern)
    current = snapshot
    for _ in range(MAX_CRASHES):
        done = [f"data.{r['package']}.{r['name']}" for r in results]
        run = run_in_child(run_cases, current, engine_name, list(paths), pattern, done)
        if run.died is None:
            return results + list(run.result)
        results += [step[1] for step in run.steps if step[0] == "result"]
        last = run.steps[-1] if run.steps else ("compile", None)
        if last[0] == "test":
            case = next(c for c in selected if c.ref == last[1])
            why = f" ({run.detail})" if run.detail else ""
            results.append(TestResult(case, ERROR, 0.0, f"the Rego engine crashed ({run.died}) evaluating this "
                                      f"test{why}: an engine bug; rewrite the test or use --engine regorus").to_dict())
            continue
        crashes, _ = crash_problems(current, engine_name, check_tests=True)
        served = [p for p in crashes if not p.file.endswith(TEST_SUFFIX)]
        if served or not crashes:  # the set itself kills the engine: nothing can be tested
            named = served or [Problem("<policy set>", f"the Rego engine crashed ({run.died}) compiling the policy "
                                       "set, and no module alone reproduces it (use --engine regorus)",
                                       code=CRASH_CODE)]
            raise PolicyCompileError(f"{named[0].file}: {named[0].message}", problems=named)
        for crash in crashes:
            results += [TestResult(c, ERROR, 0.0, crash.message).to_dict() for c in selected if c.file == crash.file]
        gone = {p.file for p in crashes}
        current = dataclasses.replace(current, files={k: v for k, v in current.files.items() if k not in gone})
    raise PolicyctlError(f"the Rego engine crashed on {MAX_CRASHES} tests; the rest were not run "
                         "(use --engine regorus)", code=CRASH_CODE)


# --------------------------------------------------------------------------- reports

RULE = "-" * 80


def pretty(report: TestReport, *, verbose: bool = False) -> str:
    """`opa test`'s text: results by file (failures and errors always, the rest with -v), then totals."""
    lines: list[str] = []
    shown = [r for r in report.results if verbose or r.status in (FAIL, ERROR)]
    for file in sorted({r.case.file for r in shown}):
        lines.append(f"{file}:")
        for r in (r for r in shown if r.case.file == file):
            timing = f" ({r.duration_ms:.1f}ms)" if r.status != SKIP else ""
            lines.append(f"{r.case.ref}: {r.status}{timing}")
            if r.message and r.status != PASS:
                lines.append(f"  {r.case.file}:{r.case.line}: {r.message}")
        lines.append("")
    total = len(report.results)
    if shown:
        lines.append(RULE)
    lines.append(f"PASS: {report.count(PASS)}/{total}")
    lines.extend(f"{s}: {report.count(s)}/{total}" for s in (FAIL, ERROR, SKIP) if report.count(s))
    return "\n".join(lines) + "\n"


def junit(report: TestReport) -> str:
    """JUnit XML as CI systems read it: one testsuite per test file, one testcase per test rule."""
    root = ET.Element("testsuites", _totals(report.results, name="policyctl test"))
    for file in sorted({r.case.file for r in report.results}):
        results = [r for r in report.results if r.case.file == file]
        suite = ET.SubElement(root, "testsuite", _totals(results, name=file))
        for r in results:
            case = ET.SubElement(suite, "testcase", {"name": r.case.ref, "classname": f"data.{r.case.package}",
                                                     "file": r.case.file, "line": str(r.case.line),
                                                     "time": f"{r.duration_ms / 1e3:.6f}"})
            if r.status == FAIL:
                ET.SubElement(case, "failure", {"message": r.message or "test failed"}).text = \
                    f"{r.case.file}:{r.case.line}: {r.case.ref}: {r.message}"
            elif r.status == ERROR:
                ET.SubElement(case, "error", {"message": r.message}).text = \
                    f"{r.case.file}:{r.case.line}: {r.case.ref}: {r.message}"
            elif r.status == SKIP:
                ET.SubElement(case, "skipped", {"message": "todo_ test"})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _totals(results: Sequence[TestResult], *, name: str) -> dict[str, str]:
    def n(status: str) -> str:
        return str(sum(1 for r in results if r.status == status))

    return {"name": name, "tests": str(len(results)), "failures": n(FAIL), "errors": n(ERROR), "skipped": n(SKIP),
            "time": f"{sum(r.duration_ms for r in results) / 1e3:.6f}"}


def count_tests(snapshot: Snapshot) -> int:
    """The test rules of the snapshot, found without compiling (what `policyctl check` counts)."""
    modules, _ = load_modules(snapshot)
    return len(discover(modules))
