"""Run one compiled override script on one input, in the current process, and classify what happened.

The worker processes call this for every request; the benchmark calls it directly as the
in-process baseline. It is never called in the gateway's own process: in-process, nothing
bounds the script's CPU, memory or wall-clock time.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

from policyctl.sandbox.errors import (
    OverrideRuntimeError,
    SandboxError,
    SandboxLimitError,
    SandboxViolation,
)
from policyctl.sandbox.guards import OutputExceeded, RunContext, make_globals
from policyctl.sandbox.limits import MAX_MESSAGE_CHARS
from policyctl.sandbox.render import safe_str
from policyctl.sandbox.result import check_plain


@dataclass
class Execution:
    """What one run produced: the plain result (not yet checked as a decision) and its print output."""

    result: Any
    printed: str


def execute(code: types.CodeType, input: Any, *, file: str, ctx: RunContext | None = None) -> Execution:
    """Run the module body with fresh globals, then `decide(input)`; raise a SandboxError on any failure.

    `input` must be the script's own copy: the script may change it.
    """
    ctx = ctx if ctx is not None else RunContext(file)
    scope = make_globals(ctx)
    try:
        exec(code, scope)
        decide = scope.get("decide")
        if type(decide) is not types.FunctionType:
            raise SandboxViolation("the script defines no decide(input) function", file=file)
        result = decide(input)
    except SandboxError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends from a script are its failure too
        raise _classify(exc, ctx, file) from None
    finally:
        # Drop the run's namespace now: nothing of it may be reachable from the next run.
        scope.clear()
    if ctx.output_exceeded:
        raise SandboxLimitError(f"print() output passed {ctx.max_print_chars} characters", file=file)
    if ctx.violations:
        # The script caught the refusal and carried on; probing the sandbox still fails the run.
        raise SandboxViolation(_cut(ctx.violations[0]), file=file, line=ctx.violation_line)
    check_plain(result, file=file)
    return Execution(result, "".join(ctx.printed))


def _classify(exc: BaseException, ctx: RunContext, file: str) -> SandboxError:
    line = _script_line(exc, file)
    if isinstance(exc, OutputExceeded) or ctx.output_exceeded:
        return SandboxLimitError(f"print() output passed {ctx.max_print_chars} characters", file=file, line=line)
    if ctx.violations:
        return SandboxViolation(_cut(ctx.violations[0]), file=file, line=ctx.violation_line or line)
    if isinstance(exc, MemoryError | RecursionError):
        error = SandboxLimitError("out of memory (the worker's memory limit)" if isinstance(exc, MemoryError)
                                  else "recursion too deep", file=file, line=line)
        # The process came close to its limits: replace it rather than trust its heap or stack.
        error.retire_worker = True
        return error
    if isinstance(exc, NameError):
        # A name the sandbox does not offer (open, __import__, type…) or a plain typo.
        return OverrideRuntimeError(f"NameError: {_message(exc)}", file=file, line=line)
    return OverrideRuntimeError(f"{type(exc).__name__}: {_message(exc)}", file=file, line=line)


def _script_line(exc: BaseException, file: str) -> int | None:
    """The line of the script's innermost frame in the traceback (guards and builtins are skipped)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _message(exc: BaseException) -> str:
    try:
        text = safe_str(exc)  # KeyError(decide) would show the worker's heap address
    except BaseException:  # noqa: BLE001 - a message that cannot be rendered is not worth failing over
        text = "(unprintable)"
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."
