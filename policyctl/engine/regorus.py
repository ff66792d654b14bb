"""Microsoft's Regorus (Rust) through the pinned `gordon-to-regorus` wheel."""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

import orjson

from policyctl.engine.base import ENTRYPOINT, Program
from policyctl.engine.modules import RegoModule
from policyctl.errors import EvaluationError, PolicyCompileError, Problem

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
