"""Run an engine that can kill its own process (regopy) in a child process first, so an engine
abort becomes an error naming the file instead of an `Aborted` and exit 134.

rego-cpp reports some internal failures by throwing through `std::terminate` (SIGABRT) or by
a segfault, and nothing in the process survives that. A child compiles the policy set as
`compile_policy_set` would, and evaluates what the command will evaluate, reporting each
step over its stdout; when it dies, the last step says what it was doing, and a second
child compiles growing sets of modules (entrypoint, libraries, rules, tests) until the
engine dies again: the module added last is the one to name. Since the steps are
deterministic, the caller can then do the same work in its own process without risk.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

from policyctl.engine import (
    Engine,
    Program,
    compile_policy_set,
    engine_named,
    load_data,
    load_modules,
    with_meta,
)
from policyctl.engine.modules import LIB_PREFIX, MAIN_PACKAGE, TEST_SUFFIX, RegoModule
from policyctl.errors import PolicyCompileError, PolicyctlError, Problem
from policyctl.workers.oneshot import ChildRun, Report, run_in_child

# regorus turns a Rust panic into a Python exception; rego-cpp can take the process down.
ABORTING_ENGINES = frozenset({"regopy"})
MAX_CRASHES = 5  # modules named before the rest of the set is left unchecked
CRASH_CODE = "engine_crashed"


def can_abort(engine_name: str | None) -> bool:
    """True when the engine may kill the process that runs it, so its work needs a child first."""
    return engine_named(engine_name).name in ABORTING_ENGINES


# --------------------------------------------------------------------------- what the children do


class _Reporting:
    """An engine that reports the files of each compile before it starts (the child's breadcrumbs)."""

    def __init__(self, engine: Engine, report: Report) -> None:
        self.name = engine.name
        self._engine = engine
        self._report = report

    def compile(self, modules: list[RegoModule], data: dict[str, Any]) -> Program:
        self._report(("compile", [m.file for m in modules]))
        return self._engine.compile(modules, data)


def probe(report: Report, snapshot: Any, engine_name: str | None, inputs: list[dict[str, Any]],
          check_tests: bool) -> list[dict[str, Any]]:
    """Child: compile the snapshot as compile_policy_set does, then evaluate `inputs`; the problems found."""
    engine = _Reporting(engine_named(engine_name), report)
    try:
        policy_set = compile_policy_set(snapshot, engine, check_tests=check_tests)
    except PolicyCompileError as exc:
        return [p.to_dict() for p in exc.problems]
    for i, input in enumerate(inputs):
        report(("evaluate", i))
        with contextlib.suppress(PolicyctlError):  # the command itself reports it
            policy_set.evaluate(input)
    return []


def _rank(module: RegoModule) -> tuple[int, str]:
    """Entrypoint, libraries, rules, tests: each module joins only what it may depend on."""
    if module.is_test:
        return 3, module.file
    if module.package == MAIN_PACKAGE:
        return 0, module.file
    return (1 if module.package.startswith(LIB_PREFIX) else 2), module.file


def grow(report: Report, snapshot: Any, engine_name: str | None, files: list[str],
         inputs: list[dict[str, Any]]) -> None:
    """Child: compile ever larger sets of `files` (and evaluate `inputs` on each); the module added when
    the engine dies is the last one reported."""
    engine = engine_named(engine_name)
    modules, _ = load_modules(snapshot)
    data, _ = load_data(snapshot)
    chosen = sorted((m for m in modules if m.file in set(files)), key=_rank)
    for i, module in enumerate(chosen):
        report(module.file)
        prefix = chosen[:i + 1]
        try:
            program = engine.compile(prefix, with_meta(data, prefix))
            for input in inputs:
                program.evaluate(input)
        except PolicyctlError:
            continue  # an ordinary error: the probe reports it


# --------------------------------------------------------------------------- what the commands call


def crash_problems(snapshot: Any, engine_name: str | None, inputs: Sequence[dict[str, Any]] = (), *,
                   check_tests: bool = False, max_crashes: int = MAX_CRASHES) -> tuple[list[Problem], list[Problem]]:
    """The modules that kill the engine (one Problem each), and every other problem of the set.

    Each module found is taken out and the rest probed again, so `check` still lists what
    else is wrong; after `max_crashes` the rest is left unchecked.
    """
    crashes: list[Problem] = []
    current = snapshot
    for _ in range(max_crashes):
        run = run_in_child(probe, current, engine_name, list(inputs), check_tests)
        if run.died is None:
            return crashes, [Problem(**p) for p in run.result]
        crash = _name_culprit(current, engine_name, run, list(inputs))
        crashes.append(crash)
        if crash.file not in current.files:
            break
        current = dataclasses.replace(current, files={k: v for k, v in current.files.items() if k != crash.file})
    return crashes, []


def _name_culprit(snapshot: Any, engine_name: str | None, run: ChildRun, inputs: list[dict[str, Any]]) -> Problem:
    compiles = [step[1] for step in run.steps if isinstance(step, tuple) and step[0] == "compile"]
    evaluating = bool(run.steps) and isinstance(run.steps[-1], tuple) and run.steps[-1][0] == "evaluate"
    files = compiles[-1] if compiles else snapshot.paths("policies/", ".rego")
    search = run_in_child(grow, snapshot, engine_name, files, inputs if evaluating else [])
    culprit = search.steps[-1] if search.died and search.steps else "<policy set>"
    doing = "evaluating the input with this module" if evaluating else "compiling this module with the policy set"
    why = f" ({run.detail})" if run.detail else ""
    alone = "" if search.died else "; no single module reproduces it"
    return Problem(culprit, f"the Rego engine crashed ({run.died}) {doing}{why}{alone}: an engine bug; "
                   "rewrite the construct, or use another engine (--engine regorus)", code=CRASH_CODE)


def policy_problems(snapshot: Any, engine_name: str | None = None) -> list[Problem]:
    """What `policyctl check` reports of the Rego: every compile problem, test modules included.

    With an engine that can abort its process, all of it runs in child processes. A test
    module that crashes the engine is a warning: it is never served, and `policyctl test
    --engine regorus` can still run it; a served module that does is an error.
    """
    engine = engine_named(engine_name)
    if engine.name not in ABORTING_ENGINES:
        try:
            compile_policy_set(snapshot, engine, check_tests=True)
        except PolicyCompileError as exc:
            return exc.problems
        return []
    crashes, problems = crash_problems(snapshot, engine.name, check_tests=True)
    for crash in crashes:
        if crash.file.endswith(TEST_SUFFIX):
            crash.severity = "warning"
            crash.message += "; policyctl test --engine regorus runs it"
    return crashes + problems


def require_no_crash(snapshot: Any, engine_name: str | None = None, inputs: Sequence[dict[str, Any]] = ()) -> None:
    """Raise PolicyCompileError naming each module that kills the engine; nothing to do for a safe engine."""
    if not can_abort(engine_name):
        return
    crashes, _ = crash_problems(snapshot, engine_name, inputs, max_crashes=1)
    if crashes:
        more = f" (and {len(crashes) - 1} more)" if len(crashes) > 1 else ""
        raise PolicyCompileError(f"{crashes[0].file}: {crashes[0].message}{more}", problems=crashes)

