"""Evaluation worker processes: one request in flight per worker, a deadline on each, replacement on overrun or death."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from policyctl.gateway.evaluator import MAX_FRAME
from policyctl.gateway.metrics import Histogram
from policyctl.workers import Backoff, SpawnFailed, death_reason, python_command
from policyctl.workers.aio import AsyncChild

HELLO_TIMEOUT_S = 60.0
BUILDER = -1  # the index of the worker that verifies new revisions and never serves
CLOSE_TIMEOUT_S = 5.0
RECENT_INPUTS = 16  # inputs kept to time a new revision's verification against the serving one
RECENT_INPUT_MAX_BYTES = 64 * 1024  # larger inputs are not kept: the sample must stay small
RECENT_INPUT_MAX_EVAL_S = 0.05  # nor slow ones: timing them would stall the next verification
EVAL_SAMPLES = 32  # recent evaluations whose median admission expects the next one to take
# Requests waiting for the same revision when a worker frees go to it together, in one frame
# and one reply (bench/ipc.py: 4 per frame cost 0.6-0.8x the CPU of one per frame), so a
# queue that built up in a stall drains faster. A batch's first answer waits for its last, and
# what a batch saves is tens of microseconds per decision: so only while the whole batch of
# typical evaluations takes at most BATCH_BUDGET_S (slow evaluations are never batched).
MAX_BATCH = 8
BATCH_BUDGET_S = 0.002


# The most work (expected seconds of waiting) the queue takes on: a decision is on the agent's
# critical path, so past this a fast 503 with Retry-After beats a slow answer.
DEFAULT_MAX_QUEUE_WAIT = 0.05

class WorkerFailure(Exception):
    """A job that no worker could finish: timed out, crashed, overloaded or shut down."""

    def __init__(self, code: str, message: str, problems: list[dict[str, Any]] | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems or []
        self.retry_after = retry_after  # seconds, for a 503's Retry-After


@dataclass(eq=False)
class Job:
    op: str  # decide, verify, load, drop
    payload: bytes
    future: asyncio.Future[dict[str, Any]]
    rev: str | None = None
    timeout: float | None = None
    queued_at: float = 0.0
    sent_at: float = 0.0  # 0 while it waits for a worker
    parts: list[Job] = field(default_factory=list)  # a batch's decide jobs, in the order of its replies
    single: bool = False  # sent alone: it was in a batch whose worker overran or died


@dataclass(eq=False)
class Worker:
    """A serving (or the build) slot's current process, and what the pool knows of it: revisions, jobs."""

    index: int
    started_at: float
    child: AsyncChild
    loaded: set[str] = field(default_factory=set)
    job: Job | None = None
    control: deque[Job] = field(default_factory=deque)
    joined: bool = False
    alive: bool = True

    @property
    def pid(self) -> int:
        return self.child.pid


def worker_command() -> list[str]:
    return python_command("policyctl.gateway.evaluator")


class WorkerPool:
    """N serving workers and one build worker, a queue of decide jobs, control jobs per worker.

    regopy has no timeout and can crash its process (deep input, pathological policies), and
    threads give it no parallelism; processes give both isolation and cores. The processes,
    frames, deadlines and replacement backoff come from `policyctl.workers`; this pool is the
    policy: which worker serves which revision, and what a timeout or a death answers. A
    worker's own sandbox workers are in sessions of their own: they exit when its pipes close.
    """

    def __init__(self, size: int, repo: str, *, eval_timeout: float, build_timeout: float,
                 wanted: Callable[[], set[str]], max_queue: int = 2048, queue_timeout: float = 10.0,
                 command: list[str] | None = None, queue_wait: Histogram | None = None,
                 max_queue_wait: float = DEFAULT_MAX_QUEUE_WAIT) -> None:
        self.size = size
        self.repo = repo
        self.eval_timeout = eval_timeout
        self.build_timeout = build_timeout
        self.wanted = wanted
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.max_queue_wait = max_queue_wait
        self.command = command or worker_command()
        self.workers: dict[int, Worker] = {}
        self.idle: list[Worker] = []
        self.pending: deque[Job] = deque()
        self.closing = False
        self.timeouts = 0
        self.crashes = 0
        self.restarts: dict[str, int] = {}
        self.overloaded = 0
        self.batches = 0  # frames that carried more than one decision
        self.batched = 0  # decisions sent in them
        self.refused_early = 0  # overloaded answers given at admission, by expected wait
        self.abandoned: dict[str, int] = {"queued": 0, "evaluating": 0}  # clients gone before the answer
        self._recent_evals: deque[float] = deque(maxlen=EVAL_SAMPLES)
        self._eval_median: float | None = 0.0  # None: a new sample came since it was computed
        self.recent_inputs: deque[dict[str, Any]] = deque(maxlen=RECENT_INPUTS)
        self.queue_wait = queue_wait
        self.override_failures: dict[str, int] = {}
        # revision -> override name -> its quarantine, merged over the workers that reported it
        self.override_quarantine: dict[str, dict[str, dict[str, Any]]] = {}
        self.last_failure: dict[str, Any] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._replacement = Backoff()  # per slot: a worker that keeps dying is restarted later and later

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every worker and wait until each has said hello (they hold no revision yet)."""
        await asyncio.gather(*(self._bring_up(i) for i in (BUILDER, *range(self.size))))
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        """Fail queued jobs, ask each worker to exit, and kill the ones that do not."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        while self.pending:
            job = self.pending.popleft()
            if not job.future.done():
                job.future.set_exception(WorkerFailure("shutting_down", "the gateway is shutting down"))
        for worker in list(self.workers.values()):
            if worker.alive:
                worker.child.say_goodbye(orjson.dumps({"op": "exit"}))
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for worker in list(self.workers.values()):
            try:
                await asyncio.wait_for(asyncio.shield(worker.child.exited), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                worker.child.kill()
            worker.child.close()
        for task in list(self._tasks):
            task.cancel()

    @property
    def alive(self) -> int:
        """Serving workers that take requests."""
        return sum(1 for w in self.workers.values() if w.index != BUILDER and w.alive and w.joined)

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"index": w.index, "role": "build" if w.index == BUILDER else "serve", "pid": w.pid,
                 "alive": w.alive, "ready": w.joined, "busy": w.job is not None,
                 "revisions": sorted(w.loaded), "uptime_s": round(now - w.started_at, 1)}
                for w in sorted(self.workers.values(), key=lambda w: w.index)]

    # ------------------------------------------------------------------ requests

    def expected_wait(self) -> float:
        """Seconds a request queued now would wait for a worker: (queued ahead + 1) × mean evaluation / workers."""
        return (len(self.pending) + 1) * self.eval_mean / max(1, self.alive)

    def _admit(self, deadline: float) -> None:
        """Refuse at once a request that would wait past its deadline, or past the queue's bound.

        Queueing it anyway only makes it and everything behind it late: its client gives up,
        and the evaluation is spent on nobody.
        """
        if len(self.pending) >= self.max_queue:
            self.overloaded += 1
            raise WorkerFailure("overloaded", f"{len(self.pending)} requests are waiting for a worker; retry later",
                                retry_after=1.0)
        wait = self.expected_wait()
        if self.eval_mean > 0 and wait > self.max_queue_wait:
            # the queue absorbs a burst of this much work; past it every request behind would be
            # late, so the client is told at once to retry (or go elsewhere)
            self.overloaded += 1
            self.refused_early += 1
            raise WorkerFailure("overloaded", f"{len(self.pending)} requests are waiting for a worker: the expected "
                                f"wait of {wait:.3f} s is past the queue's bound of {self.max_queue_wait:g} s "
                                "(--max-queue-wait); retry later", retry_after=max(1.0, wait))
        if self.eval_mean > 0 and wait + self.eval_mean > deadline:
            self.overloaded += 1
            self.refused_early += 1
            raise WorkerFailure("overloaded", f"{len(self.pending)} requests are waiting for a worker: the expected "
                                f"wait of {wait:.3f} s plus one evaluation ({self.eval_mean:.3f} s) is past the "
                                f"request's deadline of {deadline:g} s; retry later", retry_after=max(1.0, wait))

    async def decide(self, rev: str, input: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """The worker's decision for `input` on revision `rev`; WorkerFailure when none could give one.

        `deadline` (seconds, default the queue timeout) is how long the caller will wait. When
        the caller is cancelled (its client went away), a queued request leaves the queue
        and is never evaluated.
        """
        loop = asyncio.get_running_loop()
        payload = orjson.dumps(input)  # the input's JSON: spliced into a frame, alone or in a batch
        job = Job("decide", payload, loop.create_future(), rev, self.eval_timeout, loop.time())
        worker = self._idle_with(rev)
        if worker is not None:
            self._send(worker, job)
        else:
            self._admit(min(deadline, self.queue_timeout) if deadline is not None else self.queue_timeout)
            self.pending.append(job)
        try:
            reply = await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise
        if len(payload) <= RECENT_INPUT_MAX_BYTES and loop.time() - job.sent_at <= RECENT_INPUT_MAX_EVAL_S:
            self.recent_inputs.append(input)
        failed = reply.get("override_failures")
        if failed:
            for code, n in failed.items():
                self.override_failures[code] = self.override_failures.get(code, 0) + int(n)
        quarantined = reply.get("override_quarantined")
        if quarantined:
            self._note_quarantines(rev, quarantined)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise WorkerFailure(str(error.get("code", "eval_error")), str(error.get("message", "")))
        decision: dict[str, Any] = reply["decision"]
        return decision

    def _abandon(self, job: Job) -> None:
        if job.sent_at:
            self.abandoned["evaluating"] += 1  # the worker finishes it; nobody is answered or logged
            return
        self.abandoned["queued"] += 1
        with contextlib.suppress(ValueError):
            self.pending.remove(job)  # at most max_queue long: cheaper than counting dead entries

    def _observe_eval(self, seconds: float) -> None:
        """The typical evaluation: the median of the last EVAL_SAMPLES. A median, not a mean, so a
        few outliers (an override running into its deadline before its quarantine) do not make
        admission refuse the ordinary requests behind them, while a revision that is slow on
        every input moves it within a few dozen decisions."""
        self._recent_evals.append(seconds)
        self._eval_median = None  # computed when admission or the status asks, not on every reply

    @property
    def eval_mean(self) -> float:
        """The typical (median) evaluation in a worker, seconds (0: none yet)."""
        if self._eval_median is None:
            self._eval_median = statistics.median(self._recent_evals)
        return self._eval_median

    def _note_quarantines(self, rev: str, entries: list[dict[str, Any]]) -> None:
        """Merge what one worker quarantined: each worker's sandbox slot decides for itself, so the
        status shows one entry per override, counted over the workers (`workers`)."""
        wanted = self.wanted()
        for old in [r for r in self.override_quarantine if r != rev and r not in wanted]:
            del self.override_quarantine[old]  # a revision no longer served takes its quarantines along
        held = self.override_quarantine.setdefault(rev, {})
        for entry in entries:
            name = str(entry.get("name"))
            known = held.get(name)
            if known is None:
                held[name] = {**entry, "workers": 1}
                continue
            known.update(count=known["count"] + entry["count"], workers=known["workers"] + 1,
                         first=min(known["first"], entry["first"]), last=max(known["last"], entry["last"]))
            for code, n in entry.get("codes", {}).items():
                known["codes"][code] = known["codes"].get(code, 0) + n

    def _idle_with(self, rev: str) -> Worker | None:
        idle = self.idle
        for i in range(len(idle) - 1, -1, -1):
            worker = idle[i]
            if rev in worker.loaded:
                del idle[i]
                return worker
        return None

    # ------------------------------------------------------------------ revisions

    async def load(self, rev: str, *, baseline: str | None = None,
                   check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Verify `rev` in the builder, compile it in a serving worker, and return its summary.

        The builder compiles the commit and runs its fixtures in a process that serves no
        request, so a long or pathological verification never delays a decision. Then one
        serving worker compiles and warms it: from then on the revision can be swapped in.
        The other workers compile it as soon as they finish the request in hand (a worker
        busy with a slow evaluation does not hold the swap back); until then they only take
        requests for the revisions they hold. Raises WorkerFailure (rego_compile_error,
        revision_invalid, build_timeout, …) and leaves no worker holding `rev` when it fails.

        The verification also times the fixtures and a sample of recent inputs on `rev` and on
        `baseline`; `check` sees that summary before any serving worker compiles `rev`, and
        raises WorkerFailure to keep it out (a commit much slower than the one it replaces).
        """
        started = time.monotonic()
        try:
            builder = await self._builder()
            message = {"op": "verify", "rev": rev, "repo": self.repo, "inputs": list(self.recent_inputs),
                       "baseline": baseline, "budget_s": min(2.0, self.build_timeout / 4)}
            try:
                reply = await self._control(builder, "verify", message, self.build_timeout)
            except WorkerFailure as exc:
                raise await asyncio.to_thread(_name_crash, exc, self.repo, rev) from exc
            verified = time.monotonic()
            if not reply.get("ok"):
                raise _failure(reply)
            summary: dict[str, Any] = reply["summary"]
            if check is not None:
                check(summary)
            while not any(rev in w.loaded for w in self._serving()):
                todo = [w for w in self._serving() if rev not in w.loaded]
                if not todo:
                    if self.closing:
                        raise WorkerFailure("shutting_down", "the gateway is shutting down")
                    await asyncio.sleep(0.05)  # every worker is being replaced; wait for one
                    continue
                worker = min(todo, key=lambda w: (w.job is not None, len(w.control)))  # a free one, if any
                try:
                    reply = await self._control(worker, "load", {"op": "load", "rev": rev, "repo": self.repo},
                                                self.build_timeout)
                except WorkerFailure:
                    continue  # that worker died or overran; its replacement loads what is wanted
                if not reply.get("ok"):
                    raise _failure(reply)
            for worker in self._serving():
                if rev not in worker.loaded and not self._loading(worker, rev):
                    self._load_later(worker, rev)
            summary.setdefault("timing", {}).update(
                {"verify_s": round(verified - started, 3), "load_s": round(time.monotonic() - verified, 3)})
            return summary
        except BaseException:
            self.drop(rev)
            raise

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.index != BUILDER and w.alive and w.joined]

    def _loading(self, worker: Worker, rev: str) -> bool:
        jobs = [*worker.control, *([worker.job] if worker.job is not None else [])]
        return any(j.op == "load" and j.rev == rev for j in jobs)

    def _load_later(self, worker: Worker, rev: str) -> None:
        loop = asyncio.get_running_loop()
        job = Job("load", orjson.dumps({"op": "load", "rev": rev, "repo": self.repo}), loop.create_future(), rev,
                  self.build_timeout, loop.time())

        def done(future: asyncio.Future[dict[str, Any]]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # the worker died or overran: already replaced
            if not future.result().get("ok") and worker.alive:
                self._retire(worker, "load_failed")  # it built elsewhere: this worker is the problem

        job.future.add_done_callback(done)
        self._enqueue_control(worker, job)

    async def _builder(self) -> Worker:
        deadline = time.monotonic() + self.build_timeout
        while time.monotonic() < deadline and not self.closing:
            builder = self.workers.get(BUILDER)
            if builder is not None and builder.alive and builder.joined:
                return builder
            await asyncio.sleep(0.05)
        raise WorkerFailure("no_builder", "the build worker is not running (it keeps failing to start?)")

    def drop(self, rev: str) -> None:
        """Free `rev` in every worker that holds it (no request may still name it)."""
        loop = asyncio.get_running_loop()
        for worker in self.workers.values():
            if rev in worker.loaded:
                worker.loaded.discard(rev)
                if worker.alive:
                    job = Job("drop", orjson.dumps({"op": "drop", "rev": rev}), loop.create_future(), rev,
                              self.build_timeout)
                    job.future.add_done_callback(_ignore_result)
                    self._enqueue_control(worker, job)

    async def _control(self, worker: Worker, op: str, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        job = Job(op, orjson.dumps(message), loop.create_future(), message.get("rev"), timeout, loop.time())
        self._enqueue_control(worker, job)
        return await job.future

    def _enqueue_control(self, worker: Worker, job: Job) -> None:
        worker.control.append(job)
        if worker.job is None:
            if worker in self.idle:
                self.idle.remove(worker)
            self._next(worker)

    # ------------------------------------------------------------------ dispatch

    def _send(self, worker: Worker, job: Job) -> None:
        worker.job = job
        if job.op == "decide":
            worker.child.send(b'{"op":"decide","rev":"' + str(job.rev).encode() + b'","input":' + job.payload + b"}")
        elif job.op == "decide_many":
            worker.child.send(b'{"op":"decide_many","rev":"' + str(job.rev).encode() + b'","inputs":['
                              + b",".join(part.payload for part in job.parts) + b"]}")
        else:
            worker.child.send(job.payload)
        job.sent_at = asyncio.get_running_loop().time()
        for part in job.parts or [job]:
            part.sent_at = job.sent_at
            if part.op == "decide" and self.queue_wait is not None:
                self.queue_wait.observe(job.sent_at - part.queued_at)
        if job.timeout is not None:
            worker.child.arm(job.timeout, self._overrun, worker, job)

    def _batch(self, first: Job) -> Job:
        """`first` and the requests behind it for the same revision, as one job when there are any."""
        pending = self.pending
        eval_s = self.eval_mean
        room = 1 if eval_s <= 0 else min(MAX_BATCH, int(BATCH_BUDGET_S / eval_s))
        parts = [first]
        while pending and len(parts) < room:
            job = pending[0]
            if job.future.done():
                pending.popleft()
                continue
            if job.rev != first.rev or job.single or first.single:
                break
            parts.append(pending.popleft())
        if len(parts) == 1:
            return first
        self.batches += 1
        self.batched += len(parts)
        loop = asyncio.get_running_loop()
        return Job("decide_many", b"", loop.create_future(), first.rev, self.eval_timeout, loop.time(), parts=parts)

    def _requeue(self, batch: Job) -> None:
        """A batch whose worker overran or died: its unanswered requests go back to the front of the
        queue, each to be sent alone, so only the one that kills a worker fails (closed)."""
        parts = [p for p in batch.parts if not p.future.done()]
        for part in reversed(parts):
            part.single = True
            part.sent_at = 0.0
            self.pending.appendleft(part)
        for worker in list(self.idle):
            self.idle.remove(worker)
            self._next(worker)

    def _next(self, worker: Worker) -> None:
        """Give a free worker its next job: its own control jobs first, then the oldest request it can serve."""
        if worker.job is not None or not worker.alive:
            return
        if worker.control:
            self._send(worker, worker.control.popleft())
            return
        if not worker.joined or worker.index == BUILDER:
            return
        pending = self.pending
        while pending:
            job = pending[0]
            if job.future.done():  # the client went away or the sweeper failed it
                pending.popleft()
                continue
            if job.rev in worker.loaded:
                pending.popleft()
                self._send(worker, self._batch(job))
                return
            # Rare: the oldest request names a revision this worker is still loading.
            for i, other in enumerate(pending):
                if not other.future.done() and other.rev in worker.loaded:
                    del pending[i]
                    self._send(worker, other)
                    return
            break
        self.idle.append(worker)

    def _on_frame(self, worker: Worker, body: bytes) -> None:
        """A reply (the hello was the child's): answer the job in hand and give the worker its next one."""
        if not worker.alive:
            return  # retired: its job was already answered
        job = worker.job
        worker.job = None
        worker.child.disarm()
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            reply = {"ok": False, "error": {"code": "eval_error", "message": f"the worker answered garbage: {exc}"}}
        if job is not None and job.op == "decide_many":
            replies = reply.get("replies")
            if not isinstance(replies, list) or len(replies) != len(job.parts):
                replies = [reply] * len(job.parts)  # the batch failed as a whole: each request says so
            each = (asyncio.get_running_loop().time() - job.sent_at) / len(job.parts)
            for part, answer in zip(job.parts, replies, strict=True):
                if "sandbox_timeout" not in (answer.get("override_failures") or {}):
                    self._observe_eval(each)
                if not part.future.done():
                    part.future.set_result(answer)
        elif job is not None and job.op == "decide" and "sandbox_timeout" not in (reply.get("override_failures") or {}):
            # an evaluation spent waiting on an override's deadline says nothing of the next one:
            # that override is quarantined within two such calls per worker (sandbox/limits.py)
            self._observe_eval(asyncio.get_running_loop().time() - job.sent_at)
        if job is not None and job.op == "load" and reply.get("ok") and job.rev is not None:
            # Recorded before the worker takes its next job, so it can serve the revision at once.
            worker.loaded.add(job.rev)
            if job.rev not in self.wanted():
                self.drop(job.rev)  # superseded or failed while this worker compiled it
        if job is not None and not job.future.done():
            job.future.set_result(reply)
        self._next(worker)

    def _overrun(self, worker: Worker, job: Job) -> None:
        if worker.job is not job or not worker.alive:
            return
        if job.op == "decide_many":
            self.timeouts += 1
            worker.job = None
            self._retire(worker, "timeout")
            self._requeue(job)
            return
        if job.op == "decide":
            self.timeouts += 1
            self._observe_eval(job.timeout or self.eval_timeout)
            failure = WorkerFailure("eval_timeout", f"the evaluation did not finish within {job.timeout:g} s; "
                                    "its worker was stopped and replaced (fail closed)")
        else:
            failure = WorkerFailure("build_timeout", f"{job.op} of revision {str(job.rev)[:12]} did not finish "
                                    f"within {job.timeout:g} s; the worker was stopped and replaced")
        self.last_failure = {"code": failure.code, "message": failure.message, "at": time.time()}
        if not job.future.done():
            job.future.set_exception(failure)
        worker.job = None
        self._retire(worker, "timeout")

    # ------------------------------------------------------------------ worker processes

    async def _bring_up(self, index: int) -> None:
        """Start worker `index`, load every revision the gateway serves, then let it take requests."""
        while not self.closing:
            worker = await self._spawn(index)
            try:
                await asyncio.wait_for(asyncio.shield(worker.child.hello), HELLO_TIMEOUT_S)
                while not self.closing and worker.alive and index != BUILDER:
                    missing = sorted(self.wanted() - worker.loaded)
                    if not missing:
                        break
                    for rev in missing:
                        reply = await self._control(worker, "load", {"op": "load", "rev": rev, "repo": self.repo},
                                                    self.build_timeout)
                        if not reply.get("ok"):
                            raise WorkerFailure("load_failed", str((reply.get("error") or {}).get("message")))
            except (WorkerFailure, SpawnFailed, TimeoutError, OSError) as exc:
                self.last_failure = {"code": "worker_start_failed", "message": str(exc), "at": time.time()}
                self._retire(worker, "start_failed", replace=False)
                await asyncio.sleep(self._replacement.delay(index))
                continue
            if worker.alive and not self.closing:
                worker.joined = True
                self._next(worker)
            return

    async def _spawn(self, index: int) -> Worker:
        worker: Worker
        child = AsyncChild(lambda body: self._on_frame(worker, body), lambda code: self._on_exit(worker, code),
                           max_frame=MAX_FRAME)
        worker = Worker(index, time.monotonic(), child)
        self.workers[index] = worker
        await child.start(self.command)
        return worker

    def _on_exit(self, worker: Worker, code: int) -> None:
        """The worker process ended; unless we retired it, it crashed (or was killed from outside)."""
        if not worker.alive:
            return
        why = death_reason(code)
        self.crashes += 1
        self.last_failure = {"code": "worker_crashed", "message": f"an evaluation worker died ({why})",
                             "at": time.time()}
        self._retire(worker, "crashed", why=f"the evaluation worker died ({why}); it was replaced (fail closed)")

    def _retire(self, worker: Worker, reason: str, *, replace: bool = True, why: str = "") -> None:
        """Kill a worker, fail what it held, and start its replacement."""
        worker.alive = False
        worker.joined = False
        if worker in self.idle:
            self.idle.remove(worker)
        worker.child.disarm()
        worker.child.kill()
        jobs = ([worker.job] if worker.job is not None else []) + list(worker.control)
        worker.job = None
        worker.control.clear()
        batches = [job for job in jobs if job.op == "decide_many"]
        if batches and not self.closing:
            for batch in batches:
                self._requeue(batch)
            jobs = [job for job in jobs if job.op != "decide_many"]
        jobs = [part for job in jobs for part in (job.parts or [job])]
        for job in jobs:
            if not job.future.done():
                code = "eval_crashed" if job.op == "decide" else "build_crashed"
                job.future.set_exception(WorkerFailure(code, why or "the worker was replaced before it answered"))
        if replace and not self.closing:
            self.restarts[reason] = self.restarts.get(reason, 0) + 1
            self._replacement.died(worker.index)
            self._track(asyncio.ensure_future(self._replace(worker.index)))

    async def _replace(self, index: int) -> None:
        await asyncio.sleep(self._replacement.delay(index))
        await self._bring_up(index)

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Fail requests that waited too long for any worker (all busy, crashed, or reloading)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            limit = loop.time() - self.queue_timeout
            while self.pending and (self.pending[0].future.done() or self.pending[0].queued_at < limit):
                job = self.pending.popleft()
                if not job.future.done():
                    self.overloaded += 1
                    job.future.set_exception(WorkerFailure(
                        "no_worker", f"no evaluation worker was free within {self.queue_timeout:g} s"))


def _name_crash(failure: WorkerFailure, repo: str, rev: str) -> WorkerFailure:
    """When the build worker died by a signal, the module that kills the engine, found as `policyctl check`
    finds it (compiling module by module in child processes); the same failure when none does."""
    if failure.code != "build_crashed" or "(signal " not in failure.message:
        return failure
    from policyctl.decide import load_fixtures
    from policyctl.engine.guarded import crash_problems
    from policyctl.errors import PolicyctlError
    from policyctl.repo import snapshot

    try:
        snap = snapshot(repo, rev)
        crashes, _ = crash_problems(snap, None, [f.input for f in load_fixtures(snap)[0]])
    except PolicyctlError:
        return failure
    if not crashes:
        return failure
    return WorkerFailure(failure.code, f"{crashes[0].file}: {crashes[0].message} ({failure.message})",
                         [p.to_dict() for p in crashes])


def _failure(reply: dict[str, Any]) -> WorkerFailure:
    error = reply.get("error") or {}
    return WorkerFailure(str(error.get("code", "revision_invalid")), str(error.get("message", "")),
                         error.get("problems") or [])


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
