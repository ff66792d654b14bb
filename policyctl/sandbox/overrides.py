"""Override scripts in the decision pipeline: load a revision's overrides/*.py and decide with them."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from policyctl.errors import PolicyctlError, Problem, UsageError, ValidationError
from policyctl.model.records import OverrideHeader, parse_override_header
from policyctl.sandbox.compile import compile_override, compile_problems
from policyctl.sandbox.errors import (
    SandboxCompileError,
    SandboxError,
    SandboxTimeout,
    SandboxUnavailable,
)
from policyctl.sandbox.limits import (
    BUDGET_ENV,
    DEFAULT_BUDGET_MS,
    DEFAULT_TIMEOUT_MS,
    HARD_TIMEOUT_MS,
    QUARANTINE_WEIGHT,
    QUARANTINE_WINDOW_S,
    TIMEOUT_WEIGHT,
)
from policyctl.sandbox.pool import WorkerPool, acquire_shared_pool, release_shared_pool, shared_pool
from policyctl.sandbox.result import check_decision

if TYPE_CHECKING:
    from policyctl.repo import Snapshot

log = logging.getLogger("policyctl.sandbox")

OVERRIDES_DIR = "overrides/"


# -------------------------------------------------------------------- one script


@dataclass
class OverrideRun:
    """One run of a script, for `policyctl override test`: the decision (or None), prints, time."""

    decision: dict[str, Any] | None
    printed: str
    elapsed_ms: float


def run_override(source: str, input: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    """Run an override script's `decide(input)` in the sandbox: a valid decision dict, or None.

    The decision is `{"action", "params"}` as the script returned it, checked as plain JSON
    data and as a valid decision for `input`. Every failure raises a SandboxError subclass:
    SandboxCompileError, SandboxViolation (InvalidDecision), OverrideRuntimeError,
    SandboxTimeout, SandboxLimitError, SandboxUnavailable. `timeout_s` is capped at 2 s.
    """
    return run_override_traced(source, input, timeout_s).decision


def run_override_traced(source: str, input: dict[str, Any], timeout_s: float, *, file: str = "<override>",
                        pool: WorkerPool | None = None) -> OverrideRun:
    """run_override, with what the script printed and how long the worker took."""
    if not isinstance(source, str):
        raise SandboxError(f"the source must be a str, not {type(source).__name__}", file=file)
    if not isinstance(input, dict):
        raise SandboxError(f"the input must be a dict, not {type(input).__name__}", file=file)
    timeout = _timeout(timeout_s, file)
    compile_override(source, file=file)  # the first wall, in this process: file:line before any worker
    try:
        payload = orjson.dumps(input)
    except TypeError as exc:
        raise SandboxError(f"the input is not JSON data: {exc}", file=file) from None
    own = pool or shared_pool()
    try:
        outcome = own.run(source, payload, file=file, timeout_s=timeout)
    except SandboxUnavailable:
        if pool is not None or not own.closed:
            raise
        # The shared pool was stopped under us (its last OverrideSet closed): start it again.
        outcome = shared_pool().run(source, payload, file=file, timeout_s=timeout)
    decision = check_decision(outcome.result, input, file=file)
    return OverrideRun(decision, outcome.printed, outcome.elapsed_s * 1000)


def _timeout(timeout_s: Any, file: str) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) \
            or timeout_s <= 0:
        raise SandboxError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}", file=file)
    return min(float(timeout_s), HARD_TIMEOUT_MS / 1000)


# -------------------------------------------------------------------- a revision's overrides


@dataclass(frozen=True)
class Override:
    """One loaded override: its header (read with ast, outside the sandbox), source and blob id."""

    header: OverrideHeader
    source: str
    blob: str

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def file(self) -> str:
        return self.header.file

    @property
    def timeout_s(self) -> float:
        return min(self.header.timeout_ms or DEFAULT_TIMEOUT_MS, HARD_TIMEOUT_MS) / 1000

    @property
    def summary(self) -> str:
        """The first line of the docstring: why the override exists, shown as the decision's reason."""
        return self.header.doc.strip().splitlines()[0].strip() if self.header.doc.strip() else ""

    @property
    def source_label(self) -> str:
        return f"override:{self.file}@{self.blob}"

    def describe(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.file, "blob": self.blob,
                               "priority": self.header.priority, "expires": self.header.expires.isoformat(),
                               "timeout_ms": round(self.timeout_s * 1000), "match": self.header.match,
                               "why": self.summary}
        if now is not None:
            out["expired"] = self.header.expired(now)
        return out


# -------------------------------------------------------------------- quarantine and budget

BUDGET_CODE = "override_budget_exhausted"
# Not the script's fault, so never held against it: the pool had no free worker, or the
# overrides before it spent the decision's budget.
_NOT_ITS_FAULT = frozenset({SandboxUnavailable.code, BUDGET_CODE})
# Below this, a call cannot even cross the pipe: the override is skipped, not started.
_MIN_RUN_S = 0.001


def budget_ms_from_env() -> int:
    """This process's override budget: $POLICYCTL_OVERRIDE_BUDGET_MS (set by the gateway for its
    workers), else DEFAULT_BUDGET_MS."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_MS
    if not raw.isdigit() or int(raw) <= 0:
        raise UsageError(f"${BUDGET_ENV}={raw!r}: expected a positive whole number of milliseconds, e.g. 250")
    return int(raw)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class Quarantine:
    """Why an override is skipped until the next revision: the failures that tripped it."""

    name: str
    file: str
    code: str  # the failure that tripped it
    count: int  # failures in the window, that one included
    codes: dict[str, int]
    first: datetime
    last: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "code": self.code, "count": self.count,
                "codes": dict(self.codes), "first": _iso(self.first), "last": _iso(self.last)}


@dataclass
class FailureWindow:
    """One override's failures within the last `window_s` of the pipeline's clock, weighted."""

    window_s: float = QUARANTINE_WINDOW_S
    weight: int = QUARANTINE_WEIGHT
    recent: list[tuple[datetime, str]] = field(default_factory=list)

    def add(self, at: datetime, code: str) -> bool:
        """Record one failure; True when the window now weighs enough to quarantine.

        The clock is the pipeline's (a replay's may run backwards), so the window is a
        distance either way, not a queue.
        """
        self.recent = [(t, c) for t, c in self.recent if abs((at - t).total_seconds()) <= self.window_s]
        self.recent.append((at, code))
        return sum(TIMEOUT_WEIGHT if c == SandboxTimeout.code else 1 for _, c in self.recent) >= self.weight

    def quarantine(self, override: Override) -> Quarantine:
        codes: dict[str, int] = {}
        for _, c in self.recent:
            codes[c] = codes.get(c, 0) + 1
        times = [t for t, _ in self.recent]
        return Quarantine(override.name, override.file, self.recent[-1][1], len(self.recent), codes,
                          min(times), max(times))


@dataclass
class OverrideSet:
    """A revision's overrides, by priority (higher first) then name; the pipeline's OverrideSlot.

    `failures` counts, per override name, the calls that failed (timeout, violation, limit,
    error, invalid decision) and were skipped; `stats()` has every counter for the metrics.
    `quarantined` holds the overrides that kept failing, skipped for as long as this set (this
    revision) lives: the state is here, so `policyctl decide`, a shadow replay and the gateway
    quarantine alike, and a new revision starts clean. `budget_ms` bounds the time all the
    overrides of one decision take together (None: $POLICYCTL_OVERRIDE_BUDGET_MS or 250).
    `close()` gives back the worker pool: the shared pool stops when no OverrideSet uses it.
    """

    overrides: list[Override]
    pool: WorkerPool | None = None
    failures: dict[str, int] = field(default_factory=dict)
    failures_by_code: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, Quarantine] = field(default_factory=dict)
    budget_ms: int | None = None
    quarantine_window_s: float = QUARANTINE_WINDOW_S
    quarantine_weight: int = QUARANTINE_WEIGHT

    def __post_init__(self) -> None:
        self.overrides = sorted(self.overrides, key=lambda o: (-o.header.priority, o.name))
        if self.budget_ms is None:
            self.budget_ms = budget_ms_from_env()  # before taking the pool: a bad value leaks nothing
        self._windows: dict[str, FailureWindow] = {}
        self._lock = threading.Lock()
        self._shared = self.pool is None
        self._pool = self.pool if self.pool is not None else acquire_shared_pool()
        self._closed = False
        for o in self.overrides:
            self.failures.setdefault(o.name, 0)
            self.decisions.setdefault(o.name, 0)
            self.calls.setdefault(o.name, 0)

    def __len__(self) -> int:
        return len(self.overrides)

    def active(self, input: dict[str, Any], now: datetime) -> list[Override]:
        """The overrides that apply to `input` at `now`: not expired, and `match` selects it."""
        return [o for o in self.overrides if not o.header.expired(now) and o.header.selects(input)]

    def decide(self, input: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """The first active override's valid decision, or None to let the policies decide.

        An override that fails in any way is skipped, logged and counted; the next one, or the
        policies, decide. One that keeps failing is quarantined (`_failed`) and not run again.
        All of them share the budget: each call's deadline is cut to what is left, and once it
        is spent the rest are skipped, so a decision never waits on overrides longer than the
        budget. An expired override stops applying at its expiry, with no new commit.
        """
        active = [o for o in self.active(input, now) if o.name not in self.quarantined]
        if not active:
            return None
        try:
            payload = orjson.dumps(input)
        except TypeError as exc:
            log.warning("overrides skipped: the input is not JSON data (%s)", exc)
            return None
        budget_s = (self.budget_ms or DEFAULT_BUDGET_MS) / 1000
        deadline = time.monotonic() + budget_s
        for i, override in enumerate(active):
            remaining = deadline - time.monotonic()
            if remaining < _MIN_RUN_S:
                self._skip_spent(active[i:])
                return None
            timeout = min(override.timeout_s, remaining)
            self._bump(self.calls, override.name)
            try:
                outcome = self._pool_for_call().run(override.source, payload, file=override.file,
                                                    timeout_s=timeout, within_s=remaining)
                decision = check_decision(outcome.result, input, file=override.file)
            except SandboxError as exc:
                code = exc.code
                if isinstance(exc, SandboxTimeout) and timeout < 0.5 * min(override.timeout_s, budget_s):
                    code = BUDGET_CODE  # cut short by the time the overrides before it took
                self._failed(override, exc, code, now)
                continue
            if decision is None:
                continue
            self._bump(self.decisions, override.name)
            return {"action": decision["action"], "params": decision["params"],
                    "reasons": [{"rule": override.name, "file": override.file, "message": override.summary}],
                    "source": override.source_label, "shadow": []}
        return None

    def _failed(self, override: Override, exc: SandboxError, code: str, now: datetime) -> None:
        """Count and log one failed call; quarantine the override when its window weighs enough."""
        self._bump(self.failures, override.name)
        self._bump(self.failures_by_code, code)
        where = f"{override.file}:{exc.line}" if exc.line else override.file
        log.warning("override %s skipped (%s): %s", where, code, exc.detail)
        if code in _NOT_ITS_FAULT:
            return
        with self._lock:
            window = self._windows.setdefault(override.name,
                                              FailureWindow(self.quarantine_window_s, self.quarantine_weight))
            if not window.add(now, code) or override.name in self.quarantined:
                return
            quarantine = self.quarantined[override.name] = window.quarantine(override)
        log.warning("override %s quarantined until the next revision: %d failures within %g s (%s), "
                    "first %s, last %s; the policies decide its inputs", override.file, quarantine.count,
                    self.quarantine_window_s, ", ".join(f"{c} x{n}" for c, n in sorted(quarantine.codes.items())),
                    _iso(quarantine.first), _iso(quarantine.last))

    def _skip_spent(self, skipped: list[Override]) -> None:
        """The budget is spent: these overrides do not run for this decision (not held against them)."""
        with self._lock:
            self.failures_by_code[BUDGET_CODE] = self.failures_by_code.get(BUDGET_CODE, 0) + len(skipped)
        log.warning("overrides %s skipped: this decision's %d ms override budget is spent",
                    ", ".join(o.file for o in skipped), self.budget_ms)

    def stats(self, now: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            counters = {"calls": dict(self.calls), "decisions": dict(self.decisions),
                        "failures": dict(self.failures), "failures_by_code": dict(self.failures_by_code),
                        "quarantined": [q.to_dict() for q in self.quarantined.values()]}
        return {"overrides": [o.describe(now) for o in self.overrides], **counters, "budget_ms": self.budget_ms,
                "pool": self._pool.stats()}

    def close(self) -> None:
        """Give back the worker pool (idempotent); a shared pool stops when its last user closes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._shared:
            release_shared_pool(self._pool)

    def __enter__(self) -> OverrideSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool_for_call(self) -> WorkerPool:
        # A closed set still answers (a request in flight during a hot swap): it borrows the live pool.
        if self._pool.closed and self._shared:
            self._pool = shared_pool()
        return self._pool

    def _bump(self, counter: dict[str, int], key: str) -> None:
        with self._lock:
            counter[key] = counter.get(key, 0) + 1


def load_overrides(snapshot: Snapshot, *, pool: WorkerPool | None = None,
                   budget_ms: int | None = None) -> OverrideSet | None:
    """The overrides of a snapshot, validated and compiled; None when it has no overrides/*.py.

    Raises SandboxCompileError (a PolicyctlError) listing every broken header or script as
    file:line: a revision with a broken override is not served. Expired overrides are loaded
    and simply stop applying at their expiry (`policyctl check` flags them).
    """
    paths = [p for p in snapshot.paths(OVERRIDES_DIR, ".py") if p.count("/") == 1]
    if not paths:
        return None
    problems: list[Problem] = []
    loaded: list[Override] = []
    for path in paths:
        try:
            source = snapshot.text(path)
            header = parse_override_header(source, file=path)
        except ValidationError as exc:
            problems.append(exc.problem(path))  # its own code: override_expires, override_priority, …
            continue
        except PolicyctlError as exc:
            problems.append(Problem(path, exc.message, code="override_header"))
            continue
        found = compile_problems(source, file=path)
        if found:
            problems.extend(found)
            continue
        blob = snapshot.blob_ids.get(path) or _blob_id(snapshot.files[path])
        loaded.append(Override(header, source, blob))
    if problems:
        raise SandboxCompileError.from_problems(problems)
    return OverrideSet(loaded, pool=pool, budget_ms=budget_ms)


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
