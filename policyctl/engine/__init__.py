"""Compile a snapshot's policy set once and evaluate inputs on it, on any engine (engine/regopy.py,
engine/regorus.py behind engine/base.py's protocols).

A decision evaluates only the rule modules that can apply to its input: modules are
indexed by the literal `input.<path> == …` tests of their `decisions` bodies, and one
program is compiled (lazily, then cached) per set of modules that traffic reaches. A
policy set grown by thousands of drafted rules stays as fast as the rules one input can
reach (bench/engine.py).
"""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from policyctl.engine.base import Engine, Program
from policyctl.engine.base import summary as _summary
from policyctl.engine.modules import MAIN_PACKAGE, RegoModule, parse_module
from policyctl.engine.regopy import RegopyEngine
from policyctl.engine.regorus import RegorusEngine
from policyctl.errors import PolicyCompileError, Problem
from policyctl.model.values import tag
from policyctl.repo import Snapshot

RESERVED_DATA = ("meta", "rules", "main", "lib")
MAX_INDEX_PATHS = 4
# Programs cached per revision: at least this many, and this many per rule module.
MIN_PROGRAMS = 256
PROGRAMS_PER_MODULE = 2
MAX_KEY_SETS = 65536



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
        self._order = {id(m): i for i, m in enumerate(self._rules)}
        self.capacity = max(MIN_PROGRAMS, PROGRAMS_PER_MODULE * len(self._rules))
        self._build_index()

    def _build_index(self) -> None:
        self._indexed = self.index_paths
        self._sets.clear()
        self._always: list[tuple[str, RegoModule]] = []
        self._buckets: dict[tuple[str, tuple[str, Any]], list[tuple[str, RegoModule]]] = {}
        # how many module bodies require each literal: a body is filed under its rarest one
        counts: Counter[tuple[str, tuple[str, Any]]] = Counter()
        for module in self._rules:
            for body in module.bodies or []:
                counts.update((p, v) for p in self.index_paths if p in body for v in body[p])
        for module in self._rules:
            anchors = _anchors(module, self.index_paths, counts)
            if anchors is None:
                self._always.append((module.name, module))
                continue
            for anchor in anchors:
                bucket = self._buckets.setdefault(anchor, [])
                if not bucket or bucket[-1][1] is not module:
                    bucket.append((module.name, module))

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
            for name, module in self._buckets.get((path, value), ()):
                if name not in seen and module.applies(by_path):
                    seen.add(name)
        seen.update(name for name, m in self._always if m.applies(by_path))
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
                chosen = self._base + sorted((self._by_name[n] for n in names), key=lambda m: self._order[id(m)])
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


def _anchors(module: RegoModule, paths: tuple[str, ...],
             counts: Counter[tuple[str, tuple[str, Any]]]) -> list[tuple[str, tuple[str, Any]]] | None:
    """The bucket entries of a module: for each body, the literals of its indexed path whose
    buckets are smallest across the set (fewest other bodies share them).

    None when some body constrains no indexed path (the module is a candidate for every input)."""
    if module.bodies is None:
        return None
    out: list[tuple[str, tuple[str, Any]]] = []
    for body in module.bodies:
        constrained = [p for p in paths if p in body]
        if not constrained:
            return None
        anchor = min(constrained, key=lambda p: (sum(counts[(p, v)] for v in body[p]), p))
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
