"""Typed records of the data formats: Event, Decision, Fixture, OverrideHeader. No I/O."""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from policyctl.bounds import MAX_OVERRIDE_BYTES, MAX_PRIORITY, MIN_PRIORITY
from policyctl.errors import ValidationError
from policyctl.model.schema import schema_errors

ACTIONS = ("allow", "deny", "route", "arbitrate", "negotiate")
# `diverted`: the interaction did not happen as the agent asked (a decision rewrote its intent)
STATUSES = ("ok", "denied", "crash", "deadlock", "timeout", "error", "diverted")
FAILURES = frozenset({"crash", "deadlock", "timeout", "error", "diverted"})
KINDS = ("action", "conflict")


def _check(name: str, record: Any, where: str, root: str = "") -> None:
    errors = schema_errors(name, record, root)
    if errors:
        path, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(message + more, path=path, where=where)


def validate_input(value: Any, *, where: str = "", root: str = "input") -> dict[str, Any]:
    """Check an input against the Input schema; return it unchanged."""
    _check("input", value, where, root)
    assert isinstance(value, dict)
    return value


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    file: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "file": self.file, "message": self.message}


@dataclass(slots=True)
class Decision:
    """What the gateway answers. `error` is set when the policy set could not decide."""

    action: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    revision: str | None = None
    decision_id: str | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "action": self.action,
            "params": self.params,
            "reasons": [r.to_dict() for r in self.reasons],
            "source": self.source,
            "revision": self.revision,
            "shadow": self.shadow,
        }
        if self.fired:
            out["fired"] = self.fired
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> Decision:
        _check("decision", data, where)
        return cls(
            action=data["action"],
            source=data["source"],
            params=dict(data.get("params") or {}),
            reasons=[Reason(r["rule"], r.get("file"), r.get("message", "")) for r in data.get("reasons", [])],
            revision=data.get("revision"),
            decision_id=data.get("decision_id"),
            shadow=list(data.get("shadow") or []),
            fired=list(data.get("fired") or []),
            error=data.get("error"),
        )


@dataclass(slots=True)
class Event:
    """One exported-log line. `raw` keeps every field, known or not."""

    id: str
    input: dict[str, Any]
    raw: dict[str, Any]
    ts: str | None = None

    @property
    def status(self) -> str | None:
        outcome = self.raw.get("outcome")
        return outcome.get("status") if isinstance(outcome, dict) else None

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    @property
    def decision(self) -> dict[str, Any] | None:
        d = self.raw.get("decision")
        return d if isinstance(d, dict) else None

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "") -> Event:
        _check("event", data, where)
        return cls(id=data["id"], input=data["input"], raw=data, ts=data.get("ts"))


@dataclass(slots=True)
class Fixture:
    """One regression case: an input and the subset of the decision it must produce."""

    id: str
    input: dict[str, Any]
    expect: dict[str, Any]
    raw: dict[str, Any]
    why: str | None = None
    origin: str | None = None
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else self.id

    @classmethod
    def from_dict(cls, data: Any, *, file: str = "", line: int = 0) -> Fixture:
        _check("fixture", data, f"{file}:{line}" if file else "")
        return cls(id=data["id"], input=data["input"], expect=data["expect"], raw=data,
                   why=data.get("why"), origin=data.get("origin"), file=file, line=line)


# OVERRIDE -> match -> a list of values: nothing deeper means anything.
MAX_HEADER_DEPTH = 3
# Integers beyond 64 bits cannot be encoded for the status or the decision log.
_INT64 = 2**63
# Dotted input paths, matched whole: `$` would accept "kind\n".
MATCH_KEY = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
# C0 and C1 controls but tab and newline (ANSI escapes start with ESC or CSI), DEL, the
# bidirectional marks, embeddings, overrides and isolates, and lone surrogates (not encodable).
_UNSAFE_DOC = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
                      r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z")

# The stable codes of header problems: `policyctl check`, `override test` and the gateway's build
# report each under its own code.
OVERRIDE_HEADER_CODES = (
    "override_header",           # no header, not a literal dict, a missing or unknown field, no decide()
    "override_too_large",        # the script is over MAX_OVERRIDE_BYTES
    "override_header_rebound",   # OVERRIDE bound, changed or deleted anywhere but its one header
    "override_match_key",        # a match key that is not a dotted path
    "override_match_value",      # a match value that is not a JSON scalar or a list of them
    "override_priority",         # not an integer within MIN_PRIORITY..MAX_PRIORITY
    "override_expires",          # not RFC 3339 with a timezone, or out of range
    "override_doc_unsafe",       # control or bidirectional characters in the docstring
)


@dataclass(frozen=True, slots=True)
class OverrideHeader:
    """The OVERRIDE dict of an override script, read without running the script."""

    name: str
    file: str
    doc: str
    match: dict[str, Any]
    expires: datetime
    priority: int = 0
    timeout_ms: int | None = None
    line: int = 0          # the `OVERRIDE = {...}` statement
    expires_line: int = 0  # the "expires" entry
    doc_line: int = 1      # the docstring's first line

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def selects(self, input: dict[str, Any]) -> bool:
        """Whether `match` selects the input: every dotted path equals its value (a list: one of)."""
        for path, want in self.match.items():
            got: Any = input
            for part in path.split("."):
                if not isinstance(got, dict) or part not in got:
                    return False
                got = got[part]
            if isinstance(want, list):
                if not any(_same(got, w) for w in want):
                    return False
            elif not _same(got, want):
                return False
        return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with a timezone, in UTC; ValueError (never OverflowError) when it is not one."""
    found = _RFC3339.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError("not RFC 3339 with a timezone: write it as 2026-11-28T00:00:00Z "
                         "(a date, T, a time, then Z or an offset such as +02:00)")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = found.groups()
    if not zulu and (int(off_h) > 23 or int(off_m) > 59):
        raise ValueError(f"the offset {sign}{off_h}:{off_m} is out of range (at most ±23:59)")
    try:
        tz = UTC if zulu else timezone((-1 if sign == "-" else 1) * timedelta(hours=int(off_h), minutes=int(off_m)))
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "0").ljust(6, "0")[:6]), tzinfo=tz)
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13, second 60, or past year 9999 once in UTC
        raise ValueError(f"out of range ({exc}); an expiry is days or weeks ahead") from None


def parse_override_header(source: str, *, file: str) -> OverrideHeader:
    """Read the docstring and OVERRIDE header of an override script without executing it.

    The header must be one literal dict of JSON values assigned once at module level;
    anything computed is refused, because the header is read outside the sandbox. Every
    problem, whatever the file holds, is a ValidationError naming file:line (its `code` is
    one of OVERRIDE_HEADER_CODES); nothing else escapes.
    """
    try:
        return _parse_header(source, file)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input: whatever slips past the checks stays this file's problem
        raise _refused(f"cannot be read ({type(exc).__name__})", file=file) from exc


def _refused(message: str, *, file: str, line: int | None = None, path: str = "",
             code: str = "override_header") -> ValidationError:
    exc = ValidationError(message, path=path, where=f"{file}:{line}" if line else file)
    exc.code = code
    return exc


def _parse_header(source: str, file: str) -> OverrideHeader:
    name = file.rsplit("/", 1)[-1].removesuffix(".py")
    data = source.encode("utf-8", "surrogatepass")
    if len(data) > MAX_OVERRIDE_BYTES:
        line = data.count(b"\n", 0, MAX_OVERRIDE_BYTES) + 1
        raise _refused(f"the script is {len(data)} bytes; the limit is {MAX_OVERRIDE_BYTES}, passed on this line, "
                       "and nothing was parsed (an override is a short emergency measure: move logic into a policy)",
                       file=file, line=line, code="override_too_large")
    try:
        tree = ast.parse(source, filename=file)
    except SyntaxError as exc:
        raise _refused(f"not valid Python: {exc.msg}", file=file, line=exc.lineno or 1) from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, or nested too deeply for the parser
        raise _refused(f"cannot be parsed ({type(exc).__name__}: expressions nested too deeply or a null byte)",
                       file=file, line=1) from exc
    doc_node = tree.body[0] if tree.body else None
    raw_doc = ast.get_docstring(tree, clean=False) or ""
    if not raw_doc.strip() or doc_node is None:
        raise _refused("the module docstring (why this override exists) is missing", file=file, line=1)
    _check_doc(raw_doc, doc_node, file)
    header_node = _header_statement(tree, file)
    line = header_node.lineno
    lines: dict[str, int] = {"OVERRIDE": line}
    header = _json_value(header_node.value, "OVERRIDE", 1, lines, file)
    if not isinstance(header, dict):
        raise _refused("OVERRIDE must be a literal dict (no names or calls)", file=file, line=line)
    _check_fields(header, lines, file)
    errors = schema_errors("override_header", header, "OVERRIDE")
    if errors:
        path, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _refused(message + more, path=path, file=file, line=_line_of(path, lines), code=_code_of(path))
    if not any(isinstance(node, ast.FunctionDef) and node.name == "decide" for node in tree.body):
        raise _refused("no `def decide(input):` function", file=file)
    try:
        expires = parse_rfc3339(header["expires"])
    except ValueError as exc:
        shown = repr(header["expires"])
        raise _refused(f"{shown if len(shown) <= 60 else shown[:57] + '...'}: {exc}", path="OVERRIDE.expires", file=file,
                       line=lines["OVERRIDE.expires"], code="override_expires") from None
    return OverrideHeader(name=name, file=file, doc=(ast.get_docstring(tree) or "").strip(), match=header["match"],
                          expires=expires, priority=header.get("priority", 0), timeout_ms=header.get("timeout_ms"),
                          line=line, expires_line=lines["OVERRIDE.expires"], doc_line=doc_node.lineno)


def _check_doc(raw: str, node: ast.stmt, file: str) -> None:
    """The docstring becomes the decision's reason, shown in terminals and logs: no escapes, no bidi tricks."""
    found = _UNSAFE_DOC.search(raw)
    if found is None:
        return
    char = found.group()
    label = unicodedata.name(char, "") if not 0xD800 <= ord(char) <= 0xDFFF else "a lone surrogate"
    line = node.lineno + raw.count("\n", 0, found.start())
    if line > (node.end_lineno or node.lineno):  # the newlines were escapes: say where the docstring starts
        line = node.lineno
    raise _refused(f"the docstring contains U+{ord(char):04X}{f' ({label})' if label else ''}: control and "
                   "bidirectional characters are refused, since the docstring becomes the decision's reason and "
                   "could disguise it in a terminal or a log; remove it", file=file, line=line,
                   code="override_doc_unsafe")


def _header_statement(tree: ast.Module, file: str) -> ast.Assign:
    """The one top-level `OVERRIDE = {...}`; any other binding of the name is refused where it is.

    A second assignment (or `+=`, an annotation, a loop, an import, a `del`, a change in place)
    would make the header that was reviewed not the one that applies.
    """
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    header: ast.Assign | None = None
    others: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        for line, how in _bindings(node, parents):
            parent = parents.get(id(node))
            if (header is None and isinstance(parent, ast.Assign) and parent in tree.body
                    and parent.targets == [node]):
                header = parent
            else:
                others.append((line, how))
    if header is None and not others:
        raise _refused("no OVERRIDE = {...} header at module level", file=file)
    if others:
        line, how = min(others)
        where = (f"the header is at line {header.lineno}" if header is not None
                 else "there is no plain top-level OVERRIDE = {...}")
        raise _refused(f"OVERRIDE is {how} here ({where}): exactly one top-level `OVERRIDE = {{...}}` is allowed "
                       "and nothing else may bind or change it, or the header that applies would not be the one "
                       "reviewed", file=file, line=line, code="override_header_rebound")
    assert header is not None
    return header


def _bindings(node: ast.AST, parents: dict[int, ast.AST]) -> list[tuple[int, str]]:
    """Where `node` binds, deletes or changes the name OVERRIDE, and how."""
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Name) and node.id == "OVERRIDE" and not isinstance(node.ctx, ast.Load):
        parent = parents.get(id(node))
        if isinstance(node.ctx, ast.Del):
            return [(line, "deleted")]
        if isinstance(parent, ast.AugAssign):
            return [(line, "changed by an augmented assignment")]
        if isinstance(parent, ast.AnnAssign):
            return [(line, "assigned with an annotation")]
        if isinstance(parent, ast.For | ast.comprehension):
            return [(line, "a loop variable")]
        if isinstance(parent, ast.NamedExpr):
            return [(line, "assigned with :=")]
        return [(line, "assigned")]
    if isinstance(node, ast.Subscript | ast.Attribute) and not isinstance(node.ctx, ast.Load):
        base = node.value
        if isinstance(base, ast.Name) and base.id == "OVERRIDE":
            return [(line, "changed in place")]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == "OVERRIDE":
        return [(line, "redefined by a def or class")]
    if isinstance(node, ast.alias) and (node.asname or node.name.split(".")[0]) == "OVERRIDE":
        return [(line, "bound by an import")]
    if isinstance(node, ast.Global | ast.Nonlocal) and "OVERRIDE" in node.names:
        return [(line, "declared global")]
    if isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name == "OVERRIDE":
        return [(line, "bound by an except or case clause")]
    if isinstance(node, ast.MatchMapping) and node.rest == "OVERRIDE":
        return [(line, "bound by a case clause")]
    return []


def _json_value(node: ast.expr, path: str, depth: int, lines: dict[str, int], file: str) -> Any:
    """A literal as JSON data (str, int within 64 bits, finite float, bool, None, list, dict with str keys)."""
    line = getattr(node, "lineno", None)
    code = _code_of(path)

    def refuse(why: str) -> ValidationError:
        return _refused(why, path=path, file=file, line=line, code=code)

    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if not -_INT64 <= value < _INT64:
                raise refuse(f"{value} does not fit in 64 bits")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise refuse(f"{value} is not a finite number")
            return value
        if isinstance(value, str):
            if _lone_surrogate(value):
                raise refuse("the string holds a lone surrogate (not valid Unicode)")
            return value
        raise refuse(f"{_kind(value)} is not JSON data: use a string, a number, true/false, None, a list or a dict")
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        number = _json_value(node.operand, path, depth, lines, file)
        return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.List | ast.Dict) and depth > MAX_HEADER_DEPTH:
        raise refuse("nested too deeply: the header is OVERRIDE -> match -> a list of values")
    if isinstance(node, ast.List):
        out: list[Any] = []
        for i, item in enumerate(node.elts):
            lines[f"{path}[{i}]"] = getattr(item, "lineno", line or 0)
            out.append(_json_value(item, f"{path}[{i}]", depth + 1, lines, file))
        return out
    if isinstance(node, ast.Dict):
        entries: dict[str, Any] = {}
        for key, value_node in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                at = line if key is None else key.lineno
                raise _refused("keys must be literal strings (no ** and no other types)", path=path, file=file,
                               line=at, code=code)
            child = f"{path}.{key.value}"
            if key.value in entries:
                raise _refused(f"the key {key.value!r} is given twice (first at line {lines[child]}): Python would "
                               "keep only the last one", path=child, file=file, line=key.lineno, code=_code_of(child))
            if _lone_surrogate(key.value):
                raise _refused("a key holds a lone surrogate (not valid Unicode)", path=path, file=file,
                               line=key.lineno, code=code)
            lines[child] = key.lineno
            entries[key.value] = _json_value(value_node, child, depth + 1, lines, file)
        return entries
    kinds = {ast.Tuple: "a tuple (use a list)", ast.Set: "a set (use a list)", ast.JoinedStr: "an f-string",
             ast.Call: "a call", ast.Name: "a name", ast.BinOp: "an operator", ast.UnaryOp: "an operator",
             ast.BoolOp: "an operator", ast.Compare: "a comparison", ast.Starred: "unpacking (*)"}
    what = next((label for t, label in kinds.items() if isinstance(node, t)), "an expression")
    raise refuse(f"{what} is not allowed: OVERRIDE must be a literal dict of JSON values (strings, numbers, "
                 "True/False, None, lists, dicts), with no names, calls or operators")


def _check_fields(header: dict[str, Any], lines: dict[str, int], file: str) -> None:
    """What the schema cannot say well: match keys matched whole, match values, integer priority."""
    match = header.get("match")
    if isinstance(match, dict):
        for key, want in match.items():
            path = f"OVERRIDE.match.{key}"
            if not MATCH_KEY.fullmatch(key):
                raise _refused(f"key {key!r} is not a dotted input path (letters, digits and _ between dots, "
                               "nothing else)", path="OVERRIDE.match", file=file, line=lines[path],
                               code="override_match_key")
            values = want if isinstance(want, list) else [want]
            if isinstance(want, list) and not want:
                raise _refused("an empty list selects nothing: give at least one value", path=path, file=file,
                               line=lines[path], code="override_match_value")
            for value in values:
                if isinstance(value, list | dict):
                    raise _refused(f"{_kind(value)} cannot be matched: a match value is a JSON scalar (string, "
                                   "number, true/false, None) or a list of them", path=path, file=file,
                                   line=lines[path], code="override_match_value")
    for name, low, high, code in (("priority", MIN_PRIORITY, MAX_PRIORITY, "override_priority"),
                                  ("timeout_ms", 1, 2000, "override_header")):
        if name not in header:
            continue
        value = header[name]
        path = f"OVERRIDE.{name}"
        if type(value) is not int or not low <= value <= high:
            raise _refused(f"{value!r} is not an integer from {low} to {high}", path=path, file=file,
                           line=lines[path], code=code)


def _code_of(path: str) -> str:
    """The problem code of a schema error at a field path."""
    for prefix, code in (("OVERRIDE.match", "override_match_value"), ("OVERRIDE.priority", "override_priority"),
                         ("OVERRIDE.expires", "override_expires")):
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return code
    return "override_header"


def _line_of(path: str, lines: dict[str, int]) -> int:
    """The line of a field path, or of the nearest enclosing field that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path.rpartition(".")[0] if "." in path else ""
    return lines["OVERRIDE"]


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _kind(value: Any) -> str:
    names = {bytes: "bytes", complex: "a complex number", type(Ellipsis): "Ellipsis (...)", list: "a list",
             dict: "a dict"}
    return names.get(type(value), type(value).__name__)
