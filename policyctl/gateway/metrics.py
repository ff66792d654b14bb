"""The gateway's metrics on prometheus_client: one registry per gateway, the one place each metric is defined.

Counts the gateway makes itself (decisions, errors, latencies) are instruments updated on
the request path; values another component keeps (revisions, workers, the decision log,
quarantines) are read when the metrics are scraped, by `GatewayCollector`, so they are
never stale and those components never import this module. Labels carry ids and codes
only: free text (commit subjects, error messages) is in /v1/status, never a label value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from policyctl.gateway.service import Gateway

__all__ = ["GatewayCollector", "GatewayMetrics", "Histogram", "total"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
PREFIX = "policyctl_gateway_"

Samples = Iterable[tuple[Sequence[str], float]]


class GatewayMetrics:
    """The instruments the gateway updates, in a registry of its own (never the global default)."""

    def __init__(self) -> None:
        # `_created` series would double every labelled counter and histogram for a start time
        # that process_start_time_seconds already gives (checked when scraped, so process-wide).
        disable_created_metrics()
        # auto_describe: collectors are collected once on registration, so a name defined twice fails at start.
        self.registry = CollectorRegistry(auto_describe=True)
        r, p = self.registry, PREFIX
        self.decisions = Counter(p + "decisions_total", "Decisions answered, by action and source.",
                                 ("action", "source"), registry=r)
        self.latency = Histogram(p + "decision_duration_seconds",
                                 "Time from request received to decision, in seconds.", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.divergences = Counter(p + "shadow_divergences_total",
                                   "Shadow-mode rules whose action differed from the decision.",
                                   ("rule", "shadow_action", "decided_action"), registry=r)
        self.unavailable = Counter(p + "unavailable_total", "Requests answered 503, by reason.", ("code",), registry=r)
        self.errors = Counter(p + "request_errors_total", "Requests refused, by HTTP status and error code.",
                              ("status", "code"), registry=r)
        self.outcomes = Counter(p + "outcomes_total", "Outcomes received, by result.", ("result",), registry=r)
        self.queue_wait = Histogram(p + "queue_wait_seconds", "Time a request waited for a free worker.",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.swap_latency = Histogram(p + "commit_to_serving_seconds",
                                      "From the ref moving in git to the new revision serving, in seconds.",
                                      buckets=SWAP_BUCKETS, registry=r)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds
        # labelled children looked up once per label pair (a handful), not on every request
        self._children: dict[tuple[str, str, str], Any] = {}

    def decided(self, action: str, source: str) -> None:
        """Count a decision; `source` as the decision says it (an override's `@blob` is left out)."""
        self._child(self.decisions, "d", action, source.split("@", 1)[0]).inc()

    def error(self, status: int | str, code: str) -> None:
        """Count a refused request by HTTP status and error code."""
        self._child(self.errors, "e", str(status), code).inc()

    def _child(self, metric: Counter, kind: str, a: str, b: str) -> Any:
        key = (kind, a, b)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(a, b)
        return child

    def watch(self, gateway: Gateway) -> None:
        """Add the values read at scrape time, once the gateway's pool, revisions and log exist."""
        self.registry.register(GatewayCollector(gateway))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type: the text format 0.0.4, or OpenMetrics when Accept asks for it."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


def total(counter: Counter) -> float:
    """A counter's sum over all its label values."""
    return sum(s.value for family in counter.collect() for s in family.samples if s.name.endswith("_total"))


def _gauge(name: str, help: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, help, labels=())
    if value is not None:
        family.add_metric((), value)
    return family


def _counter(name: str, help: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help, value=value)


def _labelled(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, help: str,
              labels: Sequence[str], samples: Samples) -> Metric:
    family = kind(PREFIX + name, help, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _info(name: str, help: str, labels: Sequence[str], rows: Iterable[Sequence[str]]) -> InfoMetricFamily:
    """An info family (exposed as `<name>_info` gauges of value 1), one sample per row of label values."""
    family = InfoMetricFamily(PREFIX + name, help)
    for row in rows:
        family.add_metric((), dict(zip(labels, row, strict=True)))
    return family


class GatewayCollector:
    """The families read from the gateway's revisions, workers and decision log when /metrics is scraped."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self.gateway
        revs, pool, log = g.revisions, g.pool, g.log
        counter, gauge = CounterMetricFamily, GaugeMetricFamily
        active, head = revs.active, revs.head
        yield _info("revision", "The revision being served.", ("revision",), [(active.id,)] if active else [])
        yield _info("head", "The commit the ref points at.", ("revision",), [(head,)] if head else [])
        yield _gauge("revisions_behind", "First-parent commits between the served revision and the head.",
                     float(revs.behind) if revs.behind is not None else None)
        yield _gauge("degraded", "1 when the head does not build or the ref cannot be read (deleted, repository "
                     "moved or unreadable), and an older revision (or none) is served.", 1.0 if revs.degraded else 0.0)
        slow = [(f.revision, g.config.on_slow) for f in revs.slow.values() if f.revision == head]
        slow += [(f.revision, "refuse") for f in revs.failed.values() if f.code == "revision_slow" and f.revision == head]
        yield _info("slow_revision", "The head kept out because it evaluates too slowly (the reason is in "
                    "/v1/status slow_revision).", ("revision", "on_slow"), slow)
        yield _counter("slow_revisions_total", "Commits kept out because they evaluate too slowly.",
                       float(revs.slow_refused))
        yield _gauge("ready", "1 when decisions are being served.", 1.0 if g.ready()[0] else 0.0)
        yield _labelled(counter, "reloads_total", "Revisions built after start, by result.", ("result",),
                        [((k,), float(v)) for k, v in revs.reloads.items()])
        failure = revs.last_error
        yield _labelled(gauge, "last_reload_failure_timestamp_seconds", "When the last commit failed to build, "
                        "with which commit and code (the message is in /v1/status last_error).", ("revision", "code"),
                        [((failure.revision, failure.code), failure.at)] if failure else [])
        yield _labelled(counter, "worker_restarts_total", "Evaluation workers replaced, by reason.", ("reason",),
                        [((k,), float(v)) for k, v in pool.restarts.items()])
        yield _counter("eval_timeouts_total", "Evaluations stopped at the deadline (answered fail-closed).",
                       float(pool.timeouts))
        yield _gauge("workers_ready", "Evaluation workers taking requests.", float(pool.alive))
        yield _gauge("queue_length", "Requests waiting for a free worker.", float(len(pool.pending)))
        yield _gauge("expected_queue_wait_seconds", "The wait admission expects for a request queued now.",
                     pool.expected_wait())
        yield _gauge("eval_mean_seconds", "The typical (median of the last 32) evaluation in a worker.",
                     pool.eval_mean)
        yield _counter("batched_decisions_total", "Decisions sent to a worker together with others (requests "
                       "that waited for the same revision), in one frame.", float(pool.batched))
        yield _counter("overload_refused_total", "Requests refused at once (503 overloaded): expected to wait past "
                       "their deadline.", float(pool.refused_early))
        yield _labelled(counter, "abandoned_total", "Requests whose client went away before the answer, by where "
                        "they were (queued ones are never evaluated); none is logged.", ("stage",),
                        [((k,), float(v)) for k, v in pool.abandoned.items()])
        yield _gauge("decision_log_backlog", "Decision-log records queued and not yet written.", float(log.backlog))
        yield _counter("decision_log_written_total", "Decision-log records written.", float(log.written))
        yield _gauge("decision_log_backlog_bytes", "Bytes of decision-log records queued and not yet written.",
                     float(log.backlog_bytes))
        yield _gauge("outcome_window_bytes", "Bytes of recent decisions held for outcomes to join.",
                     float(log.window_bytes))
        yield _gauge("outcome_window_entries", "Recent decisions held for outcomes to join.", float(log.window_entries))
        yield _counter("outcome_window_evictions_total", "Decisions evicted from the outcome window (count or bytes "
                       "bound); an outcome for one gets 404.", float(log.window_evicted))
        yield _labelled(counter, "decision_log_lost_total", "Decision-log records lost, by reason (never silent).",
                        ("reason",), [(("backlog_full",), float(log.lost_backlog)),
                                      (("write_error",), float(log.lost_write))])
        yield _labelled(counter, "override_failures_total", "Override runs that failed and were skipped, by code.",
                        ("code",), [((k,), float(v)) for k, v in sorted(pool.override_failures.items())])
        yield _labelled(gauge, "overrides_quarantined", "Overrides of the served revision skipped until the next "
                        "one (value 1), with the failure that tripped the quarantine.", ("override", "file", "code"),
                        [((str(q["name"]), str(q["file"]), str(q["code"])), 1.0) for q in g.quarantined_overrides()])
        yield _labelled(counter, "fetches_total", "git fetches of --remote, by result.", ("result",),
                        [((k,), float(v)) for k, v in revs.fetches.items()] if g.config.remote else [])
