"""`policyctl lint`: this project's rules for Rego modules, each with a stable code (docs/lint.md).

The compile (and its static analysis) refuses what cannot work; lint flags what works in
one engine and not another, or what a policy should never do: reach the network, read the
process environment, compare input values of unknown type, run a backtracking regex on
input. Findings are Problems of severity `warning` or `error`; `check` runs lint too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from policyctl.decide.checks import CheckReport
from policyctl.engine.analyze import ModuleAst, Node, first_span, node_kind, parse_ast, ref_chain
from policyctl.engine.modules import (
    LIB_PREFIX,
    MAIN_PACKAGE,
    MODES,
    RULES_PREFIX,
    forbidden_calls,
    parse_module,
)
from policyctl.errors import Problem, UsageError
from policyctl.repo import Snapshot

MAIN_FILE = "policies/main.rego"
TEST_SUFFIX = "_test.rego"


@dataclass(frozen=True)
class LintRule:
    """One lint rule: a stable code, a name, the severity of its findings, what it asks."""

    code: str
    name: str
    severity: str
    summary: str


RULES: dict[str, LintRule] = {r.code: r for r in (
    LintRule("L001", "package-path", "warning",
             "the package matches where the file is: policies/rules/x.rego is agentgov.rules.x, "
             "policies/lib/… is agentgov.lib.…, only policies/main.rego is agentgov.main"),
    LintRule("L002", "metadata", "warning",
             "a rule module has a METADATA block with a title, a description and custom.mode enforce or shadow"),
    LintRule("L003", "untyped-comparison", "warning",
             "an ordering comparison (<, <=, >, >=) of an input value is guarded by is_number or is_string "
             "of the same value in the same rule"),
    LintRule("L004", "unbounded-regex", "warning",
             "a regex builtin's pattern is a constant, without nested quantifiers when it matches input text"),
    LintRule("L005", "opa-runtime", "error", "no read of opa.runtime(): it holds the evaluating process's environment"),
    LintRule("L006", "http-send", "error", "no http.send or net.lookup_ip_addr: a policy must not reach the network"),
)}

ORDERING = {"Lt": "<", "Le": "<=", "Gt": ">", "Ge": ">="}
TYPE_GUARDS = ("is_number", "is_string")
# regex builtin -> (index of its pattern argument, index of the text it matches)
REGEX_ARGS = {"regex.match": (0, 1), "re_match": (0, 1), "regex.find_n": (0, 1),
              "regex.find_all_string_submatch_n": (0, 1), "regex.split": (0, 1), "regex.replace": (1, 0)}
CONSTANTS = ("String", "RawString", "Number", "Bool", "Null")


@dataclass
class LintReport(CheckReport):
    """The findings of one lint run over a revision: a check report of lint's own codes."""

    modules: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "ok": self.ok, "modules": self.modules,
                "problems": [p.to_dict() for p in self.problems]}


def resolve_codes(names: Iterable[str]) -> set[str]:
    """Codes from `--disable` values (codes or names, comma-separated); UsageError for unknown ones."""
    by_name = {r.name: r.code for r in RULES.values()}
    out: set[str] = set()
    for value in names:
        for name in filter(None, (part.strip() for part in value.split(","))):
            code = name.upper() if name.upper() in RULES else by_name.get(name.lower())
            if code is None:
                known = ", ".join(f"{r.code} ({r.name})" for r in RULES.values())
                raise UsageError(f"--disable {name}: no such lint rule; the rules are {known}")
            out.add(code)
    return out


def run_lint(snapshot: Snapshot, *, disable: Iterable[str] = ()) -> LintReport:
    """Lint every .rego file of the snapshot; findings of disabled codes are left out."""
    off = resolve_codes(disable)
    report = LintReport(snapshot.revision)
    for path in snapshot.paths("policies/", ".rego"):
        report.modules += 1
        try:
            text = snapshot.text(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is a finding of that file
            report.problems.append(Problem(path, str(exc), code="encoding"))
            continue
        report.problems.extend(p for p in lint_module(path, text) if p.code not in off)
    report.problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0, p.code))
    return report


# lint code -> the compile problem code that already says the same of a file
REPORTED_BY_COMPILE = {"L002": "metadata", "L005": "forbidden_builtin", "L006": "forbidden_builtin"}


def lint_for_check(snapshot: Snapshot, known: list[Problem]) -> list[Problem]:
    """What lint adds to `check`: not what the compile already reported for the same file."""
    seen = {(p.file, p.code) for p in known}
    return [p for p in run_lint(snapshot).problems if p.code != "rego_parse_error"
            and (p.file, REPORTED_BY_COMPILE.get(p.code)) not in seen]


def lint_module(file: str, text: str) -> list[Problem]:
    """Every finding of one module."""
    module, _ = parse_module(file, text)
    if module is None:
        return [Problem(file, "no `package` line", code="rego_parse_error", line=1)]
    problems = _package_path(file, text, module.package)
    if module.is_rule:
        problems.extend(_metadata(file, text, module.metadata))
    problems.extend(_forbidden(file, text))
    tree = parse_ast(_Text(file, text))
    if isinstance(tree, Problem):
        tree.code, tree.severity = "rego_parse_error", "error"
        tree.message = tree.message.replace("static analysis skipped: ", "")
        return [*problems, tree]
    for rule in tree.rules:
        problems.extend(_rule_findings(tree, rule))
    return problems


def _forbidden(file: str, text: str) -> list[Problem]:
    """L005/L006: the builtins the compile refuses (one list, one scan: engine.modules.forbidden_calls)."""
    out = []
    for problem in forbidden_calls(file, text):
        code = "L005" if "opa.runtime" in problem.message.split(" is not allowed", 1)[0] else "L006"
        out.append(_finding(code, file, problem.message, problem.line, problem.column))
    return out


@dataclass
class _Text:
    file: str
    text: str


def _finding(code: str, file: str, message: str, line: int | None = None, column: int | None = None) -> Problem:
    rule = RULES[code]
    return Problem(file, f"{rule.name}: {message}", code=code, line=line, column=column, severity=rule.severity)


def _package_line(text: str) -> int:
    m = re.search(r"^package\s", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 1


# --------------------------------------------------------------------------- L001, L002


def _package_path(file: str, text: str, package: str) -> list[Problem]:
    """L001: the package a file's place implies."""
    parts = file.split("/")
    stem = parts[-1].removesuffix(".rego")
    is_test = file.endswith(TEST_SUFFIX)
    line = _package_line(text)
    expected: str | None = None
    if file == MAIN_FILE:
        expected = MAIN_PACKAGE
    elif len(parts) > 2 and parts[1] == "rules":
        name = stem.removesuffix("_test") if is_test else stem
        allowed = {RULES_PREFIX + name, RULES_PREFIX + name + "_test"} if is_test else {RULES_PREFIX + name}
        if package not in allowed:
            expected = RULES_PREFIX + name
    elif len(parts) > 2 and parts[1] == "lib":
        if not package.startswith(LIB_PREFIX):
            return [_finding("L001", file, f"package {package}: a module under policies/lib/ is a library, "
                             f"package {LIB_PREFIX}<name>", line, 1)]
        return []
    elif package == MAIN_PACKAGE:
        return [_finding("L001", file, f"package {MAIN_PACKAGE} belongs to {MAIN_FILE} alone", line, 1)]
    elif package.startswith(LIB_PREFIX) and not is_test:
        return [_finding("L001", file, f"package {package}: library modules live under policies/lib/", line, 1)]
    if expected is None or package == expected:
        return []
    return [_finding("L001", file, f"package {package} does not match the file's place: {file} is "
                     f"package {expected}", line, 1)]


def _metadata(file: str, text: str, meta: dict[str, Any]) -> list[Problem]:
    """L002: a rule module says what it is for and how it runs."""
    m = re.search(r"^# METADATA\s*$", text, re.M)
    line = text.count("\n", 0, m.start()) + 1 if m else _package_line(text)
    if not meta:
        return [_finding("L002", file, "no METADATA block: add `# METADATA` with title, description and "
                         "custom.mode above the package line", line, 1)]
    missing = [name for name in ("title", "description") if not str(meta.get(name) or "").strip()]
    out = [_finding("L002", file, f"METADATA has no {name}", line, 1) for name in missing]
    custom = meta.get("custom") if isinstance(meta.get("custom"), dict) else {}
    assert isinstance(custom, dict)
    mode = custom.get("mode")
    if mode is None:
        out.append(_finding("L002", file, "METADATA has no custom.mode (enforce or shadow)", line, 1))
    elif mode not in MODES:
        out.append(_finding("L002", file, f"METADATA custom.mode {mode!r} is not one of: {', '.join(MODES)}", line, 1))
    return out


# --------------------------------------------------------------------------- the AST rules


def _rule_findings(tree: ModuleAst, rule: Node) -> list[Problem]:
    nodes = list(_walk(rule))
    out: list[Problem] = []
    out.extend(_untyped_comparisons(tree, nodes))
    for kind, body in nodes:
        if kind == "Call":
            out.extend(_call_findings(tree, body))
    return out


def _walk(node: Any) -> Iterator[tuple[str, Node]]:
    """Every expression node under `node`, nested queries included, `with` targets left out
    (mocking http.send in a test is not calling it)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        if len(item) == 1:
            ((kind, body),) = item.items()
            if isinstance(body, dict) and "span" in body and kind[:1].isupper():
                yield kind, body
        for key, value in item.items():
            if key == "with_mods":
                stack.extend(mod.get("as") for mod in value or [])
            elif key != "span":
                stack.append(value)


def _dotted(node: Node) -> str | None:
    chain = ref_chain(node)
    if chain is None or not all(kind in ("var", "field") for kind, _ in chain):
        return None
    return ".".join(str(name) for _, name in chain)


def _where(tree: ModuleAst, node: Node) -> tuple[int, int]:
    return tree.where(first_span(node))


def _text(tree: ModuleAst, node: Node) -> str:
    """The source of an expression, without spaces: how two mentions of one ref are compared."""
    kind, body = node_kind(node)
    start = int(first_span(node)["start"])
    end = int(body["span"]["end"])
    return re.sub(r"\s+", "", tree.raw[start:end].decode("utf-8", "replace"))


def _input_ref(tree: ModuleAst, node: Node) -> bool:
    chain = ref_chain(node)
    if chain is None:
        return False
    head = str(chain[0][1])
    if head == "input":
        return len(chain) > 1
    return tree.imports.get(head, ("",))[0] == "input"


def _untyped_comparisons(tree: ModuleAst, nodes: list[tuple[str, Node]]) -> list[Problem]:
    """L003: `<`, `<=`, `>`, `>=` on an input value (or a var assigned one) with no type guard."""
    guarded: set[str] = set()
    aliases: dict[str, str] = {}  # var -> the input ref it was assigned
    for kind, body in nodes:
        if kind == "Call" and _dotted(body["fcn"]) in TYPE_GUARDS and len(body["params"]) == 1:
            guarded.add(_text(tree, body["params"][0]))
        elif kind == "AssignExpr" and _input_ref(tree, body["rhs"]):
            lkind, lhs = node_kind(body["lhs"])
            if lkind == "Var":
                aliases[str(lhs["value"])] = _text(tree, body["rhs"])
    out = []
    for kind, body in nodes:
        if kind != "BoolExpr" or body["op"] not in ORDERING:
            continue
        for side in (body["lhs"], body["rhs"]):
            text = _text(tree, side)
            if node_kind(side)[0] == "Var" and text in aliases:
                ref = aliases[text]
            elif _input_ref(tree, side):
                ref = text
            else:
                continue
            if text in guarded or ref in guarded:
                continue
            line, col = _where(tree, side)
            out.append(_finding("L003", tree.file, f"{text} {ORDERING[body['op']]} …: {ref} may be any type, and "
                                "engines order mixed types differently (rego-cpp: null > 2000 is true, "
                                f"\"5000\" > 3000 false); guard it with is_number({text}) in this rule", line, col))
    return out


def _call_findings(tree: ModuleAst, call: Node) -> list[Problem]:
    name = _dotted(call["fcn"])
    line, col = tree.where(first_span({"Call": call}))
    if name not in REGEX_ARGS or len(call["params"]) <= max(REGEX_ARGS[name]):
        return []
    pattern_at, text_at = REGEX_ARGS[name]
    pkind, pattern = node_kind(call["params"][pattern_at])
    if pkind not in ("String", "RawString"):
        return [_finding("L004", tree.file, f"{name}: the pattern is computed at evaluation time, so nothing bounds "
                         "its cost (rego-cpp's regex backtracks: exponential time on crafted text); use a "
                         "constant pattern", line, col)]
    nested = nested_quantifier(str(pattern["value"]))
    if nested and node_kind(call["params"][text_at])[0] not in CONSTANTS:
        return [_finding("L004", tree.file, f"{name}: pattern {pattern['value']!r} nests quantifiers ({nested}); on "
                         "a backtracking engine crafted input text takes exponential time (16 s for 26 characters "
                         "measured on rego-cpp); rewrite it without a repeated group that itself repeats",
                         line, col)]
    return []


def nested_quantifier(pattern: str) -> str | None:
    """The first group that repeats and holds a repetition (`(a+)+`, `(\\w*x)*`), or None."""
    stack: list[list[Any]] = []  # [start index, holds a quantifier]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            continue
        if c == "(":
            stack.append([i, False])
        elif c == ")" and stack:
            start, holds = stack.pop()
            q = _quantifier_len(pattern, i + 1)
            if holds and q:
                return pattern[start:i + 1 + q]
            if holds and stack:
                stack[-1][1] = True
        elif _quantifier_len(pattern, i) and stack:
            stack[-1][1] = True
        i += 1
    return None


def _quantifier_len(pattern: str, i: int) -> int:
    """Length of an unbounded-or-counted quantifier at i (`*`, `+`, `{2,}`, `{1,9}`), else 0."""
    if i >= len(pattern):
        return 0
    if pattern[i] in "*+":
        return 1
    m = re.match(r"\{\d*,\d*\}", pattern[i:])
    return len(m.group(0)) if m else 0


def _class_end(pattern: str, i: int) -> int:
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1
