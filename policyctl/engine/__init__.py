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
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from policyctl.engine.modules import MAIN_PACKAGE, RegoModule, parse_module
from policyctl.errors import EvaluationError, PolicyCompileError, Problem
from policyctl.model.values import tag
from policyctl.repo import Snapshot

ENTRYPOINT = "agentgov/main/decision"
QUERY = "x = data.agentgov.main.decision"
RESERVED_DATA = ("meta", "rules", "main", "lib")
MAX_INDEX_PATHS = 4
# Programs cached per revision: at least this many, and this many per rule module.
MIN_PROGRAMS = 256
PROGRAMS_PER_MODULE = 2
MAX_KEY_SETS = 65536


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


# --------------------------------------------------------------------------- regorus


_REGORUS_AT = re.compile(r"-->\s*(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+)")
_REGORUS_MSG = re.compile(r"^error:\s*(?P<msg>.*)$", re.M)


def _regorus_problem(text: str, fallback_file: str = "<policy set>", code: str = "rego_compile_error") -> Problem:
    """Regorus's `--> file:line:col … error: message` text (its stack backtrace dropped) as a Problem."""
    text = text.split("Stack backtrace:", 1)[0]
    at = _REGORUS_AT.search(text)
    msg = _REGORUS_MSG.search(text)
    message = msg.group("msg").strip() if msg else text.strip()[:300]
    if at:
        return Problem(at.group("file"), message, code=code, line=int(at.group("line")), column=int(at.group("col")))
    return Problem(fallback_file, message, code=code)


def _regorus_eval_error(text: str) -> EvaluationError:
    problem = _regorus_problem(text, code="eval_error")
    message = problem.message
    code = "eval_type_error" if re.search(r"\brequires\b.*\bGot\b|\bexpects?\b.*\bargument", message) else "eval_error"
    where = f" ({problem.file}:{problem.line})" if problem.line else ""
    return EvaluationError(message + where, code=code)


class _ThreadEngines(threading.local):
    """Each thread's Regorus engines, by program. A Regorus engine may only be used and dropped
    on the thread that made it, so a program never holds one itself: it is built here, per
    thread, and entries of programs that are gone are dropped by their own thread."""

    def __init__(self) -> None:
        self.engines: OrderedDict[int, tuple[weakref.ref[Any], Any]] = OrderedDict()

    def get(self, program: RegorusProgram) -> Any:
        entry = self.engines.get(id(program))
        if entry is not None and entry[0]() is program:
            self.engines.move_to_end(id(program))
            return entry[1]
        engine = program.build()
        self.engines[id(program)] = (weakref.ref(program), engine)
        if len(self.engines) > REGORUS_ENGINES_PER_THREAD:
            for key in [k for k, (ref, _) in self.engines.items() if ref() is None]:
                del self.engines[key]
            while len(self.engines) > REGORUS_ENGINES_PER_THREAD:
                self.engines.popitem(last=False)
        return engine


_THREAD_ENGINES = _ThreadEngines()
REGORUS_ENGINES_PER_THREAD = 4096


class RegorusProgram:
    """The sources and data of a compiled set; each thread evaluates on its own Regorus engine."""

    def __init__(self, sources: list[tuple[str, str]], data_json: str, rule: str) -> None:
        self._sources = sources
        self._data_json = data_json
        self._rule = rule

    def build(self) -> Any:
        import regorus

        engine = regorus.Engine()
        engine.set_rego_v0(False)
        for file, text in self._sources:
            try:
                engine.add_policy(file, text)
            except RuntimeError as exc:
                problem = _regorus_problem(str(exc), file)
                raise PolicyCompileError(str(problem), problems=[problem]) from exc
        engine.add_data_json(self._data_json)
        return engine

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]:
        engine = _THREAD_ENGINES.get(self)
        try:
            engine.set_input_json(orjson.dumps(input).decode())
            value = engine.eval_rule(self._rule)
        except (RuntimeError, ValueError, TypeError, OverflowError, orjson.JSONEncodeError) as exc:
            raise _regorus_eval_error(str(exc)) from exc
        except BaseException as exc:
            # a Rust panic (strings.count(s, "") in 0.13.0) arrives as pyo3's PanicException,
            # a BaseException: it fails this decision, never the process
            if type(exc).__name__ != "PanicException":
                raise
            raise EvaluationError(f"the Regorus engine panicked: {str(exc)[:200]}", code="eval_engine_panic") from exc
        if not isinstance(value, dict):
            raise EvaluationError("the policy set produced no decision (undefined)", code="undefined_decision")
        return value


class RegorusEngine:
    """Microsoft's Regorus (Rust) through the pinned `gordon-to-regorus` wheel.

    OPA's type order for comparisons, linear-time regex (Rust's `regex` crate), and an
    `opa.runtime()` without the process environment."""

    name = "regorus"

    def compile(self, modules: list[RegoModule], data: dict[str, Any]) -> Program:
        program = RegorusProgram([(m.file, m.text) for m in modules], orjson.dumps(data).decode(),
                                 "data." + ENTRYPOINT.replace("/", "."))
        _THREAD_ENGINES.get(program)  # parse now: syntax errors surface at build, on this thread
        return program


EngineClass = type[RegopyEngine] | type[RegorusEngine]
ENGINES: dict[str, EngineClass] = {"regopy": RegopyEngine, "regorus": RegorusEngine}
DEFAULT_ENGINE = "regorus"


ENGINE_ENV = "POLICYCTL_ENGINE"


def engine_named(name: str | None = None) -> Engine:
    """The engine of that name; None gives $POLICYCTL_ENGINE (which `--engine` sets for a
    command and its worker processes) or the default. UsageError for an unknown name."""
    import os

    from policyctl.errors import UsageError

    name = name or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return ENGINES[name]()


def _summary(problems: list[Problem]) -> str:
    head = str(problems[0])
    return head if len(problems) == 1 else f"{head} (and {len(problems) - 1} more)"


# --------------------------------------------------------------------------- policy set


@dataclass
class PolicySet:
    """The compiled policies of one revision.

    A decision runs on a program holding main.rego, the libraries and only the rule modules
    that can apply to its input. Programs are cached by that *set of modules*, not by the
    combination of index values: traffic over a thousand key combinations still reaches
    about as many distinct sets as there are rule modules, so the cache is sized from the
    module count and never thrashes on traffic. Which modules apply is found through an
    inverted index (one bucket per anchor literal), so it costs what the candidates cost,
    not a scan of every module.
    """

    revision: str | None
    modules: list[RegoModule]
    data: dict[str, Any]
    engine: Engine
    index_paths: tuple[str, ...] = ()
    # test modules (*_test.rego): compiled with the set by check and `policyctl test`, never served
    tests: list[RegoModule] = field(default_factory=list)
    _literals: dict[str, frozenset[tuple[str, Any]]] = field(default_factory=dict)
    _programs: OrderedDict[frozenset[str], Program] = field(default_factory=OrderedDict)
    _sets: OrderedDict[tuple[Any, ...], frozenset[str]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    compiles: int = 0

    def __post_init__(self) -> None:
        self._rules = [m for m in self.modules if m.is_rule]
        self._base = [m for m in self.modules if not m.is_rule]
        self._by_name = {m.name: m for m in self._rules}
        self.capacity = max(MIN_PROGRAMS, PROGRAMS_PER_MODULE * len(self._rules))
        self._build_index()

    def _build_index(self) -> None:
        self._indexed = self.index_paths
        self._sets.clear()
        self._always: list[RegoModule] = []
        self._buckets: dict[tuple[str, tuple[str, Any]], list[RegoModule]] = {}
        for module in self._rules:
            anchors = _anchors(module, self.index_paths)
            if anchors is None:
                self._always.append(module)
                continue
            for anchor in anchors:
                bucket = self._buckets.setdefault(anchor, [])
                if not bucket or bucket[-1] is not module:
                    bucket.append(module)

    @property
    def rule_modules(self) -> list[RegoModule]:
        return list(self._rules)

    def module_by_name(self, name: str) -> RegoModule | None:
        return self._by_name.get(name)

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

    def names_for(self, key: tuple[Any, ...]) -> frozenset[str]:
        """The names of the rule modules that can apply to inputs with these index values."""
        if self._indexed != self.index_paths:
            with self._lock:
                self._build_index()
        names = self._sets.get(key)
        if names is not None:
            return names
        by_path = dict(zip(self.index_paths, key, strict=True))
        seen: set[str] = set()
        for path, value in by_path.items():
            for module in self._buckets.get((path, value), ()):
                if module.name not in seen and module.applies(by_path):
                    seen.add(module.name)
        seen.update(m.name for m in self._always if m.applies(by_path))
        names = frozenset(seen)
        with self._lock:
            self._sets[key] = names
            while len(self._sets) > MAX_KEY_SETS:
                self._sets.popitem(last=False)
        return names

    def program_for(self, input: dict[str, Any]) -> Program:
        names = self.names_for(self.key(input))
        program = self._programs.get(names)
        if program is not None:
            return program
        with self._lock:
            program = self._programs.get(names)
            if program is None:
                chosen = self._base + [m for m in self._rules if m.name in names]
                program = self.engine.compile(chosen, with_meta(self.data, chosen))
                self.compiles += 1
                self._programs[names] = program
                while len(self._programs) > self.capacity:
                    self._programs.popitem(last=False)
        return program

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]:
        """The raw decision object of agentgov.main.decision; raises EvaluationError."""
        return self.program_for(input).evaluate(input)

    def applicable(self, input: dict[str, Any]) -> list[RegoModule]:
        names = self.names_for(self.key(input))
        return [m for m in self._rules if m.name in names]


def _anchors(module: RegoModule, paths: tuple[str, ...]) -> list[tuple[str, tuple[str, Any]]] | None:
    """The bucket entries of a module: for each body, its most selective indexed path's literals.

    None when some body constrains no indexed path (the module is a candidate for every input)."""
    if module.bodies is None:
        return None
    out: list[tuple[str, tuple[str, Any]]] = []
    for body in module.bodies:
        constrained = [p for p in paths if p in body]
        if not constrained:
            return None
        anchor = min(constrained, key=lambda p: (len(body[p]), p))
        out.extend((anchor, value) for value in sorted(body[anchor], key=repr))
    return out


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
    served = [m for m in modules if not m.is_test]  # a test may share its package, as in OPA
    names = Counter(m.package for m in served)
    for module in served:
        if names[module.package] > 1:
            others = [m.file for m in served if m.package == module.package and m is not module]
            problems.append(Problem(module.file, f"package {module.package} is also declared in {', '.join(others)}",
                                    code="duplicate_package"))
    if not any(m.package == MAIN_PACKAGE for m in served):
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


def compile_policy_set(snapshot: Snapshot, engine: Engine | None = None, *, check_tests: bool = False) -> PolicySet:
    """Compile every module of the snapshot; raise PolicyCompileError listing every problem.

    The whole set is compiled once to prove it builds together; each module that fails is
    also compiled alone with main.rego, so every broken file is named, not just the first.
    Test modules (`*_test.rego`) are kept apart in `tests`, never served; with check_tests
    (`check`, `test`) they are compiled with the set too, so a broken test cannot block serving.
    """
    engine = engine or engine_named()
    modules, problems = load_modules(snapshot)
    data, data_problems = load_data(snapshot)
    problems.extend(data_problems)
    tests = [m for m in modules if m.is_test]
    modules = [m for m in modules if not m.is_test]
    if not problems:
        # what OPA's compiler refuses but an engine accepts, or finds only when a request arrives;
        # first, so no engine (nor the crash probe's child) ever runs a recursive or broken set
        from policyctl.engine.analyze import analyze

        problems.extend(p for p in analyze([*modules, *(tests if check_tests else [])], data)
                        if p.severity == "error")
    if not problems:
        try:
            engine.compile(modules, with_meta(data, modules))
        except PolicyCompileError as exc:
            problems.extend(_isolate(engine, modules, data, exc.problems))
    if not problems and tests and check_tests:
        problems.extend(_test_problems(engine, modules, tests, data))
    if problems:
        raise PolicyCompileError(_summary(problems), problems=problems)
    paths, literals = _choose_index(modules)
    return PolicySet(revision=snapshot.revision, modules=modules, data=data, engine=engine,
                     index_paths=paths, tests=tests, _literals=literals)


def _test_problems(engine: Engine, modules: list[RegoModule], tests: list[RegoModule],
                   data: dict[str, Any]) -> list[Problem]:
    """Test modules compile with the set they test; when they do not, each failing one is named."""
    try:
        engine.compile([*modules, *tests], with_meta(data, modules))
        return []
    except PolicyCompileError as exc:
        first = exc.problems
    found: list[Problem] = []
    for test in tests:
        try:
            engine.compile([*modules, test], with_meta(data, modules))
        except PolicyCompileError as exc:
            found.extend(exc.problems)
    return found or first


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
