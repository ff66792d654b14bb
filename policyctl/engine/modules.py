"""Read what a Rego module declares without compiling it: package, METADATA, and the input
fields its `decisions` rules test, so a decision evaluates only the modules that can apply."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from policyctl.errors import Problem, ValidationError
from policyctl.model.region import Region
from policyctl.model.values import tag

# libyaml's safe loader where built (20x the pure-Python one: METADATA of 5,000 modules)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MODES = ("enforce", "shadow")
RULES_PREFIX = "agentgov.rules."
MAIN_PACKAGE = "agentgov.main"
LIB_PREFIX = "agentgov.lib."
TEST_SUFFIX = "_test.rego"

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.M)
_LITERAL = r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null'
_EQ = re.compile(rf"^input((?:\.[A-Za-z_]\w*)+)\s*==\s*({_LITERAL})$")
_EQ_REV = re.compile(rf"^({_LITERAL})\s*==\s*input((?:\.[A-Za-z_]\w*)+)$")
_IN = re.compile(rf"^input((?:\.[A-Za-z_]\w*)+)\s+in\s+[\[{{]\s*((?:(?:{_LITERAL})\s*,\s*)*(?:{_LITERAL}))\s*,?\s*[\]}}]$")
_LITERALS = re.compile(_LITERAL)

# A constraint: input path -> the literal values that make the rule body possible.
Constraints = dict[str, frozenset[tuple[str, Any]]]


@dataclass
class RegoModule:
    """One .rego file of a policy set."""

    file: str
    text: str
    package: str
    title: str = ""
    description: str = ""
    mode: str = "enforce"
    cluster: str | None = None
    # the failure region the rule answers (custom.region): changes inside it are not collateral
    region: Region | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # One entry per `decisions` rule body; None when the module cannot be indexed (always evaluated).
    bodies: list[Constraints] | None = None

    @property
    def name(self) -> str:
        return self.package.rsplit(".", 1)[-1]

    @property
    def is_test(self) -> bool:
        """A `*_test.rego` file: `policyctl test` runs its `test_*` rules; it is never served."""
        return self.file.endswith(TEST_SUFFIX)

    @property
    def is_rule(self) -> bool:
        return self.package.startswith(RULES_PREFIX) and not self.is_test

    def applies(self, key: dict[str, tuple[str, Any]]) -> bool:
        """False only when no `decisions` body can hold for inputs with these index values."""
        if self.bodies is None:
            return True
        for body in self.bodies:
            if all(path not in key or key[path] in allowed for path, allowed in body.items()):
                return True
        return False


def parse_module(file: str, text: str) -> tuple[RegoModule | None, list[Problem]]:
    """Package, METADATA and index constraints of one module; problems for what is off."""
    problems: list[Problem] = []
    m = _PACKAGE.search(text)
    if m is None:
        return None, [Problem(file, "no `package` line", code="rego_parse_error", line=1)]
    package = m.group(1)
    pkg_line = text.count("\n", 0, m.start()) + 1
    module = RegoModule(file=file, text=text, package=package)
    if module.is_test:
        return module, []  # any package, no METADATA: it is compiled with the set but never served
    if package != MAIN_PACKAGE and not package.startswith((RULES_PREFIX, LIB_PREFIX)):
        problems.append(Problem(file, f"package {package} is outside agentgov.rules.*, agentgov.lib.* and "
                                f"agentgov.main (bundle root is agentgov)", code="package", line=pkg_line))
    if package.startswith(RULES_PREFIX) and "." in package[len(RULES_PREFIX):]:
        problems.append(Problem(file, f"package {package}: a rule module is agentgov.rules.<name>, one level",
                                code="package", line=pkg_line))
    problems.extend(forbidden_calls(file, text))
    meta, meta_problem = _metadata(file, text, m.start())
    if meta_problem:
        problems.append(meta_problem)
    module.metadata = meta
    module.title = str(meta.get("title") or "")
    module.description = str(meta.get("description") or "")
    custom = meta.get("custom") if isinstance(meta.get("custom"), dict) else {}
    assert isinstance(custom, dict)
    mode = custom.get("mode", "enforce")
    if mode not in MODES:
        problems.append(Problem(file, f"METADATA custom.mode {mode!r} is not one of: enforce, shadow",
                                code="metadata", line=pkg_line))
        mode = "enforce"
    module.mode = str(mode)
    module.cluster = str(custom["cluster"]) if custom.get("cluster") is not None else None
    if custom.get("region") is not None:
        try:
            module.region = Region.from_list(custom["region"], where="METADATA custom.region")
        except ValidationError as exc:
            problems.append(Problem(file, exc.message, code="metadata", line=pkg_line))
    if module.is_rule:
        if not meta:
            problems.append(Problem(file, "rule module has no METADATA block (title, description, custom.mode)",
                                    code="metadata", line=pkg_line))
        elif not module.title:
            problems.append(Problem(file, "METADATA has no title", code="metadata", line=pkg_line))
        module.bodies = decision_bodies(text)
    return module, problems


def _metadata(file: str, text: str, package_at: int) -> tuple[dict[str, Any], Problem | None]:
    lines = text[:package_at].splitlines()
    start = None
    for i, line in enumerate(lines):
        if line.strip() == "# METADATA":
            start = i
    if start is None:
        return {}, None
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    try:
        meta = yaml.load("\n".join(block), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = start + 2 + (mark.line if mark else 0)
        return {}, Problem(file, f"METADATA is not valid YAML ({getattr(exc, 'problem', exc)})",
                           code="metadata", line=at)
    if not isinstance(meta, dict):
        return {}, Problem(file, "METADATA must be a YAML mapping", code="metadata", line=start + 1)
    return meta, None


# Builtins no policy may call, on any engine: rego-cpp's opa.runtime() hands the policy the
# evaluating process's whole environment (the gateway's tokens), and a decision must never
# wait on or reach the network. Rego has no dynamic calls, so a name scan of the code
# (comments and strings blanked) finds every call.
FORBIDDEN = {
    "opa.runtime": "opa.runtime() exposes the evaluating process's environment (tokens included)",
    "http.send": "http.send would make a decision wait on, and reach, the network",
    "net.lookup_ip_addr": "net.lookup_ip_addr would make a decision wait on DNS",
}
_FORBIDDEN = re.compile(r"(?<![\w.])(" + "|".join(n.replace(".", r"\s*\.\s*") for n in FORBIDDEN) + r")(?![\w])")


def forbidden_calls(file: str, text: str) -> list[Problem]:
    """A problem at each use of a builtin no policy may call (FORBIDDEN)."""
    code = _strip(text, blank_strings=True)
    out = []
    for m in _FORBIDDEN.finditer(code):
        if re.search(r"\bwith\s+$", code[max(0, m.start() - 20):m.start()]):
            continue  # `with http.send as mock` in a test replaces the builtin, it does not call it
        name = re.sub(r"\s+", "", m.group(1))
        line = code.count("\n", 0, m.start()) + 1
        col = m.start() - (code.rfind("\n", 0, m.start()) + 1) + 1
        out.append(Problem(file, f"{name} is not allowed in a policy: {FORBIDDEN[name]}", code="forbidden_builtin",
                           line=line, column=col))
    return out


# Brackets inside strings are swapped for private-use characters while scanning.
_HIDE = str.maketrans("{}[]()", "\ue000\ue001\ue002\ue003\ue004\ue005")
_SHOW = str.maketrans("\ue000\ue001\ue002\ue003\ue004\ue005", "{}[]()")


def _strip(text: str, *, blank_strings: bool = False) -> str:
    """Blank out comments and hide brackets inside strings, so bracket matching is exact; with
    blank_strings, blank string contents too (a name scan of the code). Same length, same lines."""
    def string(part: str) -> str:
        return "".join(ch if ch == "\n" else " " for ch in part) if blank_strings else part.translate(_HIDE)

    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(string(text[i:j + 1]))
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            j = n - 1 if j < 0 else j
            out.append(string(text[i:j + 1]))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _closing(text: str, open_at: int) -> int:
    depth = 0
    i = open_at
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def decision_bodies(text: str) -> list[Constraints] | None:
    """Index constraints of each `decisions contains … if { … }` body, or None if unsure.

    Sound by construction: only top-level equality or membership tests of `input.<path>`
    against literals are read; anything else leaves that path unconstrained, and a module
    that rebinds input (`with input`) or defines `decisions` another way is never skipped.
    """
    clean = _strip(text)
    if re.search(r"\bwith\s+input\b", clean) or re.search(r"^decisions\s*(:=|=|\[|contains\s+\w+\s*$)", clean, re.M):
        return None
    texts = _decision_body_texts(clean)
    return [_constraints(body) for body in texts] if texts else None


def decision_conditions(text: str) -> list[list[str]]:
    """The statements of each `decisions contains … if { … }` body, as written (comments dropped):
    what a rule's conditions are when no drafter's conditions describe them."""
    out = []
    for body in _decision_body_texts(_strip(text)) or []:
        statements = [s.strip().translate(_SHOW) for line in body.split("\n") for s in line.split(";")]
        out.append([s for s in statements if s])
    return out


def _decision_body_texts(clean: str) -> list[str] | None:
    """The text of each `decisions contains` rule's body in a stripped module, or None if one cannot be cut."""
    bodies: list[str] = []
    for m in re.finditer(r"^decisions\s+contains\b", clean, re.M):
        i = m.end()
        # skip the head term (which may hold braces) to the `if` at depth 0
        depth = 0
        while i < len(clean):
            c = clean[i]
            if c in "{[(":
                depth += 1
            elif c in "}])":
                depth -= 1
            elif depth == 0 and clean.startswith("if", i) and not clean[i - 1].isalnum() and not clean[i + 2:i + 3].isalnum():
                break
            i += 1
        else:
            return None
        rest = clean[i + 2:].lstrip(" \t")
        at = len(clean) - len(rest)
        if rest.startswith("{"):
            end = _closing(clean, at)
            if end < 0:
                return None
            bodies.append(clean[at + 1:end])
        else:
            bodies.append(rest.split("\n", 1)[0])
    return bodies


@dataclass(frozen=True)
class RouteHead:
    """A `decisions` rule whose head answers `route`: its params (None when not a constant) and line."""

    line: int
    params: Any
    action_types: frozenset[str] | None  # the literal input.action.type values its body requires, if any


def route_heads(text: str) -> list[RouteHead]:
    """Every `decisions contains {"action": "route", "params": …}` head, with constant params parsed."""
    clean = _strip(text)
    bodies = decision_bodies(text) or []
    out: list[RouteHead] = []
    for n, m in enumerate(re.finditer(r"^decisions\s+contains\s*\{", clean, re.M)):
        open_at = m.end() - 1
        end = _closing(clean, open_at)
        if end < 0:
            continue
        head = clean[open_at:end + 1]
        if not re.search(r'"action"\s*:\s*"route"', head.translate(_SHOW)):
            continue
        line = clean.count("\n", 0, m.start()) + 1
        params: Any = None
        pm = re.search(r'"params"\s*:\s*\{', head)
        if pm:
            p_end = _closing(head, pm.end() - 1)
            params = _params_literal(head[pm.end() - 1:p_end + 1])
        types = None
        if n < len(bodies) and "action.type" in bodies[n]:
            types = frozenset(str(v) for _, v in bodies[n]["action.type"])
        out.append(RouteHead(line, params, types))
    return out


COMPUTED = "\ue010computed"  # a params leaf whose value a variable or call gives


def _params_literal(text: str) -> Any:
    """A params object as JSON, its non-literal leaves (`alternative`, `order[0]`) as COMPUTED, or None
    when its keys or structure are not literal."""
    try:
        return json.loads(text.translate(_SHOW))
    except ValueError:
        pass
    # a leaf is whatever follows `:` up to `,` or `}` at the same depth; replace non-literals
    out, i, depth_stack = [], 0, []
    while i < len(text):
        c = text[i]
        out.append(c)
        if c in "{[":
            depth_stack.append(c)
        elif c in "}]":
            if depth_stack:
                depth_stack.pop()
        elif c == ":" and depth_stack and depth_stack[-1] == "{":
            j = i + 1
            while j < len(text) and text[j] in " \t\n":
                j += 1
            if j < len(text) and text[j] not in "{[":
                k, nest = j, 0
                while k < len(text) and not (nest == 0 and text[k] in ",}"):
                    nest += text[k] in "([{"
                    nest -= text[k] in ")]}"
                    k += 1
                leaf = text[j:k].strip()
                try:
                    json.loads(leaf.translate(_SHOW))
                    out.append(" " + leaf)
                except ValueError:
                    out.append(" " + json.dumps(COMPUTED))
                i = k
                continue
        i += 1
    try:
        return json.loads("".join(out).translate(_SHOW))
    except ValueError:
        return None


def _literal(text: str) -> Any:
    return json.loads(text.translate(_SHOW))


def _constraints(body: str) -> Constraints:
    out: Constraints = {}
    depth = 0
    statement: list[str] = []
    statements: list[str] = []
    for c in body:
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        if depth == 0 and c in "\n;":
            statements.append("".join(statement).strip())
            statement = []
        else:
            statement.append(c)
    statements.append("".join(statement).strip())
    for s in statements:
        values: list[Any]
        if m := _EQ.match(s):
            path, values = m.group(1)[1:], [_literal(m.group(2))]
        elif m := _EQ_REV.match(s):
            path, values = m.group(2)[1:], [_literal(m.group(1))]
        elif m := _IN.match(s):
            path, values = m.group(1)[1:], [_literal(v) for v in _LITERALS.findall(m.group(2))]
        else:
            continue
        allowed = frozenset(tag(v) for v in values)
        out[path] = out[path] & allowed if path in out else allowed
    return out
