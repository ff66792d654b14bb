"""The evidence a drafter works from: a cluster's failures (train and hold-out by time) and ok traffic."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from policyctl.errors import InputError, Problem
from policyctl.model.cluster import Cluster
from policyctl.model.jsonl import ReadStats, read_jsonl
from policyctl.model.records import FAILURES

HOLDOUT_SHARE = 0.2
MAX_OK = 30_000


@dataclass
class Evidence:
    """Events of one cluster, and the successful traffic it must not disturb."""

    cluster: Cluster
    train: list[dict[str, Any]]
    holdout: list[dict[str, Any]]
    ok: list[dict[str, Any]]
    ok_total: int
    other_failures: int = 0
    problems: list[Problem] = field(default_factory=list)
    # base decisions of ok events by event id, shared by every draft against one base
    base_cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return self.train + self.holdout

    @property
    def kind(self) -> str:
        kinds = [e["input"].get("kind") for e in self.failures]
        return max(set(kinds), key=kinds.count) if kinds else "action"


def _is_event(record: Any, where: str) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get("input"), dict) or not isinstance(record.get("id"), str):
        raise InputError(f"{where}: not an Event (id and input are required)")
    return record


def load_evidence(clusters: list[Cluster], logs: Iterable[Path], *, seed: int = 0) -> tuple[list[Evidence], ReadStats]:
    """One pass over the logs: each cluster's member events, and a uniform sample of ok traffic.

    Hold-out: the latest HOLDOUT_SHARE of a cluster's failures by time, never seen while drafting.
    Ok traffic beyond MAX_OK events is reservoir-sampled, so collateral is an unbiased estimate.
    """
    member_of: dict[str, int] = {}
    for i, c in enumerate(clusters):
        for m in c.members:
            member_of[m] = i
    events: list[list[dict[str, Any]]] = [[] for _ in clusters]
    ok: list[dict[str, Any]] = []
    ok_total = other = 0
    rng = random.Random(seed)
    stats = ReadStats()
    for path in logs:
        for _, record in read_jsonl(path, validate=_is_event, stats=stats):
            index = member_of.get(record["id"])
            if index is not None:
                events[index].append(record)
                continue
            status = (record.get("outcome") or {}).get("status", "ok")
            if status != "ok":
                other += status in FAILURES
                continue
            ok_total += 1
            if len(ok) < MAX_OK:
                ok.append(record)
            else:
                j = rng.randrange(ok_total)
                if j < MAX_OK:
                    ok[j] = record
    out = []
    cache: dict[str, dict[str, Any]] = {}
    for c, evs in zip(clusters, events, strict=True):
        evs.sort(key=lambda e: (e.get("ts") or "", e["id"]))
        cut = max(1, int(round(len(evs) * (1 - HOLDOUT_SHARE)))) if len(evs) > 1 else len(evs)
        out.append(Evidence(cluster=c, train=evs[:cut], holdout=evs[cut:], ok=ok, ok_total=ok_total,
                            other_failures=other, base_cache=cache))
    return out, stats


def dump_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def spread(events: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """At most `n` of `events`, evenly spaced, the first and the last among them."""
    if len(events) <= n:
        return list(events)
    if n <= 1:
        return events[:n]
    return [events[round(i * (len(events) - 1) / (n - 1))] for i in range(n)]
