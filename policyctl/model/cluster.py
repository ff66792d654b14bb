"""Failure clusters as typed records: clusters.json, what `cluster` hands to `draft` and the bot. No I/O.

`from_dict` validates against the shipped schema (errors name the field); `to_dict`
writes the JSON back with the keys in the order `policyctl cluster` writes them, and
keys a record does not know (`extra`) are kept, so nothing is dropped on a round trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policyctl.model.schema import validate


def _extra(raw: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The keys of `raw` its record does not know, kept for the round trip."""
    return {k: v for k, v in raw.items() if k not in known}


def _keep() -> Any:
    return dataclasses.field(default_factory=dict, repr=False)


def compared_with(contrast: str) -> str:
    """What a cluster's distinguishing values are compared with, in words, for every output that shows them
    (the HTML report, the terminal table, the pull request body): ok traffic, or the other failures when
    the input held too few successes (ClusterReport.contrast)."""
    return "other failures" if contrast == "other_failures" else "successful traffic"


@dataclass(frozen=True)
class Distinguishing:
    """An input value most of a cluster's failures share (`share`) and successful traffic seldom has."""

    field: str
    value: Any
    share: float
    success_share: float
    extra: dict[str, Any] = _keep()

    KEYS = ("field", "value", "share", "success_share")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Distinguishing:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        return cls(raw["field"], raw["value"], raw["share"], raw["success_share"], _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "share": self.share,
                "success_share": self.success_share} | self.extra


@dataclass(frozen=True)
class NumericBound:
    """A numeric input field beyond `threshold` (`direction` `>` or `<`) in most of a cluster's failures."""

    field: str
    direction: str
    threshold: float
    median: float
    success_median: float
    success_share_beyond: float  # the share of successful traffic beyond the threshold too
    extra: dict[str, Any] = _keep()

    KEYS = ("field", "direction", "threshold", "median", "success_median", "success_share_beyond")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NumericBound:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        return cls(raw["field"], raw["direction"], raw["threshold"], raw["median"], raw["success_median"],
                   raw["success_share_beyond"], _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "direction": self.direction, "threshold": self.threshold, "median": self.median,
                "success_median": self.success_median, "success_share_beyond": self.success_share_beyond} | self.extra


@dataclass(frozen=True)
class DeadlockCycle:
    """The wait-for cycle of a deadlock cluster: the roles caught in it and the kinds of resource held."""

    roles: tuple[str, ...] = ()
    resource_kinds: tuple[str, ...] = ()
    length: int | None = None  # agents in the cycle
    variants: tuple[str, ...] | None = None  # role sets merged into this one (a third agent caught in it)
    extra: dict[str, Any] = _keep()

    KEYS = ("roles", "resource_kinds", "length", "variants")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeadlockCycle:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        variants = raw.get("variants")
        return cls(tuple(raw.get("roles", ())), tuple(raw.get("resource_kinds", ())), raw.get("length"),
                   tuple(variants) if variants is not None else None, _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"roles": list(self.roles), "resource_kinds": list(self.resource_kinds)}
        if self.length is not None:
            out["length"] = self.length
        if self.variants is not None:
            out["variants"] = list(self.variants)
        return out | self.extra


@dataclass(frozen=True)
class AgentSummary:
    """How many agents a cluster's failures involve, and the ten seen most."""

    count: int | None = None
    top: tuple[str, ...] = ()
    extra: dict[str, Any] = _keep()

    KEYS = ("count", "top")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AgentSummary:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        return cls(raw.get("count"), tuple(raw.get("top", ())), _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.count is None else {"count": self.count}
        return out | {"top": list(self.top)} | self.extra


@dataclass(frozen=True)
class TemplateCount:
    """A log template of a cluster (variables masked as `<*>`) and how many of its failures show it."""

    template: str
    count: int
    extra: dict[str, Any] = _keep()

    KEYS = ("template", "count")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TemplateCount:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        return cls(raw["template"], raw["count"], _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "count": self.count} | self.extra


@dataclass(frozen=True)
class Timeline:
    """A cluster's failures over time: `counts[i]` failures in the `step` seconds from `start` + i * `step`.

    Every cluster of one clusters.json shares `start`, `step` and the number of buckets, so
    their timelines line up; `start` is an ISO 8601 time in UTC.
    """

    start: str
    step: int
    counts: tuple[int, ...]
    extra: dict[str, Any] = _keep()

    KEYS = ("start", "step", "counts")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Timeline:
        """From a dict the schema has checked (Cluster.from_dict does)."""
        return cls(raw["start"], raw["step"], tuple(raw["counts"]), _extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "step": self.step, "counts": list(self.counts)} | self.extra


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """One failure cluster: what fails, how often, since when, and what sets it apart from ok traffic.

    `systemic` clusters are big enough and explained by their inputs (distinguishing
    values, numeric bounds or a deadlock cycle): the ones a policy answers, the only ones
    `draft` and the bot see. `basis` says what holds a cluster together: `fields` or
    `deadlock` (systemic), `text` (a recurring failure no input field separates from the
    rest, grouped by what its messages say: no policy handle, so never drafted; `terms`
    are the words that set its messages apart), or `rare` (too few events to recur).
    """

    fingerprint: str  # stable across logs of the same failure: built from what explains it
    title: str
    systemic: bool
    basis: str = ""  # fields, deadlock, text or rare; "" in a document written before it existed: derived
    status: str  # the most common outcome status of its failures
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    size: int
    share: float  # of all failures in the logs
    first_seen: str | None = None
    last_seen: str | None = None
    agents: AgentSummary = dataclasses.field(default_factory=AgentSummary)
    roles: dict[str, int] = dataclasses.field(default_factory=dict)
    distinguishing: list[Distinguishing]
    numeric: list[NumericBound] = dataclasses.field(default_factory=list)
    deadlock: DeadlockCycle | None = None
    templates: list[TemplateCount] = dataclasses.field(default_factory=list)
    terms: list[str] = dataclasses.field(default_factory=list)  # text clusters: the words their messages share
    runs: int | None = None  # how many runs its failures come from, when the events name their run
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {id, message, where} of a few failures
    coords: tuple[float, float] | None = None  # its place on the HTML report's map
    timeline: Timeline | None = None  # its failures per time bucket; None when its events carry no time
    members: list[str]  # the event ids
    extra: dict[str, Any] = _keep()

    KEYS = ("fingerprint", "title", "systemic", "basis", "status", "statuses", "size", "share", "first_seen",
            "last_seen", "agents", "roles", "distinguishing", "numeric", "deadlock", "templates", "terms", "runs",
            "examples", "coords", "timeline", "members")

    def __post_init__(self) -> None:
        if not self.basis:
            object.__setattr__(self, "basis", "deadlock" if self.systemic and self.deadlock is not None
                               else "fields" if self.systemic else "rare")

    @property
    def policy_handle(self) -> bool:
        """Whether an input field (or a wait-for cycle) explains it, so a policy can answer it."""
        return self.basis in ("fields", "deadlock")

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "", root: str = "") -> Cluster:
        """A cluster from its JSON; a ValidationError names the first bad field (under `root`)."""
        validate("cluster", raw, where=where, root=root)
        return cls._from_valid(raw)

    @classmethod
    def _from_valid(cls, raw: Mapping[str, Any]) -> Cluster:
        deadlock, coords, timeline = raw.get("deadlock"), raw.get("coords"), raw.get("timeline")
        return cls(
            fingerprint=raw["fingerprint"], title=raw["title"], systemic=raw["systemic"],
            basis=raw.get("basis") or "", status=raw["status"],
            statuses=dict(raw.get("statuses") or {}), size=raw["size"], share=raw["share"],
            first_seen=raw.get("first_seen"), last_seen=raw.get("last_seen"),
            agents=AgentSummary.from_dict(raw.get("agents") or {}), roles=dict(raw.get("roles") or {}),
            distinguishing=[Distinguishing.from_dict(d) for d in raw["distinguishing"]],
            numeric=[NumericBound.from_dict(n) for n in raw.get("numeric") or []],
            deadlock=DeadlockCycle.from_dict(deadlock) if deadlock is not None else None,
            templates=[TemplateCount.from_dict(t) for t in raw.get("templates") or []],
            terms=list(raw.get("terms") or []), runs=raw.get("runs"),
            examples=[dict(e) for e in raw.get("examples") or []],
            coords=(coords[0], coords[1]) if coords is not None else None,
            timeline=Timeline.from_dict(timeline) if timeline is not None else None,
            members=list(raw["members"]), extra=_extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint, "title": self.title, "systemic": self.systemic, "basis": self.basis,
            "status": self.status, "statuses": dict(self.statuses), "size": self.size, "share": self.share,
            "first_seen": self.first_seen, "last_seen": self.last_seen, "agents": self.agents.to_dict(),
            "roles": dict(self.roles), "distinguishing": [d.to_dict() for d in self.distinguishing],
            "numeric": [n.to_dict() for n in self.numeric],
            "deadlock": self.deadlock.to_dict() if self.deadlock is not None else None,
            "templates": [t.to_dict() for t in self.templates], "terms": list(self.terms), "runs": self.runs,
            "examples": [dict(e) for e in self.examples],
        }
        if self.coords is not None:
            out["coords"] = list(self.coords)
        if self.timeline is not None:
            out["timeline"] = self.timeline.to_dict()
        out["members"] = list(self.members)
        return out | self.extra


@dataclass(frozen=True, kw_only=True)
class Totals:
    """What the clustering read and found: lines, failures, the ok baseline, systemic, text and rare events."""

    lines: int = 0
    rejected: int = 0  # malformed lines skipped
    truncated: int = 0
    failures: int
    successes: int
    systemic_clusters: int
    systemic_events: int
    text_clusters: int = 0  # recurring failures without a policy handle (basis `text`)
    text_events: int = 0
    rare_events: int  # in clusters too small to recur
    extra: dict[str, Any] = _keep()

    KEYS = ("lines", "rejected", "truncated", "failures", "successes", "systemic_clusters", "systemic_events",
            "text_clusters", "text_events", "rare_events")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Totals:
        """From a dict the schema has checked (ClusterReport.from_dict does)."""
        return cls(lines=raw.get("lines", 0), rejected=raw.get("rejected", 0), truncated=raw.get("truncated", 0),
                   failures=raw["failures"], successes=raw["successes"], systemic_clusters=raw["systemic_clusters"],
                   systemic_events=raw["systemic_events"], text_clusters=raw.get("text_clusters", 0),
                   text_events=raw.get("text_events", 0), rare_events=raw["rare_events"], extra=_extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "rejected": self.rejected, "truncated": self.truncated, "failures": self.failures,
                "successes": self.successes, "systemic_clusters": self.systemic_clusters,
                "systemic_events": self.systemic_events, "text_clusters": self.text_clusters,
                "text_events": self.text_events, "rare_events": self.rare_events} | self.extra


@dataclass(frozen=True, kw_only=True)
class ClusterReport:
    """clusters.json: every cluster of some exported logs, systemic first, and what was read."""

    version: int = 1
    embedder: str
    # what "distinguishing" compares a cluster with: `successes` (the ok traffic of the logs), or
    # `other_failures` when the logs hold too little ok traffic (CONTRAST_MIN_SUCCESSES in cluster.core):
    # then a Distinguishing's `success_share` is its value's share among the other clusters' failures
    contrast: str = "successes"
    inputs: list[str] = dataclasses.field(default_factory=list)
    totals: Totals
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # Problem.to_dict() of bad lines
    warnings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    clusters: list[Cluster] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = _keep()

    KEYS = ("version", "embedder", "contrast", "inputs", "totals", "problems", "warnings", "clusters")

    @property
    def systemic(self) -> list[Cluster]:
        return [c for c in self.clusters if c.systemic]

    @property
    def text_clusters(self) -> list[Cluster]:
        """Recurring failures grouped by their text, which no input field explains: reported, never drafted."""
        return [c for c in self.clusters if c.basis == "text"]

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "") -> ClusterReport:
        """clusters.json as read; a ValidationError names the first bad field (`clusters[3].size`)."""
        validate("clusters", raw, where=where)
        return cls(version=raw["version"], embedder=raw["embedder"], contrast=raw.get("contrast") or "successes",
                   inputs=list(raw.get("inputs") or []),
                   totals=Totals.from_dict(raw["totals"]), problems=[dict(p) for p in raw.get("problems") or []],
                   warnings=[dict(p) for p in raw.get("warnings") or []],
                   clusters=[Cluster._from_valid(c) for c in raw["clusters"]], extra=_extra(raw, cls.KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "embedder": self.embedder, "contrast": self.contrast,
                "inputs": list(self.inputs),
                "totals": self.totals.to_dict(), "problems": [dict(p) for p in self.problems],
                "warnings": [dict(p) for p in self.warnings],
                "clusters": [c.to_dict() for c in self.clusters]} | self.extra
