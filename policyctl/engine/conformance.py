"""OPA's own conformance cases run on our Rego engines, each engine in child processes that may crash.

A case (see conformance/opa/README.md) names Rego modules, data, an input and a query, and
the result OPA gives: rows of variable bindings, or an error code. Engines are the
libraries themselves (regopy, regorus), not policyctl's `Engine` wrappers, so a divergence
measured here is the library's. rego-cpp aborts on some modules and segfaults on deep
input, and both libraries can spin on a crafted regex: every case is evaluated in a child
process under a deadline, so a crash or a hang is that case's failure and the run goes on.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

from policyctl.errors import EvaluationError, InputError, Problem

ENGINES = ("regopy", "regorus")
DEFAULT_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 120.0
MODULE_FILE = "test-{}.rego"  # OPA's harness names modules so; its want_error texts cite them

# An outcome crosses the process boundary as plain data:
#   ("rows", [bindings, ...])                 the query's result set ([] = undefined)
#   ("error", phase, code, message)           phase "compile", "eval" or "" when unknown
#   ("unrepresentable", why)                  the engine's API cannot express the case
#   ("crash", why)                            the engine panicked (a child that dies is one too)
Outcome = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    """One conformance case: `note` is unique across the loaded set, `spec` is its YAML mapping."""

    note: str
    topic: str
    file: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class CaseResult:
    """What one engine did with one case; `reason` says why it failed."""

    note: str
    topic: str
    file: str
    engine: str
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"note": self.note, "topic": self.topic, "file": self.file, "engine": self.engine,
                "passed": self.passed, "reason": self.reason}


# --------------------------------------------------------------------------- loading


def case_roots(project: Path) -> list[Path]:
    """The case folders that exist: the shared first subset beside the project, then the project's own."""
    candidates = [project.parent / "shared" / "opa-conformance" / "cases", project / "conformance" / "opa" / "cases"]
    return [root for root in candidates if root.is_dir()]


class _CaseLoader(yaml.SafeLoader):
    """YAML as OPA's Go loader reads it: timestamps stay strings (they are JSON there)."""


_CaseLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_cases(path: Path, rel: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_CaseLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(str(Problem(rel, f"not YAML ({exc}); fix or remove the file",
                                     code="conformance_case_invalid", line=line))) from exc
    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "note" in c for c in cases):
        raise InputError(str(Problem(rel, "needs a top-level `cases:` list of mappings, each with a `note`",
                                     code="conformance_case_invalid")))
    return cases


def load_cases(roots: Iterable[Path]) -> list[Case]:
    """Every case under `roots` (`<root>/<topic>/<file>.yaml`), in file order.

    A file present under two roots is read once (the first root wins). OPA repeats a note
    inside one file for variations of one test; the k-th repeat is named `note #k` so that
    every case keeps a stable, unique name that pass lists can record.
    """
    seen_files: set[str] = set()
    by_note: dict[str, str] = {}
    out: list[Case] = []
    for root in roots:
        files = sorted(p for p in root.glob("*/*") if p.suffix in (".yaml", ".yml"))
        for path in files:
            rel = f"{path.parent.name}/{path.name}"
            if rel in seen_files:
                continue
            seen_files.add(rel)
            repeats: dict[str, int] = {}
            for spec in _read_cases(path, rel):
                base = str(spec["note"])
                repeats[base] = repeats.get(base, 0) + 1
                note = base if repeats[base] == 1 else f"{base} #{repeats[base]}"
                if by_note.get(note, rel) != rel:
                    note = f"{note} ({rel})"
                by_note[note] = rel
                out.append(Case(note=note, topic=path.parent.name, file=rel, spec=spec))
    return out


# --------------------------------------------------------------------------- judging


def _canonical(value: Any) -> Any:
    """A value in one spelling: integral floats as ints (OPA numbers are untyped), bools apart from 1/0."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False)


def _error_code_phase(code: str) -> str:
    return "compile" if code.startswith("rego_") else "eval" if code.startswith("eval_") else ""


def judge(spec: dict[str, Any], outcome: Outcome) -> str:
    """Why `outcome` does not meet the case's expectation, or "" when it does.

    Results: the rows, restricted to the variables the expected rows bind, must equal the
    expected rows (in order unless `sort_bindings`). Errors: the engine must fail; when it
    reports an error code the code must be OPA's, and when it reports none, the phase
    (compile for `rego_*`, evaluation for `eval_*`) must agree. Messages are not compared:
    each engine words them its own way.
    """
    kind = outcome[0]
    if kind == "unrepresentable":
        return f"unrepresentable: {outcome[1]}"
    if kind == "crash":
        return f"crash: {outcome[1]}"
    want_code = str(spec.get("want_error_code") or "")
    want_error = spec.get("want_error")
    if want_code or want_error is not None:
        if kind != "error":
            return f"want error {want_code or want_error!r}, got result {_key(outcome[1])[:200]}"
        _, phase, code, message = outcome
        want_code = want_code or next(iter(re.findall(r"\b(?:eval|rego)_[a-z_]+", str(want_error))), "")
        if want_code and code and code != want_code:
            return f"want error {want_code}, got {code}: {message[:200]}"
        want_phase = _error_code_phase(want_code)
        if want_code and not code and phase and want_phase and phase != want_phase:
            return f"want error {want_code} ({want_phase}), got a {phase} error: {message[:200]}"
        return ""
    if kind == "error":
        _, phase, code, message = outcome
        return f"error ({code or phase or 'no code'}): {message[:300]}"
    want_rows = spec.get("want_result")
    if want_rows is None:
        return ""  # a case without expectations only has to evaluate
    names = {k for row in want_rows for k in row}
    got = [_key({k: v for k, v in row.items() if k in names}) for row in outcome[1]]
    want = [_key(row) for row in want_rows]
    if spec.get("sort_bindings"):
        got, want = sorted(got), sorted(want)
    if got != want:
        return f"want {'; '.join(want)[:250]} got {'; '.join(got)[:250] or 'undefined'}"
    return ""


# --------------------------------------------------------------------------- engines (run in the child)


def _modules(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(MODULE_FILE.format(i), text) for i, text in enumerate(spec.get("modules") or [])]


def _regopy_errors(impl: Any) -> tuple[str, str]:
    """(code, message) of the first error in rego-cpp's error node (errorseq > error > msg, ast, code)."""
    from regopy import NodeKind
    from regopy import rego_shared as rs

    found: dict[NodeKind, str] = {}

    def walk(node: Any) -> None:
        kind = rs.rego_node_type(node)
        if kind in (NodeKind.ErrorMessage, NodeKind.ErrorCode) and kind not in found:
            found[kind] = rs.rego_node_value(node)
        for i in range(rs.rego_node_size(node)):
            walk(rs.rego_node_get(node, i))

    walk(impl)
    return found.get(NodeKind.ErrorCode, ""), found.get(NodeKind.ErrorMessage, "")


def _sexpr_error(text: str) -> tuple[str, str]:
    """(code, message) from rego-cpp's S-expression error text (`(errormsg 12:…)`, `(rego-errorcode 15:…)`)."""
    msg = re.search(r"\(errormsg\s+(\d+):", text)
    message = text[msg.end():msg.end() + int(msg.group(1))] if msg else text.strip()[:300]
    code = re.search(r"\(rego-errorcode\s+\d+:([\w_]+)", text) or re.search(r"\b(eval_[a-z_]+|rego_[a-z_]+_error)\b", text)
    return (code.group(1) if code else ""), message


def _eval_regopy(spec: dict[str, Any]) -> Outcome:
    """rego-cpp: modules, data and input on a fresh Interpreter; one query compiles and evaluates."""
    from regopy import Input, Interpreter, LogLevel, RegoError
    from regopy import rego_shared as rs

    rego = Interpreter()
    rego.log_level = LogLevel.NONE
    rego.strict_built_in_errors = bool(spec.get("strict_error"))
    try:
        for name, text in _modules(spec):
            rego.add_module(name, text)
        if spec.get("data") is not None:
            rego.add_data_json(json.dumps(spec["data"], ensure_ascii=False))
        if spec.get("input_term") is not None:
            rego.set_input_term(str(spec["input_term"]))
        elif spec.get("input") is not None:
            rego.set_input(Input(spec["input"]))
        # The raw call: regopy's Output parses the text as JSON and fails on rego-cpp's
        # "(error …)" texts, which it reports with ok == True.
        out = rs.rego_query(rego._impl, str(spec["query"]))
    except RegoError as exc:
        code, message = _sexpr_error(str(exc))
        return ("error", _error_code_phase(code) or "compile", code, message)
    try:
        ok, text = rs.rego_output_ok(out), rs.rego_output_string(out)
        errors = None if ok else _regopy_errors(rs.rego_output_node(out))
    finally:
        rs.rego_free_output(out)
    if errors is not None:
        return ("error", _error_code_phase(errors[0]), *errors)
    if text.lstrip().startswith("(error"):
        code, message = _sexpr_error(text)
        return ("error", _error_code_phase(code), code, message)
    if text.strip() == "undefined":
        return ("rows", [])
    try:
        doc = json.loads(text)
    except ValueError:
        return ("error", "", "", f"the engine's output is not JSON: {text[:120]}")
    rows = doc if isinstance(doc, list) else [doc]
    return ("rows", [row.get("bindings", {}) for row in rows])


def _eval_regorus(spec: dict[str, Any]) -> Outcome:
    """Regorus: a fresh Engine in Rego v1; it has JSON input only and no error codes."""
    import regorus

    term = spec.get("input_term")
    input_json: str | None = None
    if term is not None:
        try:
            input_json = json.dumps(json.loads(str(term)))
        except ValueError:
            return ("unrepresentable", "input_term is Rego (not JSON) and Regorus takes JSON input only")
    elif spec.get("input") is not None:
        input_json = json.dumps(spec["input"], ensure_ascii=False)
    engine = regorus.Engine()
    engine.set_rego_v0(False)
    phase = "compile"
    try:
        for name, text in _modules(spec):
            engine.add_policy(name, text)
        if spec.get("data") is not None:
            engine.add_data_json(json.dumps(spec["data"], ensure_ascii=False))
        if input_json is not None:
            engine.set_input_json(input_json)
        phase = "eval"
        doc = json.loads(engine.eval_query_as_json(str(spec["query"])))
    except (RuntimeError, ValueError) as exc:
        message = next((ln for ln in str(exc).splitlines() if ln.startswith("error:")), str(exc).strip()[:300])
        return ("error", phase, "", message)
    return ("rows", [row.get("bindings", {}) for row in doc.get("result", [])])


EVALUATORS: dict[str, Callable[[dict[str, Any]], Outcome]] = {"regopy": _eval_regopy, "regorus": _eval_regorus}


_CHILD_ENV = ("LANG", "LC_ALL", "TZ")


def _child_main(engine: str, conn: Connection) -> None:
    """Evaluate the specs the parent sends, one outcome back for each, until it sends None."""
    # opa.runtime() hands a policy the whole process environment, and a case may print it
    # into its result: the child keeps only what evaluation needs, never the caller's secrets.
    kept = {k: v for k, v in os.environ.items() if k in _CHILD_ENV}
    os.environ.clear()
    os.environ.update(kept)
    os.environ["RUST_BACKTRACE"] = "0"  # Regorus would append a native backtrace to every message
    evaluate = EVALUATORS[engine]
    importlib.import_module(engine)  # loading the library is start-up, not the first case's time
    conn.send("ready")
    while True:
        spec = conn.recv()
        if spec is None:
            return
        try:
            outcome = evaluate(spec)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the harness must report, not die, on an engine's odd exception
            outcome = ("error", "", "", f"{type(exc).__name__}: {exc}"[:300])
        except BaseException as exc:  # a Rust panic reaches Python as pyo3's PanicException
            outcome = ("crash", f"{type(exc).__name__}: {exc}"[:300])
        conn.send(outcome)


# --------------------------------------------------------------------------- running (in the parent)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"crash: {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"crash: signal {-exitcode}"
    return f"crash: exit {exitcode}"


class _Child:
    """One child process evaluating cases for one engine; replaced after a crash or a timeout."""

    def __init__(self, engine: str, ctx: Any) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(engine, child_conn), daemon=True)
        self.proc.start()
        child_conn.close()
        # A case's deadline starts once the child is up: on a loaded machine, spawning and
        # importing the library can take longer than a short deadline.
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            reason = self.death()
            raise EvaluationError(f"the {engine} child process did not start ({reason}); "
                                  f"check that `import {engine}` works in this environment",
                                  code="engine_unavailable")

    def ask(self, spec: dict[str, Any], timeout_s: float) -> Outcome | None:
        """The outcome, or None when the child died or missed the deadline (then it is gone)."""
        try:
            self.conn.send(spec)
            if self.conn.poll(timeout_s):
                outcome: Outcome = self.conn.recv()
                return outcome
        except (EOFError, OSError):
            pass
        return None

    def death(self) -> str:
        """Why the child did not answer; kills it if it still runs (a hang)."""
        self.proc.join(0.5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
            self.conn.close()
            return "timeout"
        self.conn.close()
        return _death_reason(self.proc.exitcode)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _run_shard(engine: str, cases: Sequence[Case], timeout_s: float, ctx: Any) -> list[CaseResult]:
    results: list[CaseResult] = []
    child: _Child | None = None
    try:
        for case in cases:
            if child is None:
                child = _Child(engine, ctx)
            outcome = child.ask(case.spec, timeout_s)
            if outcome is None:
                reason = child.death()
                child = None
                if reason == "timeout":
                    reason = f"timeout ({timeout_s:g} s)"
            else:
                reason = judge(case.spec, outcome)
            results.append(CaseResult(case.note, case.topic, case.file, engine, not reason, reason))
    finally:
        if child is not None:
            child.close()
    return results


def run_cases(engine: str, cases: Sequence[Case], *, timeout_s: float = DEFAULT_TIMEOUT_S,
              processes: int | None = None) -> list[CaseResult]:
    """Each case on `engine`, in `processes` child processes (default: one per core, at most 4).

    Cases are dealt round-robin to the children; results come back in the order of `cases`.
    """
    if engine not in EVALUATORS:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(EVALUATORS)}")
    n = max(1, min(processes or min(os.cpu_count() or 1, 4), len(cases) or 1))
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that holds threads or engines
    shards = [list(cases[i::n]) for i in range(n)]
    outputs: list[list[CaseResult]] = [[] for _ in shards]

    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            outputs[i] = _run_shard(engine, shards[i], timeout_s, ctx)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    by_note = {r.note: r for out in outputs for r in out}
    return [by_note[c.note] for c in cases]
