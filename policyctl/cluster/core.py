"""From records to fingerprinted failure clusters: templates, deadlock cycles, embeddings, agglomeration.

Failures some input field (or a wait-for cycle) sets apart are systemic clusters, the ones
a policy answers. Failures no field explains are grouped again by what their text says
(the embedder alone decides) and reported as recurring failures without a policy handle.
What explains a cluster is measured against a contrast: the successful traffic, or, when
the logs hold too little of it, the other failures. A value present in every event, or
seen in one run only, explains nothing.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policyctl.cluster.ingest import STRUCTURED, IngestStats, Record
from policyctl.cluster.templates import TemplateMiner
from policyctl.model.cluster import (
    AgentSummary,
    Cluster,
    DeadlockCycle,
    Distinguishing,
    NumericBound,
    TemplateCount,
    Timeline,
)
from policyctl.model.values import human

TEXT_WEIGHT = 0.5          # cosine = w * text similarity + (1 - w) * traffic-profile similarity
DISTANCE_THRESHOLD = 0.45  # average-linkage cosine distance below which units merge
MIN_SHARE = 0.5            # a distinguishing value covers at least half the cluster…
MIN_LIFT = 2.0             # …and is at least twice as common as in successful traffic…
MAX_CHANCE = 1e-9          # …and that many cases would almost never happen by chance (binomial tail)
MAX_VALUES_PER_PATH = 1000
SAMPLE = 2000
EXAMPLES = 5
CONTRAST_MIN_SUCCESSES = 20  # fewer ok events than this cannot show a share (1 in 20): contrast with other failures
TERMS = 5
# a field naming the run (conversation, session, trace) an event belongs to; its values, and any
# value only one run shows, say which run failed, not why
RUN_FIELD = re.compile(r"(?:^|[._])(?:run|session|conversation|thread|trace|episode|trajectory)(?:_?id)?$", re.I)
_MANY_RUNS = "\0many"
MAX_TRACKED_VALUES = 200_000
# Timelines: every cluster's failures in the same buckets, at most TIMELINE_BUCKETS of them (a bar
# still a few pixels wide in the report), each a round step so the axis reads as times of day or dates.
TIMELINE_BUCKETS = 48
TIMELINE_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_TIMES = 20_000  # distinct minutes a unit counts; beyond that its times coarsen to hours, then days


# --------------------------------------------------------------------------- traffic statistics


@dataclass
class Traffic:
    """Categorical value counts and numeric samples of a population of records."""

    n: int = 0
    agents: int = 0  # role shares are per agent: a six-agent event must not count every role as "present"
    values: Counter[tuple[str, Any]] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    numeric: dict[str, list[float]] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, record: Record) -> None:
        self.n += 1
        for path, value in record.fields.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                key = (path, value)
                if key in self.values or self.paths[path] < MAX_VALUES_PER_PATH:
                    if key not in self.values:
                        self.paths[path] += 1
                    self.values[key] += 1
            else:
                self._sample(path, float(value))
                if self.paths[path] < 50 or (path, value) in self.values:  # small integer domains are categorical too
                    if (path, value) not in self.values:
                        self.paths[path] += 1
                    self.values[(path, value)] += 1
        for role in record.role_list:
            self.values[("role", role)] += 1
        self.agents += len(record.role_list)

    def _sample(self, path: str, value: float) -> None:
        seen = self._seen.get(path, 0) + 1
        self._seen[path] = seen
        bucket = self.numeric.setdefault(path, [])
        if len(bucket) < SAMPLE:
            bucket.append(value)
        else:
            j = self._rng.randrange(seen)
            if j < SAMPLE:
                bucket[j] = value

    def population(self, key: tuple[str, Any]) -> int:
        return self.agents if key[0] == "role" else self.n

    def share(self, key: tuple[str, Any]) -> float:
        n = self.population(key)
        return self.values.get(key, 0) / n if n else 0.0

    def minus(self, part: Traffic) -> Traffic:
        """This population without the records of `part` (a subset of it): the rest, to contrast `part` with."""
        out = Traffic(n=self.n - part.n, agents=self.agents - part.agents, values=self.values - part.values)
        for path, xs in self.numeric.items():
            left = Counter(xs) - Counter(part.numeric.get(path, ()))
            if left:
                out.numeric[path] = list(left.elements())
        return out

    def merge(self, other: Traffic) -> None:
        self.n += other.n
        self.agents += other.agents
        self.values.update(other.values)
        for path, xs in other.numeric.items():
            bucket = self.numeric.setdefault(path, [])
            bucket.extend(xs[: max(0, SAMPLE - len(bucket))])


def _quantile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, int(q * (len(ordered) - 1))))]


# --------------------------------------------------------------------------- units


@dataclass
class Unit:
    """A group of failures that clustering treats as one point: a template, or a deadlock cycle."""

    key: str
    text: str
    traffic: Traffic = field(default_factory=Traffic)
    statuses: Counter[str] = field(default_factory=Counter)
    templates: Counter[str] = field(default_factory=Counter)
    members: list[str] = field(default_factory=list)
    agents: Counter[str] = field(default_factory=Counter)
    first: str | None = None
    last: str | None = None
    examples: list[dict[str, str]] = field(default_factory=list)
    cycle: dict[str, Any] | None = None
    runs: set[str] = field(default_factory=set)
    times: Counter[int] = field(default_factory=Counter)  # failures per minute (epoch seconds, UTC)
    grain: int = 60

    @property
    def size(self) -> int:
        return len(self.members)

    def add(self, record: Record, template: str, run: str | None = None) -> None:
        self.traffic.add(record)
        self.statuses[record.status] += 1
        self.templates[template] += 1
        self.members.append(record.id)
        if run is not None and len(self.runs) < 10_000:
            self.runs.add(run)
        for agent in record.agents:
            if agent in self.agents or len(self.agents) < 500:
                self.agents[agent] += 1
        if record.ts:
            if self.first is None or record.ts < self.first:
                self.first = record.ts
            if self.last is None or record.ts > self.last:
                self.last = record.ts
            at = epoch_seconds(record.ts)
            if at is not None:
                self.times[at // self.grain * self.grain] += 1
                if len(self.times) > MAX_TIMES and self.grain < 86400:
                    self.coarsen(3600 if self.grain < 3600 else 86400)
        if len(self.examples) < EXAMPLES and all(e["message"] != record.message for e in self.examples):
            self.examples.append({"id": record.id, "message": record.message[:500], "where": record.where})


    def coarsen(self, grain: int) -> None:
        """Count its times in buckets of `grain` seconds (a long log of one template stays small)."""
        if grain > self.grain:
            coarse: Counter[int] = Counter()
            for at, n in self.times.items():
                coarse[at // grain * grain] += n
            self.times, self.grain = coarse, grain


def epoch_seconds(ts: str) -> int | None:
    """An ISO 8601 timestamp as whole seconds since the epoch (naive times are UTC); None if it is not one."""
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp())


def timeline_axis(units: Iterable[Unit]) -> tuple[int, int, int] | None:
    """The buckets every cluster's timeline shares: (start, step, count) in seconds, or None without times."""
    times = [at for u in units for at in (min(u.times, default=None), max(u.times, default=None)) if at is not None]
    if not times:
        return None
    first, last = min(times), max(times)
    span = last - first + 1
    step = next((s for s in TIMELINE_STEPS if span <= s * TIMELINE_BUCKETS),
                -(-span // (TIMELINE_BUCKETS * 86400)) * 86400)
    start = first // step * step
    return start, step, (last - start) // step + 1


def run_of(record: Record) -> str | None:
    """The run (conversation, session, trace) an event says it belongs to, if a field names one."""
    for path, value in record.fields.items():
        if isinstance(value, str | int) and not isinstance(value, bool) and RUN_FIELD.search(path):
            return str(value)
    return None


def find_cycle(waits_for: list[dict[str, Any]]) -> list[str] | None:
    """The agents of a wait-for cycle (a waits for b, held by b, …, back to a), if the edges form one."""
    edges: dict[str, str] = {}
    for w in waits_for:
        if isinstance(w, dict) and isinstance(w.get("agent"), str) and isinstance(w.get("held_by"), str):
            edges[w["agent"]] = w["held_by"]
    for start in sorted(edges):
        path, node = [start], edges.get(start)
        while node is not None and node not in path and len(path) <= len(edges):
            path.append(node)
            node = edges.get(node)
        if node is not None and node in path:
            return path[path.index(node):]
    return None


# --------------------------------------------------------------------------- clusters


@dataclass
class Group:
    """A cluster while clustering: its units, and what explains their failures."""

    fingerprint: str
    title: str
    units: list[Unit]
    systemic: bool
    distinguishing: list[dict[str, Any]]
    numeric: list[dict[str, Any]]
    status: str
    share: float = 0.0
    coords: tuple[float, float] = (0.0, 0.0)
    signature: str = ""
    basis: str = ""  # fields, deadlock, text or rare (see model.cluster.Cluster)
    terms: list[str] = field(default_factory=list)
    axis: tuple[int, int, int] | None = None  # timeline_axis of all the clusters, set once they are final
    traffic: Traffic = field(default_factory=Traffic)  # its units' traffic together (its units never change)

    @property
    def decisive(self) -> bool:
        """Whether its explanation stands without its text: a cycle, a numeric bound, or two strong conditions.

        Groups sharing only one strong value are merged only when their text agrees too: one
        value in common (a system, a step type) does not make two different failures one.
        """
        strong = [c for c in self.distinguishing if c["share"] >= 0.8 and c["field"] != "kind"]
        return any(u.cycle is not None for u in self.units) or bool(self.numeric) or len(strong) >= 2

    @property
    def size(self) -> int:
        return sum(u.size for u in self.units)

    @property
    def members(self) -> list[str]:
        return [m for u in self.units for m in u.members]

    def to_record(self) -> Cluster:
        statuses: Counter[str] = Counter()
        templates: Counter[str] = Counter()
        agents: Counter[str] = Counter()
        for u in self.units:
            statuses.update(u.statuses)
            templates.update(u.templates)
            agents.update(u.agents)
        roles = Counter({k[1]: v for k, v in self.traffic.values.items() if k[0] == "role"})
        firsts = [u.first for u in self.units if u.first]
        lasts = [u.last for u in self.units if u.last]
        cycle = next((u.cycle for u in self.units if u.cycle), None)
        examples = [e for u in sorted(self.units, key=lambda u: -u.size) for e in u.examples][:EXAMPLES]
        runs: set[str] = set().union(*(u.runs for u in self.units))
        return Cluster(
            fingerprint=self.fingerprint, title=self.title, systemic=self.systemic, basis=self.basis,
            status=self.status,
            statuses=dict(statuses.most_common()), size=self.size, share=round(self.share, 5),
            first_seen=min(firsts) if firsts else None, last_seen=max(lasts) if lasts else None,
            agents=AgentSummary(len(agents), tuple(a for a, _ in agents.most_common(10))),
            roles=dict(roles.most_common()),
            distinguishing=[Distinguishing.from_dict(d) for d in self.distinguishing],
            numeric=[NumericBound.from_dict(n) for n in self.numeric],
            deadlock=DeadlockCycle.from_dict(cycle) if cycle else None,
            templates=[TemplateCount(t, c) for t, c in templates.most_common(10)],
            terms=list(self.terms), runs=len(runs) if runs else None, examples=examples, coords=(round(self.coords[0], 4), round(self.coords[1], 4)),
            timeline=self.timeline(), members=self.members,
        )

    def timeline(self) -> Timeline | None:
        if self.axis is None:
            return None
        start, step, n = self.axis
        counts = [0] * n
        for u in self.units:
            for at, k in u.times.items():
                counts[min(max((at - start) // step, 0), n - 1)] += k
        return Timeline(datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), step, tuple(counts))


def chance(k: int, n: int, p: float) -> float:
    """P(at least k of n records show a value whose share in successful traffic is p)."""
    from scipy.stats import binom

    p = min(max(p, 0.5 / 10_000), 1.0)
    return float(binom.sf(k - 1, n, p))


def distinguishing(traffic: Traffic, baseline: Traffic, ignore: frozenset[tuple[str, Any]] = frozenset(),
                   min_precision: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The values and numeric ranges that set a population apart from its contrast (`baseline`).

    A small group shows some value at 50% by chance; each finding must also be unlikely
    under the contrast's own shares (binomial tail below MAX_CHANCE). With nothing to
    contrast with, nothing distinguishes; values in `ignore` never do. With `min_precision`,
    at least that share of the records showing a value (here or in the contrast) are here.
    """
    cats: list[dict[str, Any]] = []
    if baseline.n == 0:
        return cats, []
    for key, count in traffic.values.items():
        if key in ignore:
            continue
        n = traffic.population(key)
        share = count / n if n else 0.0
        base = baseline.share(key)
        if min_precision and count < min_precision * (count + baseline.values.get(key, 0)):
            continue
        if share >= MIN_SHARE and share >= MIN_LIFT * base and chance(count, n, base) < MAX_CHANCE:
            cats.append({"field": key[0], "value": key[1], "share": round(share, 4), "success_share": round(base, 4)})
    cats.sort(key=lambda d: (-(d["share"] - d["success_share"]), d["field"], str(d["value"])))
    nums = []
    for path, xs in traffic.numeric.items():
        ys = baseline.numeric.get(path)
        if len(xs) < max(3, traffic.n // 2) or not ys:
            continue
        lo, hi = _quantile(xs, 0.05), _quantile(xs, 0.95)
        if lo > _quantile(ys, 0.75):
            direction, threshold = ">", lo
            k = sum(1 for x in xs if x >= lo)
            base = sum(1 for y in ys if y >= lo) / len(ys)
        elif hi < _quantile(ys, 0.25):
            direction, threshold = "<", hi
            k = sum(1 for x in xs if x <= hi)
            base = sum(1 for y in ys if y <= hi) / len(ys)
        else:
            continue
        if chance(k, len(xs), base) >= MAX_CHANCE:
            continue
        nums.append({"field": path, "direction": direction, "threshold": threshold, "median": _quantile(xs, 0.5),
                     "success_median": _quantile(ys, 0.5), "success_share_beyond": round(base, 4)})
    return cats, nums


def _profile_features(traffic: Traffic, baseline: Traffic,
                      ignore: frozenset[tuple[str, Any]] = frozenset()) -> dict[str, float]:
    """Each value's weight: its share here times its log-lift over successful traffic (common values weigh 0)."""
    out: dict[str, float] = {}
    for key in traffic.values:
        if key[0] not in STRUCTURED and key[0] != "role" and key[0] != "count(agents)" or key in ignore:
            continue
        share = traffic.share(key)
        base = max(baseline.share(key), 1.0 / max(baseline.n, 1))
        lift = math.log(share / base) if share > base else 0.0
        if lift > 0:
            out[f"{key[0]}={key[1]}"] = share * lift
    for n in _profile_numeric(traffic, baseline):
        out[n] = 1.0
    return out


def _profile_numeric(traffic: Traffic, baseline: Traffic) -> list[str]:
    _, nums = distinguishing(traffic, baseline)
    return [f"{n['field']}{n['direction']}" for n in nums]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def fingerprint(status: str, cats: list[dict[str, Any]], nums: list[dict[str, Any]], cycle: dict[str, Any] | None,
                fallback: str) -> str:
    """Stable across logs of the same failure: built from what explains it, never from counts or ids."""
    parts = [f"status={status}"]
    if cycle:
        parts.append("cycle=" + ",".join(cycle["roles"]) + "@" + ",".join(cycle["resource_kinds"]))
        cats, nums = [], []
    strong = sorted(f"{c['field']}={c['value']}" for c in cats if c["share"] >= 0.8 and c["field"] in (*STRUCTURED, "role"))
    parts += strong
    parts += sorted(f"{n['field']}{n['direction']}" for n in nums)
    if len(parts) == 1:
        parts.append("text=" + fallback)
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]
    words = [str(c["value"]) for c in sorted(cats, key=lambda c: -c["share"])
             if c["share"] >= 0.8 and c["field"] in (*STRUCTURED, "role") and c["field"] != "kind"][:2]
    if cycle:
        words = [*cycle["roles"][:2], *cycle["resource_kinds"][:1]]
    words += [n["field"].rsplit(".", 1)[-1] for n in nums[:1]]
    slug = _slug("-".join([status, *words]))
    return f"{slug}-{digest}"


def title(status: str, cats: list[dict[str, Any]], nums: list[dict[str, Any]], cycle: dict[str, Any] | None,
          template: str) -> str:
    if cycle:
        return f"deadlock: {' ⇄ '.join(cycle['roles'])} over {', '.join(cycle['resource_kinds'])}"
    bits = [f"{c['field']}={c['value']}" for c in cats if c["field"] != "kind"][:3]
    bits += [f"{n['field']} {n['direction']} {human(n['threshold'])}" for n in nums[:1]]
    return f"{status}: {', '.join(bits)}" if bits else f"{status}: {template[:60]}"


@dataclass
class Contrast:
    """What a group's values are compared with, and the values that never explain a group."""

    mode: str  # "successes" or "other_failures" (ClusterReport.contrast)
    successes: Traffic
    failures: Traffic  # every failure being clustered
    uninformative: frozenset[tuple[str, Any]] = frozenset()

    @property
    def min_precision(self) -> float:
        # Against other failures a value must be this group's more than the others': a step
        # type most failures share (tool_result) describes every failure, not this one.
        return 0.5 if self.mode == "other_failures" else 0.0

    def of(self, traffic: Traffic) -> Traffic:
        return self.successes if self.mode == "successes" else self.failures.minus(traffic)


def uninformative_values(failures: Traffic, successes: Traffic,
                         run_values: dict[tuple[str, Any], str]) -> frozenset[tuple[str, Any]]:
    """Values that explain nothing: present in every event (count(agents)=1 throughout), or seen in one run only."""
    constant = {k for k in failures.values if failures.share(k) >= 1.0
                and (successes.n == 0 or successes.share(k) >= 1.0)}
    one_run = {k for k, run in run_values.items() if run != _MANY_RUNS}
    return frozenset(constant | one_run)


@dataclass
class ClusterResult:
    clusters: list[Group]
    failures: int
    successes: int
    embedder: str
    stats: IngestStats
    rare_events: int = 0
    unit_coords: list[tuple[float, float, int, int]] = field(default_factory=list)  # x, y, size, cluster index
    contrast: str = "successes"


def cluster_records(records: Iterable[Record], *, embedder: Any, min_size: int = 5, include_all: bool = False,
                    stats: IngestStats | None = None, on_phase: Callable[[str], None] | None = None) -> ClusterResult:
    """Cluster the failures of a record stream (all records with include_all)."""
    import numpy as np

    stats = stats if stats is not None else IngestStats()
    miner = TemplateMiner()
    baseline = Traffic()
    units: dict[str, Unit] = {}
    record_template: list[tuple[int, Record, str | None]] = []
    run_values: dict[tuple[str, Any], str] = {}  # each failure value's run, or _MANY_RUNS
    failures = successes = 0
    for record in records:
        if record.status == "ok":
            successes += 1
            baseline.add(record)
            if not include_all:
                continue
        elif record.status == "denied" and not include_all:
            continue
        failures += record.failed
        run = run_of(record)  # once per event: the run-field scan reads every field path
        _note_run(record, run, run_values)
        cycle = find_cycle(record.waits_for) if record.waits_for else None
        if cycle is not None:
            roles = sorted({(record.agent_roles or {}).get(a, "?") for a in cycle})
            kinds = sorted({str(record.fields.get("resource.kind", "?"))})
            key = f"deadlock|{','.join(roles)}|{','.join(kinds)}"
            unit = units.get(key)
            if unit is None:
                unit = units[key] = Unit(key=key, text=record.message,
                                         cycle={"roles": roles, "resource_kinds": kinds, "length": len(cycle)})
            tid = miner.add(record.message)
            unit.add(record, str(tid), run)
            continue
        record_template.append((miner.add(record.message), record, run))
    stats.failures, stats.successes = failures, successes
    if on_phase:
        on_phase("templates")
    for tid, record, run in record_template:
        rid = miner.resolve(tid)
        key = f"t{rid}"
        unit = units.get(key)
        if unit is None:
            unit = units[key] = Unit(key=key, text=miner.template_of(rid).text)
        unit.add(record, unit.text, run)
    _merge_cycles(units)
    for unit in units.values():
        if unit.cycle is not None:
            unit.templates = Counter({miner.template_of(miner.resolve(int(t))).text: c for t, c in unit.templates.items()})
            unit.text = unit.templates.most_common(1)[0][0]
    del record_template
    ordered = sorted(units.values(), key=lambda u: (-u.size, u.key))
    mode = "successes" if successes >= CONTRAST_MIN_SUCCESSES else "other_failures"
    if not ordered:
        return ClusterResult([], failures, successes, embedder.name, stats, contrast=mode)
    everything = Traffic()
    for u in ordered:
        everything.merge(u.traffic)
    contrast = Contrast(mode, baseline, everything, uninformative_values(everything, baseline, run_values))
    del run_values
    if on_phase:
        on_phase("embed")
    text = np.asarray(embedder.embed([u.text for u in ordered]), dtype=float)
    # too few ok events to weigh a value's lift with: the text alone places the templates
    profiles = [_profile_features(u.traffic, baseline if mode == "successes" else Traffic(), contrast.uninformative)
                for u in ordered]
    vocab = sorted({k for p in profiles for k in p})
    prof = np.zeros((len(ordered), max(len(vocab), 1)))
    index = {k: i for i, k in enumerate(vocab)}
    for row, p in enumerate(profiles):
        for k, v in p.items():
            prof[row, index[k]] = v
    norms = np.linalg.norm(prof, axis=1, keepdims=True)
    prof = np.divide(prof, norms, out=np.zeros_like(prof), where=norms > 0)
    vectors = np.hstack([math.sqrt(TEXT_WEIGHT) * text, math.sqrt(1 - TEXT_WEIGHT) * prof])
    if on_phase:
        on_phase("cluster")
    labels = _agglomerate(vectors, ordered)
    coords = _project(vectors)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    total = max(failures if not include_all else failures + successes, 1)
    position = {id(u): i for i, u in enumerate(ordered)}
    same_text = 1.0 - text_distance(embedder)

    def summarise(group: list[Unit]) -> Group:
        return _summarise(group, contrast, min_size, total, [coords[position[id(u)]] for u in group])

    def agree(a: Group, b: Group) -> bool:
        """Whether two groups' messages say the same thing (their text centroids are close)."""
        return float(_centroid(text, a.units, position) @ _centroid(text, b.units, position)) >= same_text

    clusters = [summarise([ordered[i] for i in members]) for members in groups.values()]
    # Two groups with the same status and the same explaining input conditions are one
    # systemic failure worded differently: a policy answers conditions, not phrasing. Unless
    # one value is all they share: then their text must agree as well.
    by_signature: dict[str, list[Group]] = {}
    for c in clusters:
        by_signature.setdefault(c.signature if c.systemic else f"rare:{id(c)}", []).append(c)
    clusters = []
    for same in by_signature.values():
        parts = _join(same, lambda a, b: a.decisive or agree(a, b))
        for part in parts:
            g = summarise([u for c in part for u in c.units]) if len(part) > 1 else part[0]
            if len(parts) > 1:  # the same conditions, different failures: their text tells them apart
                top = max(g.units, key=lambda u: u.size).text
                g.fingerprint += "-" + hashlib.sha256(top.encode()).hexdigest()[:4]
            clusters.append(g)
    clusters = _absorb_consistent(clusters, summarise, agree)
    clusters = _regroup_by_text(clusters, text, position, summarise, same_text, min_size)
    if mode == "other_failures":
        _demote_shared_explanations(clusters, min_size)
    _name_text_clusters([c for c in clusters if c.basis == "text"], ordered, text, position)
    rare = sum(c.size for c in clusters if c.basis == "rare")
    clusters.sort(key=lambda c: (not c.systemic, c.basis != "text", -c.size, c.fingerprint))
    _dedupe_fingerprints(clusters)
    axis = timeline_axis(ordered)
    for c in clusters:
        c.axis = axis
    order = {id(c): n for n, c in enumerate(clusters)}
    by_unit = {id(u): order[id(c)] for c in clusters for u in c.units}
    unit_coords = [(float(coords[i][0]), float(coords[i][1]), u.size, by_unit[id(u)]) for i, u in enumerate(ordered)]
    return ClusterResult(clusters, failures, successes, embedder.name, stats, rare_events=rare, unit_coords=unit_coords,
                         contrast=mode)


def text_distance(embedder: Any) -> float:
    """The cosine distance below which two texts say the same thing, for this embedder's space."""
    from policyctl.cluster.embed import TEXT_DISTANCE

    return float(getattr(embedder, "text_distance", None) or TEXT_DISTANCE.get(embedder.name, DISTANCE_THRESHOLD))


def _note_run(record: Record, run: str | None, run_values: dict[tuple[str, Any], str]) -> None:
    if run is None:
        return
    keys: list[tuple[str, Any]] = list(record.fields.items())
    keys += [("role", r) for r in record.roles]
    for key in keys:
        seen = run_values.get(key)
        if seen is None:
            if len(run_values) < MAX_TRACKED_VALUES:
                run_values[key] = run
        elif seen != run and seen != _MANY_RUNS:
            run_values[key] = _MANY_RUNS


def _centroid(text: Any, units: list[Unit], position: dict[int, int]) -> Any:
    import numpy as np

    rows = [position[id(u)] for u in units]
    v = (text[rows] * np.array([u.size for u in units], dtype=float)[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def _join(groups: list[Group], link: Callable[[Group, Group], bool]) -> list[list[Group]]:
    """The groups in connected parts: two are in one part when `link` holds for them."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            if root(i) != root(j) and link(groups[i], groups[j]):
                parent[root(j)] = root(i)
    parts: dict[int, list[Group]] = {}
    for i, g in enumerate(groups):
        parts.setdefault(root(i), []).append(g)
    return list(parts.values())


def _summarise(group: list[Unit], contrast: Contrast, min_size: int, total: int, coords: list[Any]) -> Group:
    traffic = Traffic()
    statuses: Counter[str] = Counter()
    for u in group:
        traffic.merge(u.traffic)
        statuses.update(u.statuses)
    status = statuses.most_common(1)[0][0]
    cats, nums = distinguishing(traffic, contrast.of(traffic), contrast.uninformative,
                                min_precision=contrast.min_precision)
    cycle = next((u.cycle for u in group if u.cycle), None)
    size = sum(u.size for u in group)
    explained = any(c["field"] != "kind" for c in cats) or bool(nums) or cycle is not None
    top = max(group, key=lambda u: u.size)
    weights = [u.size for u in group]
    cx = sum(c[0] * w for c, w in zip(coords, weights, strict=True)) / sum(weights)
    cy = sum(c[1] * w for c, w in zip(coords, weights, strict=True)) / sum(weights)
    fp = fingerprint(status, cats, nums, cycle, top.text)
    systemic = size >= min_size and explained
    basis = ("deadlock" if cycle is not None else "fields") if systemic else "rare"
    return Group(fingerprint=fp, title=title(status, cats, nums, cycle, top.text), units=group,
                 systemic=systemic, distinguishing=cats[:8], numeric=nums[:4], status=status,
                 share=size / total, coords=(float(cx), float(cy)), signature=fp.rsplit("-", 1)[-1], basis=basis,
                 traffic=traffic)


def _regroup_by_text(clusters: list[Group], text: Any, position: dict[int, int],
                     summarise: Callable[[list[Unit]], Group], same_text: float, min_size: int) -> list[Group]:
    """The failures no field explains, grouped again by their text alone; recurring groups become text clusters.

    A group some field explains after all (its parts were too small alone) is systemic; one
    too small to recur stays rare. Deadlock cycles keep their own groups.
    """
    kept = [c for c in clusters if c.systemic or any(u.cycle is not None for u in c.units)]
    loose = [u for c in clusters if c not in kept for u in c.units]
    if not loose:
        return clusters
    labels = _cut(text[[position[id(u)] for u in loose]], 1.0 - same_text)
    parts: dict[int, list[Unit]] = {}
    for u, label in zip(loose, labels, strict=True):
        parts.setdefault(int(label), []).append(u)
    out = list(kept)
    for part in parts.values():
        g = summarise(part)
        if not g.systemic and g.size >= min_size:
            g.basis = "text"
        out.append(g)
    return out


def _demote_shared_explanations(clusters: list[Group], min_size: int) -> None:
    """Against the other failures, a group whose every explaining value another recurring group of
    its status shows as widely is set apart by its text, not by those values: a text cluster.

    With no successful traffic, a value explains a group when most of the failures showing it are
    there. A step type that two failures share passes that test for whichever holds more of it
    (57 of 100 tool results: every file-not-found error) though the other (every wrong-argument
    error, also tool results) shows it in all its events too; a rule on it would answer both. A
    group of another status is another failure already (a web_search timeout is not a repeated
    web_search call), so only groups of the same status count.
    """
    candidates = [c for c in clusters if c.basis == "fields" and not c.numeric
                  and any(d["field"] != "kind" for d in c.distinguishing)]
    if not candidates:
        return
    recurring = [o for o in clusters if o.basis != "rare" and o.size >= min_size]
    for c in candidates:
        values = [(d["field"], d["value"]) for d in c.distinguishing if d["field"] != "kind"]
        if all(any(o is not c and o.status == c.status and o.traffic.share(v) >= MIN_SHARE for o in recurring)
               for v in values):
            c.basis, c.systemic, c.distinguishing = "text", False, []


def _cut(vectors: Any, threshold: float) -> Any:
    """Average-linkage groups of L2-normalised rows whose cosine distance stays below `threshold`."""
    import numpy as np

    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                   distance_threshold=threshold).fit_predict(vectors)


def _name_text_clusters(groups: list[Group], ordered: list[Unit], text: Any, position: dict[int, int]) -> None:
    """Title each text cluster by its most central message and the words that set its messages apart."""
    if not groups:
        return
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from policyctl.cluster.embed import readable
    from policyctl.redact import redact_text

    docs = [readable(u.text).lower() for u in ordered]
    weights = np.array([u.size for u in ordered], dtype=float)
    try:
        vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-z][a-z_]{2,}\b", sublinear_tf=True)
        matrix = vec.fit_transform(docs)
        vocab = vec.get_feature_names_out()
    except ValueError:  # no word of three letters in any message
        matrix, vocab = None, np.array([])
    overall = np.asarray(matrix.T @ weights).ravel() / weights.sum() if matrix is not None else None
    for g in groups:
        rows = [position[id(u)] for u in g.units]
        sizes = np.array([u.size for u in g.units], dtype=float)
        if matrix is not None and overall is not None:
            mean = np.asarray(matrix[rows].T @ sizes).ravel() / sizes.sum()
            lift = mean - overall
            best = [int(i) for i in np.argsort(-lift, kind="stable")[:TERMS] if lift[i] > 0 and mean[i] > 0]
            g.terms = [t for t in (str(vocab[i]) for i in best) if redact_text(t) == t]
        sims = text[rows] @ text[rows].T
        central = g.units[int(np.argmax(sims @ sizes))]
        g.title = f"{g.status}: {redact_text(central.text)[:100]}"
        parts = [f"status={g.status}", "text=" + ",".join(sorted(g.terms[:3]) or [readable(central.text)])]
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]
        g.fingerprint = f"{_slug('-'.join([g.status, 'text', *g.terms[:2]]))}-{digest}"


def _consistent(small: Group, big: Group, agree: Callable[[Group, Group], bool]) -> int:
    """How many of big's explaining conditions small's events also meet (0 when any is not met).

    A few events of a failure worded another way are too few to be significant alone; if they
    meet every condition that explains a bigger cluster with the same status, they are that failure
    (when one value is all big's explanation, only if their text agrees as well).
    """
    if small.status != big.status or not big.systemic or big.size <= small.size:
        return 0
    if any(u.cycle is not None for u in small.units) or any(u.cycle is not None for u in big.units):
        return 0
    traffic = small.traffic
    strong = [c for c in big.distinguishing if c["share"] >= 0.8 and c["field"] != "kind"]
    met = 0
    for c in strong:
        if traffic.share((c["field"], c["value"])) < 0.8:
            return 0
        met += 1
    for n in big.numeric:
        xs = traffic.numeric.get(n["field"], [])
        beyond = [x for x in xs if (x >= n["threshold"] if n["direction"] == ">" else x <= n["threshold"])]
        if not xs or len(beyond) < 0.8 * len(xs):
            return 0
        met += 1
    if met and not big.decisive and not agree(small, big):
        return 0
    return met


def _absorb_consistent(clusters: list[Group], summarise: Callable[[list[Unit]], Group],
                       agree: Callable[[Group, Group], bool]) -> list[Group]:
    clusters = sorted(clusters, key=lambda c: -c.size)
    absorbed: dict[int, list[Group]] = {}
    kept: list[Group] = []
    for c in clusters:
        best, best_met = None, 0
        for i, big in enumerate(kept):
            met = _consistent(c, big, agree)
            if met > best_met:
                best, best_met = i, met
        if best is None:
            kept.append(c)
        else:
            absorbed.setdefault(best, []).append(c)
    return [summarise([u for c in [big, *absorbed[i]] for u in c.units]) if i in absorbed else big
            for i, big in enumerate(kept)]


def _merge_cycles(units: dict[str, Unit]) -> None:
    """Deadlock cycles over the same resource kind whose roles contain another's are one failure:
    a third agent caught in the cycle does not make a new fault. The cluster keeps the core roles."""
    cycles: list[tuple[Unit, dict[str, Any]]] = sorted(
        ((u, u.cycle) for u in units.values() if u.cycle is not None),
        key=lambda uc: (len(uc[1]["roles"]), -uc[0].size, uc[0].key))
    for i, (small, core) in enumerate(cycles):
        if small.key not in units:
            continue
        for big, other in cycles[i + 1:]:
            if big.key not in units or other["resource_kinds"] != core["resource_kinds"]:
                continue
            if set(core["roles"]) <= set(other["roles"]):
                small.traffic.merge(big.traffic)
                small.statuses.update(big.statuses)
                small.templates.update(big.templates)
                small.members.extend(big.members)
                small.agents.update(big.agents)
                big.coarsen(small.grain)
                small.coarsen(big.grain)
                small.times.update(big.times)
                firsts = [x for x in (small.first, big.first) if x]
                lasts = [x for x in (small.last, big.last) if x]
                small.first = min(firsts) if firsts else None
                small.last = max(lasts) if lasts else None
                core["variants"] = sorted({*core.get("variants", [",".join(core["roles"])]), ",".join(other["roles"])})
                del units[big.key]


def _dedupe_fingerprints(clusters: list[Group]) -> None:
    seen: dict[str, int] = {}
    for c in clusters:
        if c.fingerprint in seen:
            seen[c.fingerprint] += 1
            c.fingerprint = f"{c.fingerprint}-{seen[c.fingerprint]}"
        else:
            seen[c.fingerprint] = 1


def _agglomerate(vectors: Any, units: list[Unit]) -> Any:
    import numpy as np

    if len(units) == 1:
        return np.zeros(1, dtype=int)
    # deadlock cycles are found structurally: they never merge with text clusters or each other
    out = np.array(_cut(vectors, DISTANCE_THRESHOLD))
    next_label = int(out.max()) + 1
    for i, u in enumerate(units):
        if u.cycle is not None:
            out[i] = next_label
            next_label += 1
    return out


def _project(vectors: Any) -> Any:
    import numpy as np

    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(vectors), 1))])
    span = np.abs(coords).max(axis=0)
    span[span == 0] = 1
    return coords / span
