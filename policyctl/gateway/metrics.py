"""Counters, gauges and histograms rendered in the Prometheus text format (0.0.4), without a client library."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


_INF = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metric:
    """One metric family: a name, help text, label names and its samples."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(Metric):
    """A monotonic count per label combination. Updated from the event loop only."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[LabelValues, float] = {}
        if not self.label_names:
            self.values[()] = 0

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def total(self) -> float:
        return sum(self.values.values())

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Metric):
    """Values read when the metrics are scraped, from a callback, so they are never stale.

    With kind="counter" it exposes a count that another component keeps (worker restarts,
    log records written) without that component importing this module.
    """

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 read: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None, kind: str = "gauge") -> None:
        super().__init__(name, help, labels)
        self.read = read or (lambda: ())
        self.kind = kind

    def samples(self) -> Iterable[str]:
        for key, value in self.read():
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram(Metric):
    """Cumulative buckets, sum and count per label combination."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[LabelValues, list[float]] = {}  # per-bucket counts, +Inf count, sum
        if not self.label_names:
            self.series[()] = [0.0] * (len(self.bounds) + 2)

    def observe(self, value: float, *labels: str) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def count(self, *labels: str) -> int:
        series = self.series.get(labels)
        return int(sum(series[:-1])) if series else 0

    def samples(self) -> Iterable[str]:
        for key, series in sorted(self.series.items()):
            running = 0.0
            for bound, n in zip(self.bounds, series, strict=False):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(running)}"
            running += series[len(self.bounds)]
            yield f"{self.name}_bucket{_labels(self.label_names, key, _INF)} {_number(running)}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-1])}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {_number(running)}"


class Registry:
    """The gateway's metric families in registration order."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help, labels)
        self.add(metric)
        return metric

    def gauge(self, name: str, help: str, labels: Sequence[str] = (),
              read: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None, kind: str = "gauge") -> Gauge:
        metric = Gauge(name, help, labels, read, kind)
        self.add(metric)
        return metric

    def histogram(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
        metric = Histogram(name, help, buckets, labels)
        self.add(metric)
        return metric

    def render(self) -> str:
        return "".join(m.render() for m in self.metrics)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
