"""A worker's life from the outside: the command that starts it, its hello, its kill, and why it ended."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

HELLO_OP = "hello"

# `-I` (isolated: no PYTHONPATH, no user site, no current directory on sys.path): the directory
# holding this policyctl is appended, not prepended, so a checkout that is not installed still
# works and nothing in it can shadow an installed module. The module's `main(argv)` runs.
_BOOT = ("import sys, importlib; sys.path.append(sys.argv.pop(1)); "
         "sys.exit(importlib.import_module(sys.argv.pop(1)).main(sys.argv))")
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the directory holding this policyctl

# Signals a worker gets from its own resource limits: named for the limit, which is what to fix.
_LIMIT_SIGNALS = {signal.SIGXCPU: "the CPU time limit", signal.SIGXFSZ: "the file size limit"}


def python_command(module: str, *args: str, isolated: bool = False) -> list[str]:
    """The command that runs `module`'s `main(argv)` in this interpreter.

    `isolated` (for a worker that runs untrusted code with an empty environment) boots it
    under `python -I`; otherwise it is `python -m module`, which inherits the environment.
    """
    if isolated:
        return [sys.executable, "-I", "-c", _BOOT, PACKAGE_ROOT, module, *args]
    return [sys.executable, "-m", module, *args]


def hello_message() -> dict[str, Any]:
    """What a worker says, once, when it is ready for its first request."""
    return {"op": HELLO_OP, "pid": os.getpid()}


def is_hello(body: bytes) -> bool:
    """Whether a worker's first frame is the hello (anything else: it is not a worker of ours)."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("op") == HELLO_OP


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (a worker is started as its own session leader), now.

    The group, not the process: whatever the worker started in its group dies with it
    instead of lingering as an orphan. (Workers it started in sessions of their own, like a
    gateway worker's sandbox workers, exit when their pipes to it close.)
    """
    if pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def signal_name(number: int) -> str:
    """SIGABRT, SIGSEGV, …; "signal N" for a number the platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def death_reason(returncode: int | None) -> str:
    """Why a worker ended, from its exit status as subprocess and asyncio report it (negative: a signal)."""
    if returncode is None:
        return "no exit status: it stopped answering"
    if returncode >= 0:
        return f"exit status {returncode}"
    name = signal_name(-returncode)
    if name.startswith("signal "):
        return name
    limit = _LIMIT_SIGNALS.get(signal.Signals(-returncode))
    return f"signal {name}, {limit}" if limit else f"signal {name}"
