"""Static analysis of a Rego policy set, whatever engine serves it: the mistakes OPA's compiler
refuses but rego-cpp accepts silently, and engines find (if at all) only when a request reaches
them: both report recursion at evaluation, and a recursive function segfaults Regorus.

Regorus parses each module (`get_ast_as_json`, with byte spans); the walk here resolves every
name against the whole set: locals, imports, the package's rules, `data.agentgov.…` (rules,
packages and the `data.json` documents), OPA's builtins (`builtins.json`, derived from OPA's
capabilities file). Each finding is a Problem naming file:line:col with a stable code:

- `undefined_function`: a call to a name that is neither a builtin nor a function of the set;
- `wrong_arity`: a builtin or user function called with the wrong number of arguments;
- `undefined_rule`: a static `data.agentgov.…` (or package-local) ref that nothing defines;
- `unsafe_var`: a variable used but bound nowhere in its scope;
- `recursion`: a cycle in the rule/function dependency graph, named rule by rule.

Zero false positives matter more than completeness (a wrong error blocks every commit), so
where Rego leaves a choice the walk assumes the reading that binds or defines: any var in a
unification, a `some` declaration, a ref index or a negated expression counts as bound, and a
ref whose path becomes dynamic is checked only up to its static prefix.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path as FilePath
from typing import Any, Protocol

import orjson

from policyctl.errors import Problem

CODES = ("undefined_function", "wrong_arity", "undefined_rule", "unsafe_var", "recursion")
BUILTINS_FILE = FilePath(__file__).with_name("builtins.json")

Path = tuple[str, ...]
Node = dict[str, Any]


class Source(Protocol):
    """What the analysis reads of a module (a RegoModule fits): its file and text."""

    file: str
    text: str


@cache
def builtin_arities() -> dict[str, int]:
    """OPA's builtins: name -> number of arguments (-1: variadic)."""
    table: dict[str, int] = json.loads(BUILTINS_FILE.read_text())["builtins"]
    return table


def analyze(modules: Iterable[Source], data: Mapping[str, Any]) -> list[Problem]:
    """Every problem of the set, sorted by file and position; `data` is the data document.

    A module Regorus cannot parse makes the whole analysis unsure, so it is skipped with one
    warning (the engine's own compile reports syntax errors).
    """
    parsed: list[ModuleAst] = []
    for source in modules:
        module = parse_ast(source)
        if isinstance(module, Problem):
            return [module]
        parsed.append(module)
    try:
        index = _Index(parsed, data)
        problems: list[Problem] = []
        edges: dict[Path, dict[Path, _Def]] = {}
        for module in parsed:
            walker = _Walker(module, index, edges)
            walker.walk()
            problems.extend(walker.problems)
        problems.extend(_recursion(index, edges))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # an AST shape this walk does not know (a newer Regorus): never block a build on it
        return [Problem("<policy set>", f"static analysis skipped: unexpected Regorus AST ({type(exc).__name__}: "
                        f"{exc})", code="analysis_skipped", severity="warning")]
    unique = {(p.file, p.line, p.column, p.code, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.file, p.line or 0, p.column or 0, p.code))


# --------------------------------------------------------------------------- parsing


@dataclass
class ModuleAst:
    """One module as Regorus parsed it: package, imports (alias -> path) and rule nodes."""

    file: str
    raw: bytes
    package: Path
    imports: dict[str, Path]
    rules: list[Node]
    is_test: bool
    _line_starts: list[int] = field(default_factory=list)

    def where(self, span: Node) -> tuple[int, int]:
        """(line, column) of a span's start; columns count characters, not bytes."""
        if not self._line_starts:
            self._line_starts = [0] + [i + 1 for i, b in enumerate(self.raw) if b == 0x0A]
        offset = int(span.get("start", 0))
        line = bisect.bisect_right(self._line_starts, offset)
        start = self._line_starts[line - 1]
        return line, len(self.raw[start:offset].decode("utf-8", "replace")) + 1

    def name_at(self, span: Node) -> str:
        return self.raw[int(span["start"]):int(span["end"])].decode("utf-8", "replace")


def parse_ast(source: Source) -> ModuleAst | Problem:
    """The module's AST, or a warning Problem when Regorus cannot parse it."""
    import regorus

    engine = regorus.Engine()
    engine.set_rego_v0(False)
    try:
        engine.add_policy(source.file, source.text)
        tree = orjson.loads(engine.get_ast_as_json())[0]["ast"]
    except (RuntimeError, ValueError, KeyError, IndexError, orjson.JSONDecodeError) as exc:
        text = str(exc).split("Stack backtrace:", 1)[0]
        at = re.search(r"-->\s*[^\n]*?:(\d+):(\d+)", text)
        reason = text.strip().splitlines()
        return Problem(source.file, f"static analysis skipped: Regorus cannot parse this module "
                       f"({reason[-1] if reason else exc})", code="analysis_skipped", severity="warning",
                       line=int(at.group(1)) if at else None, column=int(at.group(2)) if at else None)
    raw = source.text.encode("utf-8")
    module = ModuleAst(source.file, raw, (), {}, list(tree.get("rules") or []),
                     bool(getattr(source, "is_test", False)))
    module.package = static_path(ref_chain(tree["package"]["refr"]) or [])[0]
    for imp in tree.get("imports") or []:
        chain = ref_chain(imp["refr"])
        if not chain or chain[0][1] not in ("data", "input"):
            continue  # rego.v1, future.keywords
        path = tuple(str(name) for _, name in chain)
        alias = module.name_at(imp["as"]) if imp.get("as") else path[-1]
        module.imports[alias] = path
    return module


def node_kind(node: Node) -> tuple[str, Node]:
    """An AST node is `{kind: body}`."""
    ((kind, body),) = node.items()
    return kind, body


def ref_chain(node: Node) -> list[tuple[str, Any]] | None:
    """A ref as [("var", head), ("field", name) | ("index", expr node), …]; None if its head is no var."""
    kind, body = node_kind(node)
    if kind == "Var":
        return [("var", body["value"])]
    if kind == "RefDot":
        inner = ref_chain(body["refr"])
        return None if inner is None else [*inner, ("field", body["field"][1])]
    if kind == "RefBrack":
        inner = ref_chain(body["refr"])
        return None if inner is None else [*inner, ("index", body["index"])]
    return None


def static_path(chain: list[tuple[str, Any]]) -> tuple[Path, int]:
    """The ref's names up to its first dynamic part, and how many parts that is."""
    names: list[str] = []
    for kind, part in chain:
        if kind in ("var", "field"):
            names.append(str(part))
            continue
        k, body = node_kind(part)
        if k not in ("String", "RawString"):
            break
        names.append(str(body["value"]))
    return tuple(names), len(names)


def _head_path(refr: Node) -> Path:
    chain = ref_chain(refr) or []
    return static_path(chain)[0] or ("<rule>",)


# --------------------------------------------------------------------------- the set's index


@dataclass
class _Def:
    """One rule or function definition: its absolute path (without `data`), where, its arity."""

    path: Path
    module: ModuleAst
    line: int
    arity: int | None


class _Index:
    """What the whole set defines: rules, functions, packages and the data document."""

    def __init__(self, modules: list[ModuleAst], data: Mapping[str, Any]) -> None:
        self.data = data
        self.defs: list[_Def] = []
        for module in modules:
            for rule in module.rules:
                kind, body = node_kind(rule)
                if kind == "Default":
                    path, arity = _head_path(body["refr"]), (len(body["args"]) if body.get("args") else None)
                else:
                    head_kind, head = node_kind(body["head"])
                    path = _head_path(head["refr"])
                    arity = len(head["args"]) if head_kind == "Func" else None
                line, _ = module.where(body["span"])
                self.defs.append(_Def(module.package + path, module, line, arity))
        self.mocked = {path for module in modules for path in _with_targets(module)}
        self._views = {test: _View([d for d in self.defs if test or not d.module.is_test],
                                   [m.package for m in modules if test or not m.is_test]) for test in (False, True)}

    def view(self, module: ModuleAst) -> _View:
        """Test modules see everything; a policy module does not see what only tests define."""
        return self._views[module.is_test]

    def is_mocked(self, path: Path) -> bool:
        """A `with data.<path> as …` somewhere in the set may give the document a value."""
        return any(m[:len(path)] == path or path[:len(m)] == m for m in self.mocked)

    def in_data(self, path: Path) -> bool:
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict):
                return True  # indexing into a value (array, string): not knowable here
            if part not in node:
                return False
            node = node[part]
        return True


class _View:
    def __init__(self, defs: list[_Def], packages: list[Path]) -> None:
        self.paths: dict[Path, list[_Def]] = {}
        self.functions: dict[Path, set[int]] = {}
        self.prefixes: dict[Path, set[Path]] = {}
        self.local_names: dict[Path, set[str]] = {}
        for d in defs:
            self.paths.setdefault(d.path, []).append(d)
            if d.arity is not None:
                self.functions.setdefault(d.path, set()).add(d.arity)
            for k in range(1, len(d.path) + 1):
                self.prefixes.setdefault(d.path[:k], set()).add(d.path)
            package = d.module.package
            self.local_names.setdefault(package, set()).add(d.path[len(package)])
        self.packages = {p[:k] for p in packages for k in range(1, len(p) + 1)}

    def targets(self, path: Path) -> set[Path]:
        """The rules a ref to `path` may read: those under it, and the one it reads into."""
        out = set(self.prefixes.get(path, ()))
        out.update(path[:k] for k in range(1, len(path) + 1) if path[:k] in self.paths)
        return out

    def defines(self, path: Path) -> bool:
        return path in self.packages or bool(self.targets(path))


# --------------------------------------------------------------------------- the walk


_REF = ("RefDot", "RefBrack")
_COMPR = ("ArrayCompr", "SetCompr", "ObjectCompr")


class _Walker:
    """Walks one module's rules with the set of variables bound at each point."""

    def __init__(self, module: ModuleAst, index: _Index, edges: dict[Path, dict[Path, _Def]]) -> None:
        self.module = module
        self.index = index
        self.view = index.view(module)
        self.edges = edges
        self.problems: list[Problem] = []
        self.current: _Def | None = None
        self._reported: set[tuple[int, str]] = set()

    # ---- reporting

    def report(self, node: Node, code: str, message: str) -> None:
        line, col = self.module.where(first_span(node))
        self.problems.append(Problem(self.module.file, message, code=code, line=line, column=col))

    # ---- rules

    def walk(self) -> None:
        defs = iter(d for d in self.index.defs if d.module is self.module)
        for rule, definition in zip(self.module.rules, defs, strict=True):
            self.current = definition
            self.edges.setdefault(definition.path, {})
            self._reported = set()
            kind, body = node_kind(rule)
            if kind == "Default":
                self.visit(body["value"], frozenset())
            else:
                self.rule(body)

    def rule(self, spec: Node) -> None:
        head_kind, head = node_kind(spec["head"])
        base: frozenset[str] = frozenset()
        if head_kind == "Func":
            base = frozenset(v for arg in head["args"] for v in _pattern_vars(arg))
        bodies = spec.get("bodies") or []
        if not bodies:
            self.head(head_kind, head, head.get("assign"), base)
        for i, body in enumerate(bodies):
            bound = self.query(body["query"], base)
            assign = body.get("assign") if body.get("is_else") else head.get("assign")
            if i == 0 or body.get("is_else"):
                self.head(head_kind, head, assign, bound, value_only=i > 0)

    def head(self, head_kind: str, head: Node, assign: Node | None, bound: frozenset[str],
             value_only: bool = False) -> None:
        """The head's key, value and ref indexes are uses: the body must bind their vars."""
        if assign is not None:
            self.visit(assign["value"], bound)
        if value_only:
            return
        if head_kind == "Set" and head.get("key") is not None:
            self.visit(head["key"], bound)
        for kind, part in (ref_chain(head["refr"]) or [])[1:]:
            if kind == "index":
                self.visit(part, bound)

    # ---- queries

    def query(self, query: Node, outer: frozenset[str]) -> frozenset[str]:
        """Visit a query's statements; the vars bound after it (Rego orders statements itself)."""
        bound = outer | _query_bindings(query, self.view, self.module)
        for stmt in query.get("stmts") or []:
            kind, lit = node_kind(stmt["literal"])
            if kind == "SomeIn":
                self.visit(lit["collection"], bound)
                for pattern in (lit.get("key"), lit["value"]):
                    if pattern is not None:
                        self.visit(pattern, bound)
            elif kind in ("Expr", "NotExpr"):
                self.visit(lit["expr"], bound, statement=True)
            elif kind == "Every":
                self.visit(lit["domain"], bound)
                inner = {self.module.name_at(lit["value"])}
                if lit.get("key"):
                    inner.add(self.module.name_at(lit["key"]))
                self.query(lit["query"], bound | inner)
            for mod in stmt.get("with_mods") or []:
                self.with_value(mod["as"], bound)
        return bound

    def with_value(self, node: Node, bound: frozenset[str]) -> None:
        """`with x as v`: v may name a function or builtin (a mock) instead of a value."""
        chain = ref_chain(node)
        if chain is not None and all(k in ("var", "field") for k, _ in chain):
            names = tuple(str(n) for _, n in chain)
            if ".".join(names) in builtin_arities() or self.function_path(names) is not None:
                return
        self.visit(node, bound)

    # ---- expressions

    def visit(self, node: Node, bound: frozenset[str], statement: bool = False) -> None:
        kind, body = node_kind(node)
        if kind == "Var":
            self.use_ref([("var", body["value"])], node, bound)
        elif kind in _REF:
            chain = ref_chain(node)
            if chain is None:  # a ref into a call's or a literal's value
                self.visit(_ref_base(node), bound)
                chain = _ref_parts(node)
            else:
                self.use_ref(chain, node, bound)
            for part_kind, part in chain:
                if part_kind == "index":
                    self.visit(part, bound)
        elif kind == "Call":
            self.call(node, body, bound, statement)
        elif kind in _COMPR:
            inner = self.query(body["query"], bound)
            for key in ("term", "key", "value"):
                if key in body:
                    self.visit(body[key], inner)
        else:
            for child in child_nodes(kind, body):
                self.visit(child, bound)

    def use_ref(self, chain: list[tuple[str, Any]], node: Node, bound: frozenset[str]) -> None:
        head = str(chain[0][1])
        if head == "_" or head in bound or head == "input":
            return
        path, _ = static_path(chain)
        if head == "data":
            self.read(path[1:], node)
        elif head in self.module.imports:
            target = self.module.imports[head]
            if target[0] == "data":
                self.read(target[1:] + path[1:], node)
        elif head in self.view.local_names.get(self.module.package, ()):
            self.read(self.module.package + path, node)
        elif self.first_report(head):
            self.report(node, "unsafe_var", f"variable {head} is used but never bound (unsafe): bind it "
                        f"first (`{head} := …`, `some {head} in …`), or define a rule {head}")

    def first_report(self, name: str) -> bool:
        """One unsafe_var per variable and rule, at its first use: the rest is the same mistake."""
        key = (self.current.line if self.current else 0, name)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    def read(self, path: Path, node: Node) -> None:
        """A read of data.<path>: a dependency on the rules it may reach, and it must exist."""
        assert self.current is not None
        for target in self.view.targets(path):
            self.edges[self.current.path].setdefault(target, self.current)
        if len(path) < 3 or path[0] != "agentgov" or path[1] == "meta":
            return  # data.agentgov.<area> alone is a namespace: empty (no rules yet) is fine
        if self.view.defines(path) or self.index.in_data(path) or self.index.is_mocked(path):
            return
        known = [".".join(p) for p in (*self.view.paths, *self.view.packages)]
        hint = _did_you_mean("data." + ".".join(path), ["data." + k for k in (*known, *_data_names(self.index.data))])
        self.report(node, "undefined_rule",
                    f"data.{'.'.join(path)} is not defined: no module declares that package or rule and no "
                    f"data.json holds that document{hint}")

    def function_path(self, names: Path) -> Path | None:
        """The absolute path of the user function these names call, if the set defines one."""
        head = names[0]
        if head == "data":
            candidate = names[1:]
        elif head in self.module.imports:
            target = self.module.imports[head]
            candidate = target[1:] + names[1:] if target[0] == "data" else ()
        else:
            candidate = self.module.package + names
        return candidate if candidate in self.view.functions else None

    def call(self, node: Node, body: Node, bound: frozenset[str], statement: bool) -> None:
        params: list[Node] = body["params"]
        for param in params:
            self.visit(param, bound)
        chain = ref_chain(body["fcn"])
        if chain is None or not all(k in ("var", "field") for k, _ in chain):
            self.visit(body["fcn"], bound)
            return
        names = tuple(str(n) for _, n in chain)
        if names[0] in bound:
            return  # a local var called as a function: the engine reports it
        dotted = ".".join(names)
        path = self.function_path(names)
        if path is not None:
            assert self.current is not None
            self.edges[self.current.path].setdefault(path, self.current)
            arities = self.view.functions[path]
            label = "data." + ".".join(path)
        elif dotted in builtin_arities():
            arities = {builtin_arities()[dotted]}
            label = dotted
        else:
            self.undefined_function(node, dotted)
            return
        n = len(params)
        if -1 in arities or n in arities or (statement and n - 1 in arities):
            return
        want = " or ".join(str(a) for a in sorted(arities))
        plural = "" if sorted(arities) == [1] else "s"
        extra = " (one more is allowed only as the output of a call that is a whole statement)" if (
            not statement and n - 1 in arities) else ""
        self.report(node, "wrong_arity", f"{label} takes {want} argument{plural}, called with {n}{extra}")

    def undefined_function(self, node: Node, dotted: str) -> None:
        local = [".".join(p[len(self.module.package):]) for p in self.view.functions
                 if p[:len(self.module.package)] == self.module.package]
        hint = _did_you_mean(dotted, [*builtin_arities(), *local])
        self.report(node, "undefined_function", f"call to undefined function {dotted}: it is neither an OPA "
                    f"builtin nor a function defined in the policy set{hint}")


def _with_targets(module: ModuleAst) -> Iterator[Path]:
    """The data paths a module's `with data.… as` modifiers replace."""
    if b"with" not in module.raw:
        return
    stack: list[Any] = list(module.rules)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for mod in item.get("with_mods") or []:
                chain = ref_chain(mod["refr"])
                if chain is None:
                    continue
                path = static_path(chain)[0]
                head = module.imports.get(path[0], (path[0],)) if path else ()
                if head and head[0] == "data":
                    yield head[1:] + path[1:]
            stack.extend(value for key, value in item.items() if key != "span")


# --------------------------------------------------------------------------- bindings


def _query_bindings(query: Node, view: _View, module: ModuleAst) -> set[str]:
    """The vars a query's statements bind, without entering nested queries."""
    out: set[str] = set()
    for stmt in query.get("stmts") or []:
        kind, lit = node_kind(stmt["literal"])
        if kind == "SomeVars":
            out.update(module.name_at(span) for span in lit["vars"])
        elif kind == "SomeIn":
            for pattern in (lit.get("key"), lit["value"]):
                if pattern is not None:
                    out.update(_pattern_vars(pattern))
            out.update(_ref_index_vars(lit["collection"]))
        elif kind in ("Expr", "NotExpr"):
            out.update(_expr_bindings(lit["expr"], view, module))
    return out


def _expr_bindings(expr: Node, view: _View, module: ModuleAst) -> set[str]:
    kind, body = node_kind(expr)
    out = _ref_index_vars(expr)
    if kind == "AssignExpr":
        out.update(_pattern_vars(body["lhs"]))
        if body["op"] == "Eq":
            out.update(_pattern_vars(body["rhs"]))
    elif kind == "Call" and body["params"]:
        # f(a, out) with one argument more than f takes binds `out` to f(a)
        chain = ref_chain(body["fcn"])
        if chain is not None and all(k in ("var", "field") for k, _ in chain):
            names = tuple(str(n) for _, n in chain)
            arities = _arities(names, view, module)
            if any(a >= 0 and len(body["params"]) == a + 1 for a in arities):
                out.update(_pattern_vars(body["params"][-1]))
    return out


def _arities(names: Path, view: _View, module: ModuleAst) -> set[int]:
    out: set[int] = set()
    dotted = ".".join(names)
    if dotted in builtin_arities():
        out.add(builtin_arities()[dotted])
    candidates = [module.package + names]
    if names[0] == "data":
        candidates.append(names[1:])
    if names[0] in module.imports and module.imports[names[0]][0] == "data":
        candidates.append(module.imports[names[0]][1:] + names[1:])
    for path in candidates:
        out.update(view.functions.get(path, ()))
    return out


def _pattern_vars(node: Node) -> set[str]:
    """Vars a term binds when it is unified: bare vars, inside arrays and object values."""
    kind, body = node_kind(node)
    if kind == "Var":
        return {str(body["value"])}
    if kind in ("Array", "Set"):
        return {v for item in body["items"] for v in _pattern_vars(item)}
    if kind == "Object":
        return {v for _, _, value in body["fields"] for v in _pattern_vars(value)}
    if kind in _REF:
        return _ref_index_vars(node)
    return set()


def _ref_index_vars(node: Node) -> set[str]:
    """Vars used as a ref's index (`input.a[i]`) anywhere in an expression: iteration binds them."""
    out: set[str] = set()
    stack = [node]
    while stack:
        kind, body = node_kind(stack.pop())
        if kind in _COMPR:
            continue
        if kind == "RefBrack":
            ikind, index = node_kind(body["index"])
            if ikind == "Var":
                out.add(str(index["value"]))
        stack.extend(child_nodes(kind, body))
    return out


# --------------------------------------------------------------------------- helpers


def child_nodes(kind: str, body: Node) -> Iterator[Node]:
    """The sub-expressions of an expression node (not of nested queries)."""
    if kind in ("Var", "String", "RawString", "Number", "Bool", "Null", "True", "False"):
        return
    if kind in ("Array", "Set"):
        yield from body["items"]
    elif kind == "Object":
        for _, key, value in body["fields"]:
            yield key
            yield value
    elif kind == "RefDot":
        yield body["refr"]
    elif kind == "RefBrack":
        yield body["refr"]
        yield body["index"]
    elif kind == "Call":
        yield body["fcn"]
        yield from body["params"]
    elif kind == "UnaryExpr":
        yield body["expr"]
    elif kind in ("BinExpr", "BoolExpr", "ArithExpr", "AssignExpr"):
        yield body["lhs"]
        yield body["rhs"]
    elif kind == "Membership":
        if body.get("key") is not None:
            yield body["key"]
        yield body["value"]
        yield body["collection"]
    elif kind in _COMPR:
        for key in ("term", "key", "value"):
            if key in body:
                yield body[key]


def _ref_base(node: Node) -> Node:
    kind, body = node_kind(node)
    while kind in _REF:
        node = body["refr"]
        kind, body = node_kind(node)
    return node


def _ref_parts(node: Node) -> list[tuple[str, Any]]:
    parts: list[tuple[str, Any]] = []
    kind, body = node_kind(node)
    while kind in _REF:
        parts.append(("field", body["field"][1]) if kind == "RefDot" else ("index", body["index"]))
        kind, body = node_kind(body["refr"])
    return parts[::-1]


def first_span(node: Node) -> Node:
    """The span of the expression's first token (a ref's head var), where a reader looks."""
    kind, body = node_kind(node)
    if kind in _REF:
        return first_span(body["refr"])
    span: Node = body["span"] if isinstance(body, dict) and "span" in body else body
    return span


def _data_names(node: Any, prefix: Path = ()) -> Iterator[str]:
    """Every object path of the data document, dotted, for a did-you-mean hint."""
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        path = (*prefix, str(key))
        yield ".".join(path)
        yield from _data_names(value, path)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _recursion(index: _Index, edges: dict[Path, dict[Path, _Def]]) -> list[Problem]:
    """One problem per cycle of the dependency graph (Tarjan's strongly connected components)."""
    order: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    components: list[list[Path]] = []

    def connect(start: Path) -> None:
        work = [(start, iter(sorted(edges.get(start, {}))))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], order[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == order[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)

    for node in sorted(edges):
        if node not in order:
            connect(node)
    problems = []
    for component in components:
        members = set(component)
        if len(component) == 1 and component[0] not in edges.get(component[0], {}):
            continue
        first_defined = {d.path: (d.module.file, d.line) for d in reversed(index.defs)}
        cycle = _cycle(min(members, key=lambda m: (first_defined.get(m, ("", 0)), m)), members, edges)
        first = edges[cycle[0]][cycle[1]]
        steps = " -> ".join(f"data.{'.'.join(p)} ({edges[p][q].module.file}:{edges[p][q].line})"
                            for p, q in zip(cycle, cycle[1:], strict=False))
        problems.append(Problem(first.module.file, f"{steps} -> data.{'.'.join(cycle[0])}; "
                                "a rule or function must not depend on itself", code="recursion",
                                line=first.line, column=1))
    return problems


def _cycle(start: Path, members: set[Path], edges: dict[Path, dict[Path, _Def]]) -> list[Path]:
    """A shortest cycle through `start` inside one component: [start, …, start]."""
    previous: dict[Path, Path] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, {})):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*path[::-1], start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]
