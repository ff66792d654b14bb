"""Microsoft's rego-cpp through regopy: the only importer of regopy outside the conformance runner."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from policyctl.engine.base import ENTRYPOINT, QUERY, Program
from policyctl.engine.base import summary as _summary
from policyctl.engine.modules import RegoModule
from policyctl.errors import EvaluationError, PolicyCompileError, Problem


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
