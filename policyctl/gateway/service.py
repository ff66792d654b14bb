"""The gateway without HTTP: decide on the active revision, log it, count it, and report status."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyctl import __version__
from policyctl.decide import error_decision
from policyctl.errors import EvaluationError
from policyctl.gateway.bundles import BundleSigning
from policyctl.gateway.decision_log import (
    DEFAULT_BACKLOG_BYTES,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BYTES,
    DEFAULT_WINDOW_BYTES,
    DecisionLog,
)
from policyctl.gateway.metrics import GatewayMetrics, total
from policyctl.gateway.revisions import RevisionManager, utc_stamp
from policyctl.gateway.workers import DEFAULT_MAX_QUEUE_WAIT, WorkerFailure, WorkerPool
from policyctl.model.limits import MAX_INPUT_BYTES
from policyctl.sandbox.limits import BUDGET_ENV, DEFAULT_BUDGET_MS

# Worker failures that are not a decision about the input: the client gets 503 and retries.
UNAVAILABLE = frozenset({"overloaded", "no_worker", "shutting_down"})


@dataclass
class GatewayConfig:
    """Everything `policyctl gateway serve` was told."""

    repo: Path
    ref: str = "refs/heads/main"
    host: str = "127.0.0.1"
    port: int = 8181
    remote: str | None = None
    poll: float = 10.0
    token: str | None = None
    log_dir: Path | None = None
    log_max_bytes: int = DEFAULT_MAX_BYTES
    log_flush_interval: float = DEFAULT_FLUSH_INTERVAL
    log_window_bytes: int = DEFAULT_WINDOW_BYTES  # recent decisions kept for outcomes to join
    log_backlog_bytes: int = DEFAULT_BACKLOG_BYTES  # records queued for the writer thread
    workers: int = 2
    eval_timeout: float = 3.0
    slow_factor: float = 5.0  # a commit evaluating this many times slower than the serving one is kept out
    on_slow: str = "degrade"  # or "refuse": a slow commit is then failed like a broken one
    queue_deadline: float = 10.0  # the longest a request waits for a worker (X-Request-Timeout may shorten it)
    max_queue_wait: float = DEFAULT_MAX_QUEUE_WAIT  # admission: the expected queue wait past which a request is refused at once
    build_timeout: float = 60.0
    max_body_bytes: int = MAX_INPUT_BYTES  # the input limit of every other path (README "Data")
    header_timeout: float = 10.0  # a request's headers must arrive within this (slow-header connections)
    idle_timeout: int = 30  # seconds (uvicorn counts whole ones): a connection with no request this long is closed
    shutdown_linger: float = 1.0  # after SIGTERM, requests on open connections get 503 shutting_down this long
    bundle_signing: BundleSigning | None = None  # sign the OPA bundles of GET /v1/bundles/…
    override_budget_ms: int = DEFAULT_BUDGET_MS  # all the overrides of one decision together


class Unavailable(Exception):
    """The gateway cannot decide right now (not ready, overloaded, shutting down): HTTP 503."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after




class Gateway:
    """The worker pool, the revision manager, the decision log and the metrics, wired together."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.draining = False  # SIGTERM received: every new request is answered 503 shutting_down
        self.metrics = m = GatewayMetrics()
        # The overrides run in the evaluation workers' sandbox slots, which read the budget from
        # the environment they inherit (as they do the engine): one setting for every slot.
        os.environ[BUDGET_ENV] = str(config.override_budget_ms)
        self.pool = WorkerPool(config.workers, str(config.repo), eval_timeout=config.eval_timeout,
                               build_timeout=config.build_timeout, wanted=self._wanted,
                               queue_timeout=config.queue_deadline, queue_wait=m.queue_wait,
                               max_queue_wait=config.max_queue_wait)
        self.revisions = RevisionManager(config.repo, config.ref, self.pool, poll=config.poll, remote=config.remote,
                                         swap_latency=m.swap_latency, slow_factor=config.slow_factor,
                                         on_slow=config.on_slow, eval_timeout=config.eval_timeout)
        self.log = DecisionLog(config.log_dir, max_bytes=config.log_max_bytes,
                               flush_interval=config.log_flush_interval, window_bytes=config.log_window_bytes,
                               backlog_bytes=config.log_backlog_bytes)
        m.watch(self)

    def _wanted(self) -> set[str]:
        return self.revisions.wanted()

    def quarantined_overrides(self) -> list[dict[str, Any]]:
        """The active revision's quarantined overrides, by name (a new revision starts with none)."""
        active = self.revisions.active
        held = self.pool.override_quarantine.get(active.id, {}) if active else {}
        return [dict(held[name]) for name in sorted(held)]

    async def start(self) -> None:
        self.log.start()
        await self.pool.start()
        await self.revisions.start()

    async def stop(self) -> None:
        """Stop watching, stop the workers, then write out the decision log (nothing queued is lost)."""
        await self.revisions.stop()
        await self.pool.close()
        await asyncio.to_thread(self.log.close)

    # ------------------------------------------------------------------ decisions

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down (SIGTERM): finishing the requests in flight"
        if self.revisions.active is None:
            if self.revisions.degraded:
                return False, "no commit of the ref builds; see /v1/status"
            if self.revisions.repo_error:  # a ref that never resolved is no "loading": say why
                return False, f"cannot load the first revision: {self.revisions.repo_error}"
            return False, "loading the first revision"
        if self.pool.alive == 0:
            return False, "no evaluation worker is running"
        return True, "ready"

    async def decide(self, input: dict[str, Any], received: float, deadline: float | None = None) -> dict[str, Any]:
        """The decision for a checked input on the active revision; raises Unavailable.

        `deadline`: the seconds the client said it waits (X-Request-Timeout). Cancelled when
        the client goes away: nothing is then logged, since nobody acted on the decision.
        """
        rev = self.revisions.acquire()
        if rev is None:
            raise Unavailable("not_ready", self.ready()[1])
        try:
            decision = await self.pool.decide(rev.id, input, deadline)
        except WorkerFailure as exc:
            if exc.code in UNAVAILABLE:
                self.metrics.unavailable.labels(exc.code).inc()
                raise Unavailable(exc.code, exc.message, exc.retry_after) from None
            decision = error_decision(EvaluationError(exc.message, code=exc.code))
            decision["decision_id"] = uuid.uuid4().hex
            decision["revision"] = rev.id
        finally:
            self.revisions.release(rev)
        now = time.time()
        elapsed = time.perf_counter() - received
        action = decision.get("action", "deny")
        source = str(decision.get("source", "error"))
        self.metrics.decided(action, source)
        self.metrics.latency.observe(elapsed)
        record: dict[str, Any] = {"id": decision["decision_id"], "ts": utc_stamp(now), "input": input,
                                  "decision": decision, "revision": rev.id}
        shadow = decision.get("shadow")
        if shadow:
            divergent = [{"rule": s.get("rule"), "module": s.get("module"), "action": s.get("action"),
                          "decided": action} for s in shadow if isinstance(s, dict) and s.get("action") != action]
            if divergent:
                record["shadow_divergence"] = divergent
                for d in divergent:
                    self.metrics.divergences.labels(str(d["rule"]), str(d["action"]), action).inc()
        record["latency_ms"] = round(elapsed * 1e3, 3)
        self.log.decision(record)
        return decision

    def outcome(self, decision_id: str, outcome: dict[str, Any]) -> bool:
        joined = self.log.outcome(decision_id, outcome, utc_stamp(time.time()))
        self.metrics.outcomes.labels("joined" if joined else "unknown_decision").inc()
        return joined

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        ready, why = self.ready()
        quarantined = self.quarantined_overrides()
        status = {
            "ready": ready, "ready_reason": why, "version": __version__, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            **self.revisions.describe(),
            "workers": {"count": self.config.workers, "ready": self.pool.alive, "eval_timeout_s": self.config.eval_timeout,
                        "timeouts": self.pool.timeouts, "crashes": self.pool.crashes,
                        "override_failures": dict(self.pool.override_failures),
                        "restarts": dict(self.pool.restarts), "queued": len(self.pool.pending),
                        "queue_deadline_s": self.config.queue_deadline,
                        "max_queue_wait_s": self.config.max_queue_wait,
                        "expected_wait_s": round(self.pool.expected_wait(), 4),
                        "eval_mean_s": round(self.pool.eval_mean, 4), "overload_refused": self.pool.refused_early,
                        "abandoned": dict(self.pool.abandoned),
                        "batches": {"frames": self.pool.batches, "decisions": self.pool.batched},
                        "last_failure": self.pool.last_failure, "processes": self.pool.describe()},
            "decision_log": self.log.describe(),
            "decisions": {"total": int(total(self.metrics.decisions)),
                          "shadow_divergences": int(total(self.metrics.divergences))},
            "overrides": {"budget_ms": self.config.override_budget_ms, "quarantined": quarantined},
        }
        _mark_quarantined(status.get("active"), quarantined)
        return status


def _mark_quarantined(active: Any, quarantined: list[dict[str, Any]]) -> None:
    """Show each quarantined override as such in the served revision's override list (a copy)."""
    if not isinstance(active, dict) or not quarantined:
        return
    by_file = {q["file"]: q for q in quarantined}
    active["overrides"] = [{**o, "mode": "quarantined", "quarantine": by_file[o.get("file")]}
                           if o.get("file") in by_file else o for o in active.get("overrides", [])]
