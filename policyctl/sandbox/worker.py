"""The third wall: a worker process that runs override scripts under resource limits, one at a time.

Started by the pool under `python -I` (`policyctl.workers.python_command(..., isolated=True)`)
with its limits as JSON, an empty environment, an empty working directory, its own session
(so the parent can kill the whole process group) and no descriptors but its two pipes. It imports only the sandbox
(RestrictedPython, orjson), never the engine, then limits itself and says it is ready.

Protocol, on the pipes: `policyctl.workers` frames, after its hello. Request: a JSON
frame `{"source", "file"}` then a frame with the input as JSON. Response: one JSON frame
`{"ok": true, "result", "printed"}` or `{"ok": false, "kind", "message", "file", "line",
"printed", "retire"}`. The parent enforces the deadline by killing the worker.
"""

from __future__ import annotations

import contextlib
import gc
import math
import resource
import sys
from typing import Any

import orjson

from policyctl.sandbox.compile import compile_override
from policyctl.sandbox.errors import KIND_OF, SandboxError
from policyctl.sandbox.execute import execute
from policyctl.sandbox.guards import RunContext
from policyctl.sandbox.limits import MAX_FRAME_BYTES, WorkerLimits
from policyctl.workers.child import say_hello, take_pipes
from policyctl.workers.frames import read_frame, write_frame


def _limit_self(limits: WorkerLimits) -> None:
    """Resource limits, set by the worker on itself before it runs any script (lowering is always allowed)."""
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    # RLIMIT_CPU counts the whole life of the process: the hard limit is the lifetime budget,
    # the soft limit (SIGXCPU) is moved before each run to what is used plus the per-run budget.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s_lifetime, limits.cpu_s_lifetime + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))      # no files written, ever
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))       # and no core dumps of a killed worker
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))   # the pipes, stdio and little else
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no children (not enforced for root)
    sys.setrecursionlimit(limits.recursion)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _arm_cpu(limits: WorkerLimits) -> bool:
    """Set this run's CPU budget; False when the lifetime budget is nearly spent (time to retire)."""
    soft = math.ceil(_cpu_used()) + limits.cpu_s_per_run
    if soft >= limits.cpu_s_lifetime:
        return False
    resource.setrlimit(resource.RLIMIT_CPU, (soft, limits.cpu_s_lifetime + 1))
    return True


def handle(meta_frame: bytes, input_frame: bytes) -> dict[str, Any]:
    """One request: compile (cached), run, and describe the outcome as a JSON-ready dict."""
    file = "<override>"
    ctx = RunContext(file)
    try:
        meta = orjson.loads(meta_frame)
        file = ctx.file = str(meta.get("file") or file)
        code = compile_override(meta["source"], file=file)
        # Decoded here, so the script's input is its own copy: the caller's dict is never touched.
        input = orjson.loads(input_frame)
        run = execute(code, input, file=file, ctx=ctx)
        return {"ok": True, "result": run.result, "printed": run.printed}
    except SandboxError as exc:
        return {"ok": False, "kind": KIND_OF.get(type(exc), "error"), "message": exc.detail,
                "file": exc.file, "line": exc.line, "printed": "".join(ctx.printed),
                "retire": exc.retire_worker}
    except BaseException as exc:  # noqa: BLE001 - the worker answers every request it can
        return {"ok": False, "kind": "error", "message": f"sandbox worker error: {type(exc).__name__}",
                "file": file, "line": None, "printed": "", "retire": True}


def serve(proto_in: int, proto_out: int, limits: WorkerLimits) -> int:
    runs = 0
    while True:
        meta = read_frame(proto_in, MAX_FRAME_BYTES)
        if meta is None:
            return 0
        input_frame = read_frame(proto_in, MAX_FRAME_BYTES)
        if input_frame is None:
            return 0
        if not _arm_cpu(limits):
            response: dict[str, Any] = {"ok": False, "kind": "unavailable", "message": "worker retired",
                                        "file": None, "line": None, "printed": "", "retire": True}
        else:
            response = handle(meta, input_frame)
        runs += 1
        # Collect the run's garbage now, before answering: a generator left suspended in a
        # reference cycle runs its `finally` here, under this run's deadline, not in the next run.
        gc.collect()
        if runs >= limits.max_runs:
            response["retire"] = True
        try:
            body = orjson.dumps(response)
        except (TypeError, orjson.JSONEncodeError):
            body = orjson.dumps({"ok": False, "kind": "invalid", "message": "the result cannot be encoded as JSON",
                                 "file": None, "line": None, "printed": "", "retire": False})
        write_frame(proto_out, body)


def main(argv: list[str]) -> int:
    limits = WorkerLimits(**orjson.loads(argv[1])) if len(argv) > 1 else WorkerLimits()
    proto_in, proto_out = take_pipes(keep_stderr=False)
    _limit_self(limits)
    # Everything imported so far is the worker's own: freeze it out of the collector, so the
    # collection after each run only looks at what that run left behind (microseconds).
    gc.collect()
    gc.freeze()
    say_hello(proto_out)
    try:
        return serve(proto_in, proto_out, limits)
    except (BrokenPipeError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
