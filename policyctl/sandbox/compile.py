"""The first wall: compile an override script with RestrictedPython and the override rules, or say why not."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer, compile_restricted_exec
from RestrictedPython.transformer import copy_locations

from policyctl.errors import Problem
from policyctl.sandbox.errors import SandboxCompileError
from policyctl.sandbox.guards import IMPORTABLE, MATH_NAMES
from policyctl.sandbox.limits import MAX_SOURCE_BYTES

CODE = "override_compile"

# Builtins a script might reach for that the sandbox never offers. Refusing them here gives a
# clear file:line at `policyctl check` instead of a NameError at 3 a.m. (they are absent from
# the script's builtins either way, so this list is about messages, not about safety).
UNAVAILABLE = frozenset({
    "exec", "eval", "compile", "open", "input", "breakpoint", "globals", "locals", "vars", "dir",
    "getattr", "setattr", "delattr", "hasattr", "type", "object", "super", "id", "hash",
    "memoryview", "bytearray", "bytes", "classmethod", "staticmethod", "property", "help",
    "exit", "quit", "issubclass", "callable", "format", "iter", "next", "aiter", "anext",
})

_RP_LINE = re.compile(r"^Line (\d+|None): (.*)$", re.DOTALL)

# The one module a script may import (policyctl.sandbox.guards hands out its pure part).


class OverrideTransformer(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus text rendering routed through the guards.

    CPython formats f-string placeholders (FORMAT_VALUE) and `%` on strings (BINARY_OP) in
    C, calling an object's default repr without any guard in between, so both are rewritten
    here: `f"{x!r:>10}"` becomes `f"{_format_(x, 114, '>10')}"` and `a % b` becomes
    `_mod_(a, b)`, which render through `policyctl.sandbox.render` (no addresses).
    """

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        node = self.node_contents_visit(node)
        spec: ast.expr = node.format_spec if node.format_spec is not None else ast.Constant("")
        call = ast.Call(func=ast.Name("_format_", ast.Load()), args=[node.value, ast.Constant(node.conversion), spec],
                        keywords=[])
        copy_locations(call, node)
        new = ast.FormattedValue(value=call, conversion=-1, format_spec=None)
        copy_locations(new, node)
        return new

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        if not isinstance(node.op, ast.Mod) or _is_number(node.left):
            return node
        call = ast.Call(func=ast.Name("_mod_", ast.Load()), args=[node.left, node.right], keywords=[])
        copy_locations(call, node)
        return call


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def compile_problems(source: str, *, file: str) -> list[Problem]:
    """Every reason `source` is not a valid override script, as file:line problems (empty when valid).

    Runs in the calling process and executes nothing: the source is only parsed and
    transformed. Used by `policyctl check` (so pre-commit and CI), at load and by run_override.
    """
    return _check(source, file)[0]


def compile_override(source: str, *, file: str) -> CodeType:
    """The restricted code object of a valid script; raises SandboxCompileError listing every problem."""
    return _compile_cached(source, file)


@lru_cache(maxsize=256)
def _compile_cached(source: str, file: str) -> CodeType:
    # Code objects are immutable, so one compiled script can be shared by every run;
    # exceptions are not cached, so a broken script is re-checked (and re-reported) each time.
    problems, code = _check(source, file)
    if problems or code is None:
        raise SandboxCompileError.from_problems(problems or [Problem(file, "cannot be compiled", code=CODE)])
    return code


def _check(source: str, file: str) -> tuple[list[Problem], CodeType | None]:
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        return [Problem(file, f"the script is {size} bytes; the limit is {MAX_SOURCE_BYTES} "
                        "(an override is a short emergency measure: move logic into a policy)", code=CODE)], None
    try:
        tree = ast.parse(source, filename=file)
    except SyntaxError as exc:
        return [Problem(file, f"not valid Python: {exc.msg}", code=CODE, line=exc.lineno, column=exc.offset)], None
    except (ValueError, RecursionError, MemoryError) as exc:
        # Null bytes (ValueError) or expressions nested too deep for the parser.
        return [Problem(file, f"cannot be parsed: {type(exc).__name__}: {exc}"[:300], code=CODE)], None
    try:
        problems = _rule_problems(tree, file)
    except RecursionError:
        return [Problem(file, "expressions are nested too deeply", code=CODE)], None
    code: CodeType | None = None
    try:
        # RestrictedPython parses again and transforms its own tree; ours stays untouched.
        result = compile_restricted_exec(source, filename=file, policy=OverrideTransformer)
    except (RecursionError, MemoryError, ValueError, SyntaxError) as exc:
        why = "expressions are nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
        problems.append(Problem(file, f"cannot be compiled: {why}", code=CODE))
    else:
        for error in result.errors:
            match = _RP_LINE.match(error)
            if match and match.group(1).isdigit():
                problems.append(Problem(file, match.group(2).strip(), code=CODE, line=int(match.group(1))))
            else:
                problems.append(Problem(file, error.strip(), code=CODE))
        code = result.code
    unique: dict[tuple[int | None, str], Problem] = {}
    for problem in problems:
        unique.setdefault((problem.line, problem.message), problem)
    ordered = sorted(unique.values(), key=lambda p: (p.line or 0, p.column or 0))
    return ordered, (code if not ordered else None)


def _rule_problems(tree: ast.Module, file: str) -> list[Problem]:
    """The override rules on top of RestrictedPython's: no imports, no classes, a decide(input)."""
    problems: list[Problem] = []

    def add(node: ast.AST, message: str) -> None:
        problems.append(Problem(file, message, code=CODE, line=getattr(node, "lineno", None)))

    bound = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            problem = _import_problem(node)
            if problem:
                add(node, problem)
        elif isinstance(node, ast.ClassDef):
            add(node, f"class {node.name}: class definitions are not allowed in overrides; "
                      "use dicts and lists")
        elif isinstance(node, ast.Name) and node.id in UNAVAILABLE and node.id not in bound:
            if node.id in ("exec", "eval"):
                continue  # RestrictedPython reports these itself
            add(node, f"{node.id!r} is not available in overrides (no exec, eval, compile, open, "
                      "imports or introspection)")

    decides = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "decide"]
    if not decides:
        problems.append(Problem(file, "no `def decide(input):` function at module level", code=CODE))
    for fn in decides:
        args = fn.args
        positional = len(args.posonlyargs) + len(args.args)
        required = positional - len(args.defaults)
        if positional < 1 or required > 1 or args.vararg or args.kwarg or \
                any(d is None for d in args.kw_defaults):
            add(fn, "decide must take exactly one argument: `def decide(input):`")
        if fn.decorator_list:
            add(fn, "decide must not be decorated")
    return problems


def _import_problem(node: ast.Import | ast.ImportFrom) -> str | None:
    """Why an import is refused, or None for `import math [as m]` and `from math import NAME [as n], …`."""
    modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    if any(m != IMPORTABLE for m in modules) or (isinstance(node, ast.ImportFrom) and node.level):
        return (f"imports are not allowed in overrides, except `import {IMPORTABLE}`: the sandbox offers no "
                "other modules (use the builtins: len, sorted, min, max, sum, any, all, …)")
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name == "*":
                return f"`from {IMPORTABLE} import *` is not allowed in overrides: import the names you use"
            if alias.name not in MATH_NAMES:
                return (f"{IMPORTABLE}.{alias.name} is not available in overrides (the sandbox offers math's "
                        "pure functions and constants: sqrt, log, exp, floor, ceil, fsum, isclose, pi, …)")
    return None


def _bound_names(tree: ast.Module) -> set[str]:
    """Names the script binds anywhere (a local `type = …` is the script's own, not the builtin)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.ExceptHandler):
            names.add(node.name or "")
    return names
