"""Compile a snapshot's policy set once and evaluate inputs on it: the only importer of regopy.

A decision evaluates only the rule modules that can apply to its input: modules are
indexed by the literal `input.<path> == …` tests of their `decisions` bodies, and one
program is compiled (lazily, then cached) per combination of index values seen. A policy
set grown by hundreds of drafted rules stays as fast as the rules one input can reach.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from policyctl.engine.modules import MAIN_PACKAGE, RegoModule, parse_module
from policyctl.errors import EvaluationError, PolicyCompileError, Problem
from policyctl.model.values import tag
from policyctl.repo import Snapshot

ENTRYPOINT = "agentgov/main/decision"
QUERY = "x = data.agentgov.main.decision"
RESERVED_DATA = ("meta", "rules", "main", "lib")
MAX_INDEX_PATHS = 4
MAX_PROGRAMS = 256


class Program(Protocol):
    """A compiled policy set that answers `agentgov/main/decision` for an input."""

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]: ...


class Engine(Protocol):
    """A Rego implementation: compile modules and data into a Program."""

    name: str

    def compile(self, modules: list[RegoModule], data: dict[str, Any]) -> Program: ...


# --------------------------------------------------------------------------- regopy


def _rego_problems(text: str, sources: dict[str, str]) -> list[Problem]:
    """Turn rego-cpp's S-expression error text into Problems with file:line:col."""
    problems: list[Problem] = []
    for m in re.finditer(r"\(error\b", text):
        i = m.end()
        file, line, col = "<policy set>", None, None
        loc = re.match(r"\s+(\d+):", text[i:])
        if loc:
            n = int(loc.group(1))
            start = i + loc.end()
            file = text[start:start + n]
            rest = re.match(r"\|(\d+)\|(\d+)", text[start + n:])
            if rest and file in sources:
                line, col = _line_col(sources[file], int(rest.group(1)))
        msg = re.compile(r"\(errormsg\s+(\d+):").search(text, i)
        message = text[msg.end():msg.end() + int(msg.group(1))] if msg else text[i:i + 200].strip()
        problems.append(Problem(file, message, code="rego_compile_error", line=line, column=col))
    if not problems:
        problems.append(Problem("<policy set>", text.strip()[:500], code="rego_compile_error"))
    return problems


def _line_col(source: str, byte_offset: int) -> tuple[int, int]:
    raw = source.encode("utf-8")
    line = raw.count(b"\n", 0, byte_offset) + 1
    col = byte_offset - (raw.rfind(b"\n", 0, byte_offset) + 1) + 1
    return line, col


def _eval_error(text: str) -> EvaluationError:
    msg = re.search(r"\(errormsg\s+(\d+):", text)
    message = text[msg.end():msg.end() + int(msg.group(1))] if msg else text.strip()[:300]
    code_m = re.search(r"\(rego-errorcode\s+\d+:([\w_]+)", text) or re.search(r"\b(eval_[a-z_]+|rego_[a-z_]+_error)\b", text)
    code = code_m.group(1) if code_m else "eval_error"
    return EvaluationError(message, code=code)


class RegopyProgram:
    """A compiled regopy bundle; evaluation uses one runner interpreter per thread."""

    def __init__(self, bundle: Any) -> None:
        self._bundle = bundle
        self._local = threading.local()

    def _runner(self) -> Any:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            from regopy import Interpreter, LogLevel

            runner = Interpreter()
            runner.log_level = LogLevel.NONE
            runner.strict_built_in_errors = True
            self._local.runner = runner
        return runner

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]:
        from regopy import Input, RegoError
        from regopy import rego_shared as rs

        runner = self._runner()
        try:
            runner.set_input(Input(input))
            out = rs.rego_bundle_query(runner._impl, self._bundle._impl)
        except (RegoError, TypeError, ValueError, OverflowError) as exc:
            raise EvaluationError(f"cannot evaluate: {exc}", code="eval_error") from exc
        try:
            ok = rs.rego_output_ok(out)
            text = rs.rego_output_string(out)
        finally:
            rs.rego_free_output(out)
        # rego-cpp reports some runtime errors with ok == True and an "(error …)" text.
        if not ok or text.lstrip().startswith("(error"):
            raise _eval_error(text)
        if text == "undefined":
            raise EvaluationError("the policy set produced no decision (undefined)", code="undefined_decision")
        result = json.loads(text)
        if isinstance(result, list):
            result = result[0] if result else {}
        value = result.get("bindings", {}).get("x")
        if not isinstance(value, dict):
            raise EvaluationError("the policy set produced no decision (undefined)", code="undefined_decision")
        return value


class RegopyEngine:
    """Microsoft's rego-cpp through regopy: build once, query the bundle per decision."""

    name = "regopy"

    def compile(self, modules: list[RegoModule], data: dict[str, Any]) -> Program:
        from regopy import Interpreter, LogLevel, RegoError

        sources = {m.file: m.text for m in modules}
        builder = Interpreter()
        builder.log_level = LogLevel.NONE
        try:
            for module in modules:
                builder.add_module(module.file, module.text)
            builder.add_data(data)
            bundle = builder.build(QUERY, [ENTRYPOINT])
        except RegoError as exc:
            problems = _rego_problems(str(exc), sources)
            raise PolicyCompileError(_summary(problems), problems=problems) from exc
        if not bundle.ok():
            problems = [Problem("<policy set>", "the bundle did not build", code="rego_compile_error")]
            raise PolicyCompileError(_summary(problems), problems=problems)
        return RegopyProgram(bundle)


ENGINES: dict[str, type[RegopyEngine]] = {"regopy": RegopyEngine}


def _summary(problems: list[Problem]) -> str:
    head = str(problems[0])
    return head if len(problems) == 1 else f"{head} (and {len(problems) - 1} more)"


# --------------------------------------------------------------------------- policy set


@dataclass
class PolicySet:
    """The compiled policies of one revision."""

    revision: str | None
    modules: list[RegoModule]
    data: dict[str, Any]
    engine: Engine
    index_paths: tuple[str, ...] = ()
    _literals: dict[str, frozenset[tuple[str, Any]]] = field(default_factory=dict)
    _programs: OrderedDict[tuple[Any, ...], Program] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rule_modules(self) -> list[RegoModule]:
        return [m for m in self.modules if m.is_rule]

    def module_by_name(self, name: str) -> RegoModule | None:
        return next((m for m in self.modules if m.is_rule and m.name == name), None)

    def key(self, input: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for path in self.index_paths:
            value: Any = input
            for part in path.split("."):
                if isinstance(value, dict) and part in value:
                    value = value[part]
                else:
                    value = _MISSING
                    break
            t = tag(value) if value is not _MISSING else ("-", None)
            out.append(t if t in self._literals[path] else ("-", None))
        return tuple(out)

    def program_for(self, input: dict[str, Any]) -> Program:
        key = self.key(input)
        program = self._programs.get(key)
        if program is not None:
            return program
        with self._lock:
            program = self._programs.get(key)
            if program is None:
                program = self._compile_for(dict(zip(self.index_paths, key, strict=True)))
                self._programs[key] = program
                if len(self._programs) > MAX_PROGRAMS:
                    self._programs.popitem(last=False)
        return program

    def _compile_for(self, key: dict[str, tuple[str, Any]]) -> Program:
        chosen = [m for m in self.modules if not m.is_rule or m.applies(key)]
        return self.engine.compile(chosen, with_meta(self.data, chosen))

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]:
        """The raw decision object of agentgov.main.decision; raises EvaluationError."""
        return self.program_for(input).evaluate(input)

    def applicable(self, input: dict[str, Any]) -> list[RegoModule]:
        key = dict(zip(self.index_paths, self.key(input), strict=True))
        return [m for m in self.rule_modules if m.applies(key)]


_MISSING = object()


def with_meta(data: dict[str, Any], modules: Iterable[RegoModule]) -> dict[str, Any]:
    """The data document plus agentgov.meta.modules: each rule module's mode and file."""
    agentgov = dict(data.get("agentgov", {}))
    agentgov["meta"] = {"modules": {m.name: {"mode": m.mode, "file": m.file, "title": m.title}
                                    for m in modules if m.is_rule}}
    return {**data, "agentgov": agentgov}


def load_modules(snapshot: Snapshot) -> tuple[list[RegoModule], list[Problem]]:
    modules: list[RegoModule] = []
    problems: list[Problem] = []
    for path in snapshot.paths("policies/", ".rego"):
        try:
            text = snapshot.text(path)
        except Exception as exc:  # noqa: BLE001 - reported as a problem of that file
            problems.append(Problem(path, str(exc), code="encoding"))
            continue
        module, found = parse_module(path, text)
        problems.extend(found)
        if module is not None:
            modules.append(module)
    names = Counter(m.package for m in modules)
    for module in modules:
        if names[module.package] > 1:
            others = [m.file for m in modules if m.package == module.package and m is not module]
            problems.append(Problem(module.file, f"package {module.package} is also declared in {', '.join(others)}",
                                    code="duplicate_package"))
    if not any(m.package == MAIN_PACKAGE for m in modules):
        problems.append(Problem("policies/main.rego", "no module declares package agentgov.main (the entrypoint)",
                                code="missing_main"))
    return modules, problems


def load_data(snapshot: Snapshot) -> tuple[dict[str, Any], list[Problem]]:
    """policies/<dir>/data.json -> data.agentgov.<dir…>; policies/data.json -> data.agentgov."""
    agentgov: dict[str, Any] = {}
    problems: list[Problem] = []
    for path in snapshot.paths("policies/", "data.json"):
        if not path.endswith("/data.json"):
            continue
        try:
            value = json.loads(snapshot.files[path])
        except (ValueError, UnicodeDecodeError) as exc:
            line = getattr(exc, "lineno", None)
            problems.append(Problem(path, f"not JSON ({getattr(exc, 'msg', exc)})", code="bad_json", line=line))
            continue
        parts = path.split("/")[1:-1]
        if not isinstance(value, dict):
            problems.append(Problem(path, "data.json must hold a JSON object", code="bad_data"))
            continue
        if parts and parts[0] in RESERVED_DATA:
            problems.append(Problem(path, f"data.agentgov.{parts[0]} is reserved for packages; move this file",
                                    code="bad_data"))
            continue
        if not parts and any(k in RESERVED_DATA for k in value):
            problems.append(Problem(path, f"keys {', '.join(RESERVED_DATA)} are reserved under data.agentgov",
                                    code="bad_data"))
            continue
        node = agentgov
        for part in parts:
            node = node.setdefault(part, {})
        _merge(node, value, path, problems)
    return {"agentgov": agentgov}, problems


def _merge(into: dict[str, Any], value: dict[str, Any], path: str, problems: list[Problem]) -> None:
    for k, v in value.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, dict):
            _merge(into[k], v, path, problems)
        elif k in into:
            problems.append(Problem(path, f"key {k!r} is already defined by another data.json", code="bad_data"))
        else:
            into[k] = v


def _choose_index(modules: list[RegoModule]) -> tuple[tuple[str, ...], dict[str, frozenset[tuple[str, Any]]]]:
    """The input paths most rule bodies test by literal, and the literals seen for each."""
    counts: Counter[str] = Counter()
    literals: dict[str, set[tuple[str, Any]]] = {}
    for module in modules:
        for body in module.bodies or []:
            for path, allowed in body.items():
                counts[path] += 1
                literals.setdefault(path, set()).update(allowed)
    paths = tuple(sorted(p for p, _ in counts.most_common(MAX_INDEX_PATHS)))
    return paths, {p: frozenset(literals[p]) for p in paths}


def compile_policy_set(snapshot: Snapshot, engine: Engine | None = None) -> PolicySet:
    """Compile every module of the snapshot; raise PolicyCompileError listing every problem.

    The whole set is compiled once to prove it builds together; each module that fails is
    also compiled alone with main.rego, so every broken file is named, not just the first.
    """
    engine = engine or RegopyEngine()
    modules, problems = load_modules(snapshot)
    data, data_problems = load_data(snapshot)
    problems.extend(data_problems)
    if not problems:
        try:
            engine.compile(modules, with_meta(data, modules))
        except PolicyCompileError as exc:
            problems.extend(_isolate(engine, modules, data, exc.problems))
    if problems:
        raise PolicyCompileError(_summary(problems), problems=problems)
    paths, literals = _choose_index(modules)
    return PolicySet(revision=snapshot.revision, modules=modules, data=data, engine=engine,
                     index_paths=paths, _literals=literals)


def _isolate(engine: Engine, modules: list[RegoModule], data: dict[str, Any],
             first: list[Problem]) -> list[Problem]:
    main = [m for m in modules if m.package == MAIN_PACKAGE or m.package.startswith("agentgov.lib.")]
    found: list[Problem] = []
    for module in modules:
        if module in main:
            continue
        try:
            engine.compile([*main, module], with_meta(data, [module]))
        except PolicyCompileError as exc:
            found.extend(exc.problems)
    if not found:
        return first  # the modules compile alone: the failure is in how they combine
    named = {(p.file, p.line) for p in found}
    return found + [p for p in first if (p.file, p.line) not in named and p.file not in {f.file for f in found}]


def check_policies(snapshot: Snapshot, engine: Engine | None = None) -> tuple[PolicySet | None, list[Problem]]:
    try:
        return compile_policy_set(snapshot, engine), []
    except PolicyCompileError as exc:
        return None, exc.problems
