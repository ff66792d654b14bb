"""Prewarmed worker processes for override scripts, with deadlines the parent enforces by killing.

One pool per process is enough (`shared_pool()`), created lazily: every revision's
OverrideSet uses it, so a hot swap does not start new processes. A worker that times out,
breaks a limit or dies is killed (its whole process group) and replaced in the background,
so the call that failed returns at its deadline and the next call finds a ready worker.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from policyctl.sandbox.errors import (
    KINDS,
    SandboxError,
    SandboxLimitError,
    SandboxTimeout,
    SandboxUnavailable,
)
from policyctl.sandbox.limits import MAX_FRAME_BYTES, MAX_MESSAGE_CHARS, WorkerLimits
from policyctl.sandbox.render import scrub_addresses
from policyctl.sandbox.wall import LOCKDOWN_OP, Lockdown, UnsafeSwitches
from policyctl.workers import Backoff, ChildGone, Expired, SpawnFailed, encode, python_command
from policyctl.workers.sync import Child

log = logging.getLogger("policyctl.sandbox")

SPAWN_TIMEOUT_S = 10.0
ACQUIRE_TIMEOUT_S = 5.0
WORKER_MODULE = "policyctl.sandbox.worker"


@dataclass
class RunOutcome:
    """A successful run: the script's plain result (a decision is checked by the caller) and its prints."""

    result: Any
    printed: str
    elapsed_s: float
    worker_pid: int


class Worker(Child):
    """One sandbox worker: a `policyctl.workers` child that takes (script, input) requests and counts its runs."""

    def __init__(self, proc: subprocess.Popen[bytes], max_frame: int) -> None:
        super().__init__(proc, max_frame)
        self.runs = 0
        self.lockdown = Lockdown()

    @classmethod
    def start(cls, limits: WorkerLimits, workdir: str, timeout_s: float = SPAWN_TIMEOUT_S,
              unsafe: UnsafeSwitches | None = None) -> Worker:
        """A ready, locked-down worker, isolated (`python -I`, an empty environment, `workdir`, no
        descriptors but its pipes), limits set on itself; `lockdown` is what it reported it locked."""
        args = [orjson.dumps(limits.to_dict()).decode()]
        if unsafe is not None:
            args.append(unsafe.to_json())
        command = python_command(WORKER_MODULE, *args, isolated=True)
        started = time.monotonic()
        try:
            worker = cls.spawn(command, max_frame=MAX_FRAME_BYTES, timeout_s=timeout_s, cwd=workdir, env={})
        except SpawnFailed as exc:
            raise SandboxUnavailable(f"a sandbox worker did not start ({exc}); `{sys.executable} -I -c 'import "
                                     f"{WORKER_MODULE}'` shows why") from None
        # Right after its hello, before any request, the worker says what it locked.
        try:
            report = orjson.loads(worker.receive(started + timeout_s))
            if not isinstance(report, dict) or report.get("op") != LOCKDOWN_OP:
                raise ChildGone(False)
        except (Expired, ChildGone, orjson.JSONDecodeError):
            worker.kill()
            worker.reap()
            raise SandboxUnavailable("a sandbox worker did not report its lock-down after its hello") from None
        worker.lockdown = Lockdown.from_dict(report)
        return worker

    def call(self, meta: bytes, payload: bytes, deadline: float) -> dict[str, Any]:
        """One run; Expired or ChildGone (`before_request` when it never got the request) for the pool to judge."""
        self.runs += 1
        self.send(encode(meta) + encode(payload), deadline)
        response = orjson.loads(self.receive(deadline))
        if not isinstance(response, dict):
            raise ChildGone(False)
        return response


def default_size() -> int:
    return max(2, min(4, os.cpu_count() or 2))


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


class WorkerPool:
    """`size` prewarmed workers; `run` takes an idle one, or waits for one, and enforces the deadline."""

    def __init__(self, size: int | None = None, *, limits: WorkerLimits | None = None, prewarm: bool = True,
                 acquire_timeout_s: float = ACQUIRE_TIMEOUT_S, _unsafe: UnsafeSwitches | None = None) -> None:
        if _unsafe is not None and not _unsafe.walls_1_2 and "pytest" not in sys.modules:
            raise RuntimeError("walls 1 and 2 of the sandbox can be switched off only by the test suite")
        self._unsafe = _unsafe
        self.size = size or default_size()
        self.limits = limits or WorkerLimits()
        self.acquire_timeout_s = acquire_timeout_s
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._closed = False
        self._pid = os.getpid()
        self._workdir: str | None = None
        self._counters: dict[str, int] = {"calls": 0, "ok": 0, "failed": 0, "timeouts": 0, "spawned": 0,
                                          "killed": 0, "spawn_failures": 0}
        self._spawn_ms: deque[float] = deque(maxlen=64)
        self.last_spawn_error: str | None = None
        self._lockdown: Lockdown | None = None
        self._lockdown_warned = False
        # Only failed starts count: a worker killed on a deadline or by its limits is replaced at
        # once (a hostile script must not make the next caller wait), one that cannot start is not.
        self._backoff = Backoff(free=0, base_s=0.25)
        _POOLS.add(self)
        if prewarm:
            with self._cond:
                for _ in range(self.size):
                    self._start_spawn()

    # ---------------------------------------------------------------- public

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, source: str, payload: bytes, *, file: str, timeout_s: float,
            within_s: float | None = None) -> RunOutcome:
        """Run `source` on the JSON `payload` in a worker; raise a SandboxError for every failure.

        The deadline (`timeout_s`) starts when a worker is ours; waiting for a free worker
        is bounded separately by `acquire_timeout_s`. `within_s`, from a caller with a budget
        of its own (the pipeline's override budget), bounds waiting and running together.
        """
        meta = orjson.dumps({"source": source, "file": file})
        overall = None if within_s is None else time.monotonic() + within_s
        for attempt in (1, 2):
            worker = self._acquire(None if overall is None else overall - time.monotonic())
            started = time.monotonic()
            deadline = started + timeout_s if overall is None else min(started + timeout_s, overall)
            try:
                response = worker.call(meta, payload, deadline)
            except Expired:
                self._discard(worker, "timeout")
                self._count("timeouts")
                self._count("failed")
                raise SandboxTimeout(f"no answer within {(deadline - started) * 1000:.0f} ms; the worker was killed",
                                     file=file) from None
            except ChildGone as gone:
                why = worker.death()
                self._discard(worker, why)
                if gone.before_request and attempt == 1:
                    continue  # it died while idle, before it saw this request: try a fresh one
                self._count("failed")
                raise SandboxLimitError(f"the sandbox worker died: {why}", file=file) from None
            except orjson.JSONDecodeError:
                self._discard(worker, "garbled response")
                self._count("failed")
                raise SandboxLimitError("the sandbox worker sent a garbled response", file=file) from None
            except BaseException:
                # Anything unexpected (KeyboardInterrupt in the caller…): the worker's state is unknown.
                self._discard(worker, "interrupted")
                raise
            elapsed = time.monotonic() - started
            if response.get("retire") or worker.runs >= self.limits.max_runs:
                self._discard(worker, "retired")
            else:
                self._release(worker)
            if response.get("kind") == "unavailable" and attempt == 1:
                continue  # the worker had spent its lifetime CPU budget before running anything
            if response.get("ok"):
                self._count("ok")
                return RunOutcome(response.get("result"), str(response.get("printed") or ""), elapsed, worker.pid)
            self._count("failed")
            cls = KINDS.get(str(response.get("kind")), SandboxError)
            line = response.get("line")
            # The worker scrubs these too; once more here, since they go to logs and status pages.
            message = scrub_addresses(str(response.get("message") or "failed"))[:MAX_MESSAGE_CHARS]
            error = cls(message, file=file, line=line if type(line) is int else None)
            error.printed = scrub_addresses(str(response.get("printed") or ""))
            raise error
        raise SandboxUnavailable("sandbox workers keep dying before they take a request", file=file)

    def close(self) -> None:
        """Kill every worker (busy ones as they come back) and remove the working directory."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.kill()
        for worker in idle:
            worker.reap()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def wait_ready(self, n: int | None = None, timeout_s: float = SPAWN_TIMEOUT_S) -> bool:
        """Block until `n` (default: all) workers are idle; for benchmarks and tests."""
        want = self.size if n is None else n
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._idle) < want:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                if len(self._idle) + len(self._busy) + self._starting < self.size:
                    self._start_spawn()
                self._cond.wait(remaining)
            return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            out: dict[str, Any] = dict(self._counters)
            out.update(size=self.size, idle=len(self._idle), busy=len(self._busy), starting=self._starting,
                       closed=self._closed)
            spawn = sorted(self._spawn_ms)
        out["spawn_ms_p50"] = round(spawn[len(spawn) // 2], 1) if spawn else None
        out["last_spawn_error"] = self.last_spawn_error
        lockdown = self.lockdown()
        out["lockdown"] = None if lockdown is None else lockdown.to_dict()
        return out

    def lockdown(self) -> Lockdown | None:
        """What the most recently started worker reported it locked (None before the first one is up)."""
        with self._cond:
            return self._lockdown

    def worker_pids(self) -> list[int]:
        with self._cond:
            return sorted(w.pid for w in [*self._idle, *self._busy])

    # ---------------------------------------------------------------- internals

    def _count(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._counters[name] = self._counters.get(name, 0) + n

    def _acquire(self, timeout_s: float | None = None) -> Worker:
        wait_s = self.acquire_timeout_s if timeout_s is None else min(max(timeout_s, 0.0), self.acquire_timeout_s)
        deadline = time.monotonic() + wait_s
        with self._cond:
            self._counters["calls"] += 1
            while True:
                if self._closed:
                    raise SandboxUnavailable("the sandbox pool is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy.add(worker)
                        return worker
                    self._retire_later(worker, "died while idle")
                if len(self._busy) + self._starting < self.size:
                    self._start_spawn()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    why = f"; last start failure: {self.last_spawn_error}" if self.last_spawn_error else ""
                    raise SandboxUnavailable(f"no sandbox worker was free within {wait_s:g} s "
                                             f"({len(self._busy)} of {self.size} busy){why}")
                self._cond.wait(remaining)

    def _release(self, worker: Worker) -> None:
        with self._cond:
            self._busy.discard(worker)
            if self._closed:
                closed = True
            else:
                closed = False
                self._idle.append(worker)
                self._cond.notify()
        if closed:
            worker.kill()
            worker.reap()

    def _discard(self, worker: Worker, why: str) -> None:
        """Kill now (the caller returns at once); reap and replace in the background."""
        worker.kill()
        with self._cond:
            self._busy.discard(worker)
            self._counters["killed"] += 1
            self._retire_later(worker, why)
            if not self._closed and len(self._idle) + len(self._busy) + self._starting < self.size:
                self._start_spawn()

    def _retire_later(self, worker: Worker, why: str) -> None:
        log.debug("sandbox worker %d retired: %s", worker.pid, why)
        worker.kill()
        threading.Thread(target=worker.reap, name="policyctl-sandbox-reap", daemon=True).start()

    def _start_spawn(self) -> None:
        # Called with the lock held.
        if self._workdir is None:
            # Empty and private (mode 0700); workers start in it and cannot write to it.
            self._workdir = tempfile.mkdtemp(prefix="policyctl-sandbox-")
        self._starting += 1
        threading.Thread(target=self._spawn_one, args=(self._workdir,), name="policyctl-sandbox-spawn",
                         daemon=True).start()

    def _spawn_one(self, workdir: str) -> None:
        with self._cond:
            delay = self._backoff.delay()
        if delay:
            time.sleep(delay)  # holding the slot: do not spin if workers cannot start at all
        started = time.monotonic()
        try:
            worker = Worker.start(self.limits, workdir, unsafe=self._unsafe)
        except (SandboxError, OSError) as exc:
            with self._cond:
                self._starting -= 1
                self._counters["spawn_failures"] += 1
                self._backoff.died()
                self.last_spawn_error = str(exc)
                self._cond.notify_all()
            log.warning("sandbox worker did not start: %s", exc)
            return
        warn = False
        with self._cond:
            self._starting -= 1
            if self._closed or self._pid != os.getpid():
                keep = False
            else:
                keep = True
                self._counters["spawned"] += 1
                self._spawn_ms.append((time.monotonic() - started) * 1000)
                self._idle.append(worker)
                self._lockdown = worker.lockdown
                warn = not worker.lockdown.complete and not self._lockdown_warned and self._unsafe is None
                self._lockdown_warned = self._lockdown_warned or warn
                self._cond.notify()
        if keep and warn:
            missing = "; ".join(f"{k}: {v}" for k, v in worker.lockdown.missing.items())
            log.warning("sandbox workers run without part of their kernel lock-down (%s); the process wall "
                        "is weaker (docs/overrides.md, \"How the sandbox works\")", missing)
        if not keep:
            worker.kill()
            worker.reap()

    def _forget_after_fork(self) -> None:
        """In a forked child: the workers belong to the parent; close our copies of their pipes only."""
        for worker in [*self._idle, *self._busy]:
            worker.close_pipes()
        self._idle, self._busy, self._starting = [], set(), 0
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._workdir = None  # the parent's; this process makes its own when it needs workers


# -------------------------------------------------------------------- the shared pool

_shared_lock = threading.Lock()
_shared: WorkerPool | None = None
_shared_refs = 0


def running_shared_pool() -> WorkerPool | None:
    """The process's pool if it has been started and not closed (nothing is started here)."""
    with _shared_lock:
        return _shared if _shared is not None and not _shared.closed else None


def shared_pool() -> WorkerPool:
    """The process's pool, started on first use (its workers start warming at once)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.closed:
            _shared = WorkerPool()
        return _shared


def acquire_shared_pool() -> WorkerPool:
    """The shared pool, counted as in use until `release_shared_pool`; the last release stops it."""
    global _shared_refs
    pool = shared_pool()
    with _shared_lock:
        _shared_refs += 1
    return pool


def release_shared_pool(pool: WorkerPool) -> None:
    global _shared, _shared_refs
    with _shared_lock:
        if pool is not _shared:
            return
        _shared_refs = max(0, _shared_refs - 1)
        if _shared_refs:
            return
        _shared = None
    pool.close()


def shutdown() -> None:
    """Stop the shared pool now (tests, process exit)."""
    global _shared, _shared_refs
    with _shared_lock:
        pool, _shared, _shared_refs = _shared, None, 0
    if pool is not None:
        pool.close()


def _after_fork_in_child() -> None:
    global _shared_lock, _shared, _shared_refs
    _shared_lock = threading.Lock()
    _shared, _shared_refs = None, 0
    for pool in list(_POOLS):
        with contextlib.suppress(Exception):
            pool._forget_after_fork()


def _close_all() -> None:
    for pool in list(_POOLS):
        if pool._pid == os.getpid():
            pool.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
