"""Override scripts in the decision pipeline: load a revision's overrides/*.py and decide with them."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from policyctl.errors import PolicyctlError, Problem, ValidationError
from policyctl.model.records import OverrideHeader, parse_override_header
from policyctl.sandbox.compile import compile_override, compile_problems
from policyctl.sandbox.errors import SandboxCompileError, SandboxError, SandboxUnavailable
from policyctl.sandbox.limits import DEFAULT_TIMEOUT_MS, HARD_TIMEOUT_MS
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


@dataclass
class OverrideSet:
    """A revision's overrides, by priority (higher first) then name; the pipeline's OverrideSlot.

    `failures` counts, per override name, the calls that failed (timeout, violation, limit,
    error, invalid decision) and were skipped; `stats()` has every counter for the metrics.
    `close()` gives back the worker pool: the shared pool stops when no OverrideSet uses it.
    """

    overrides: list[Override]
    pool: WorkerPool | None = None
    failures: dict[str, int] = field(default_factory=dict)
    failures_by_code: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.overrides = sorted(self.overrides, key=lambda o: (-o.header.priority, o.name))
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
        policies, decide. An expired override stops applying at its expiry, with no new commit.
        """
        active = self.active(input, now)
        if not active:
            return None
        try:
            payload = orjson.dumps(input)
        except TypeError as exc:
            log.warning("overrides skipped: the input is not JSON data (%s)", exc)
            return None
        for override in active:
            self._bump(self.calls, override.name)
            try:
                outcome = self._pool_for_call().run(override.source, payload, file=override.file,
                                                    timeout_s=override.timeout_s)
                decision = check_decision(outcome.result, input, file=override.file)
            except SandboxError as exc:
                self._bump(self.failures, override.name)
                self._bump(self.failures_by_code, exc.code)
                where = f"{override.file}:{exc.line}" if exc.line else override.file
                log.warning("override %s skipped (%s): %s", where, exc.code, exc.detail)
                continue
            if decision is None:
                continue
            self._bump(self.decisions, override.name)
            return {"action": decision["action"], "params": decision["params"],
                    "reasons": [{"rule": override.name, "file": override.file, "message": override.summary}],
                    "source": override.source_label, "shadow": []}
        return None

    def stats(self, now: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            counters = {"calls": dict(self.calls), "decisions": dict(self.decisions),
                        "failures": dict(self.failures), "failures_by_code": dict(self.failures_by_code)}
        return {"overrides": [o.describe(now) for o in self.overrides], **counters, "pool": self._pool.stats()}

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


def load_overrides(snapshot: Snapshot, *, pool: WorkerPool | None = None) -> OverrideSet | None:
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
            problems.append(exc.problem(path, "override_header"))
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
    return OverrideSet(loaded, pool=pool)


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
