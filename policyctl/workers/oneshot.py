"""One-shot children: call a function in a fresh interpreter that may die, and learn how far it got.

For work that can kill the process doing it (an engine that aborts through
`std::terminate` or segfaults): the child reports each step as it goes, over its stdout,
and its result or its error; the parent gets the steps, and the signal when it died,
instead of dying itself. Unlike the long-lived workers (frames, hello, replacement),
a one-shot child answers one request and exits. Used by `policyctl.engine.guarded`
(check, decide, test on an engine that can abort).
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policyctl.errors import PolicyCompileError, PolicyctlError, Problem
from policyctl.workers.lifecycle import PACKAGE_ROOT, python_command, signal_name

Report = Callable[[Any], None]


@dataclass
class ChildRun:
    """What a child reported: its steps in order and its result, or the signal that ended it."""

    steps: list[Any] = field(default_factory=list)
    result: Any = None
    died: str | None = None  # "SIGABRT", "SIGSEGV", …
    detail: str = ""  # the engine's last words on stderr


def run_in_child(function: Callable[..., Any], *args: Any) -> ChildRun:
    """Call the module-level `function(report, *args)` in a fresh interpreter and return what it did.

    `report(step)` records how far the child got. A PolicyctlError in the child is raised
    here again; a death by signal is returned (run.died), never suffered.
    """
    request = pickle.dumps((function.__module__, function.__qualname__, args))
    # PACKAGE_ROOT first, so the child imports this very policyctl
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(python_command(__name__), input=request, capture_output=True, env=env, check=False)
    run = ChildRun()
    finished = False
    stream = io.BytesIO(done.stdout)
    while True:
        try:
            kind, value = pickle.load(stream)
        except EOFError:
            break
        except (pickle.UnpicklingError, ValueError, TypeError):
            break  # a frame cut short by the death
        if kind == "step":
            run.steps.append(value)
        elif kind == "result":
            run.result, finished = value, True
        elif kind == "error":
            raise _rebuild(value)
    if done.returncode < 0:
        run.died = signal_name(-done.returncode)
        run.detail = _last_words(done.stderr)
    elif not finished:
        raise PolicyctlError(f"the engine's child process exited with status {done.returncode}: "
                             f"{_last_words(done.stderr) or 'no message'}", code="engine_child_failed")
    elif done.stderr:
        sys.stderr.write(done.stderr.decode("utf-8", errors="replace"))
    return run


def _last_words(stderr: bytes) -> str:
    """The line that says why (rego-cpp: `what():  shape … has no field …`), without the boilerplate."""
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("what():"):
            return line.removeprefix("what():").strip()[:300]
    return lines[-1][:300] if lines else ""


def _describe(exc: PolicyctlError) -> dict[str, Any]:
    problems = exc.problems if isinstance(exc, PolicyCompileError) else []
    return {"type": f"{type(exc).__module__}:{type(exc).__qualname__}", "message": exc.message, "code": exc.code,
            "problems": [p.to_dict() for p in problems]}


def _rebuild(error: dict[str, Any]) -> PolicyctlError:
    """The child's error as the same class where it can be rebuilt from its message, else a PolicyctlError."""
    module, _, name = str(error["type"]).partition(":")
    problems = [Problem(**p) for p in error.get("problems") or []]
    try:
        cls = getattr(importlib.import_module(module), name)
        exc: PolicyctlError = cls(error["message"], problems=problems) if issubclass(cls, PolicyCompileError) \
            else cls(error["message"])
    except Exception:  # noqa: BLE001 - a class that needs more than a message: keep message and code
        exc = PolicyCompileError(error["message"], problems=problems) if problems else PolicyctlError(error["message"])
    exc.code = str(error["code"])
    return exc


def main(argv: list[str] | None = None) -> int:
    """`python -m policyctl.workers.oneshot`: a pickled (module, function, args) on stdin, steps on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an engine abort is expected here: no core dump
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to stderr, never into a frame

    def send(frame: tuple[str, Any]) -> None:
        data = memoryview(pickle.dumps(frame))
        while data:
            data = data[os.write(out, data):]

    module, name, args = pickle.load(sys.stdin.buffer)
    function = getattr(importlib.import_module(module), name)
    try:
        result = function(lambda step: send(("step", step)), *args)
    except PolicyctlError as exc:
        send(("error", _describe(exc)))
        return 0
    send(("result", result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
