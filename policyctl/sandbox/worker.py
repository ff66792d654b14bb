"""The third wall: a worker process that runs override scripts under resource limits, locked down, one at a time.

Started by the pool under `python -I` (`policyctl.workers.python_command(..., isolated=True)`)
with its limits as JSON, an empty environment, an empty working directory, its own session
(so the parent can kill the whole process group) and no descriptors but its two pipes. It
imports only the sandbox (RestrictedPython, orjson, libseccomp), never the engine, runs one
script through both walls to load whatever they load lazily, then limits itself, locks
itself down with the kernel (`policyctl.sandbox.wall`: no files, sockets, exec or new
processes from here on) and says it is ready.

Protocol, on the pipes: `policyctl.workers` frames. First its hello, then
`{"op": "lockdown", ...}` (what it locked, `wall.Lockdown`). Request: a JSON frame
`{"source", "file"}` then a frame with the input as JSON. Response: one JSON frame
`{"ok": true, "result", "printed"}` or `{"ok": false, "kind", "message", "file", "line",
"printed", "retire"}`, every string scrubbed of addresses. The parent enforces the deadline
by killing the worker.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import math
import resource
import sys
from typing import Any

import orjson

from policyctl.sandbox.compile import compile_override
from policyctl.sandbox.errors import KIND_OF, SandboxError
from policyctl.sandbox.execute import execute
from policyctl.sandbox.guards import RunContext
from policyctl.sandbox.limits import MAX_FRAME_BYTES, MAX_MESSAGE_CHARS, WorkerLimits
from policyctl.sandbox.render import ADDRESS_MARK, scrub_data
from policyctl.sandbox.wall import LOCKDOWN_OP, MECHANISMS, UnsafeSwitches, lock_down, preload
from policyctl.workers.child import say_hello, take_pipes
from policyctl.workers.frames import read_frame, write_frame

_ADDRESS_MARK = ADDRESS_MARK.encode()

# Run once before the lock-down: whatever compiling and running a script imports or builds
# lazily (f-strings, %, math, print, exceptions, the result check, unicodedata for "\N{…}")
# is loaded while files can still be opened. Codecs not loaded by then (cp1252…) stay unknown.
_WARM_UP = '''
import math
def decide(input):
    text = f"{input['n']!r:>4} {math.sqrt(input['n']):.2f} %s %r \\N{BULLET}" % (decide, [len])
    try:
        input["missing"]
    except KeyError as e:
        print(text, e, repr(e), e.args)
    return {"action": "allow", "params": {"text": text, "sum": math.fsum([1.5, 2])}}
'''


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


def handle_unguarded(meta_frame: bytes, input_frame: bytes) -> dict[str, Any]:
    """One request with walls 1 and 2 switched off (tests only): plain `compile` and `exec`, every builtin.

    What a script that escaped RestrictedPython and the guards could do; the tests prove that
    the lock-down alone stops it. The result goes back as the script returned it.
    """
    meta = orjson.loads(meta_frame)
    file = str(meta.get("file") or "<override>")
    try:
        scope: dict[str, Any] = {"__name__": "override"}
        exec(compile(meta["source"], file, "exec"), scope)
        result = scope["decide"](orjson.loads(input_frame))
        return {"ok": True, "result": result, "printed": ""}
    except BaseException as exc:  # noqa: BLE001 - the worker answers every request it can
        return {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS],
                "file": file, "line": None, "printed": "", "retire": False}


def encode_response(response: dict[str, Any], *, walls: bool = True) -> bytes:
    """The response frame's body; with the walls on, no string in it holds an address."""
    try:
        body = orjson.dumps(response)
        if walls and _ADDRESS_MARK in body:
            # The last line: whatever wrote an object's default repr, no address leaves the worker.
            body = orjson.dumps(scrub_data(response))
    except (TypeError, orjson.JSONEncodeError):
        body = orjson.dumps({"ok": False, "kind": "invalid", "message": "the result cannot be encoded as JSON",
                             "file": None, "line": None, "printed": "", "retire": False})
    return body


def serve(proto_in: int, proto_out: int, limits: WorkerLimits, *, walls: bool = True) -> int:
    runs = 0
    run = handle if walls else handle_unguarded
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
            response = run(meta, input_frame)
        runs += 1
        # Collect the run's garbage now, before answering: a generator left suspended in a
        # reference cycle runs its `finally` here, under this run's deadline, not in the next run.
        gc.collect()
        if runs >= limits.max_runs:
            response["retire"] = True
        write_frame(proto_out, encode_response(response, walls=walls))


def _warm_up() -> None:
    with contextlib.suppress(SandboxError):
        execute(compile_override(_WARM_UP, file="<warm-up>"), {"n": 2}, file="<warm-up>")


def main(argv: list[str]) -> int:
    limits = WorkerLimits(**orjson.loads(argv[1])) if len(argv) > 1 else WorkerLimits()
    # Only a test's or a benchmark's own pool passes these (pool.WorkerPool's `_unsafe`).
    unsafe = UnsafeSwitches.from_json(argv[2]) if len(argv) > 2 else None
    mechanisms = unsafe.lockdown if unsafe else MECHANISMS
    if "seccomp" in mechanisms:
        # libseccomp first: finding it starts ldconfig, which the limits below forbid a non-root worker.
        preload()
    proto_in, proto_out = take_pipes(keep_stderr=False)
    _limit_self(limits)
    for module in unsafe.preimport if unsafe else ():
        importlib.import_module(module)
    _warm_up()
    lockdown = lock_down(mechanisms)
    # Everything imported so far is the worker's own: freeze it out of the collector, so the
    # collection after each run only looks at what that run left behind (microseconds).
    gc.collect()
    gc.freeze()
    say_hello(proto_out)
    write_frame(proto_out, orjson.dumps({"op": LOCKDOWN_OP, **lockdown.to_dict()}))
    try:
        return serve(proto_in, proto_out, limits, walls=unsafe.walls_1_2 if unsafe else True)
    except (BrokenPipeError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
