"""From records to fingerprinted failure clusters: templates, deadlock cycles, embeddings, agglomeration."""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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

    @property
    def size(self) -> int:
        return len(self.members)

    def add(self, record: Record, template: str) -> None:
        self.traffic.add(record)
        self.statuses[record.status] += 1
        self.templates[template] += 1
        self.members.append(record.id)
        for agent in record.agents:
            if agent in self.agents or len(self.agents) < 500:
                self.agents[agent] += 1
        if record.ts:
            if self.first is None or record.ts < self.first:
                self.first = record.ts
            if self.last is None or record.ts > self.last:
                self.last = record.ts
        if len(self.examples) < EXAMPLES and all(e["message"] != record.message for e in self.examples):
            self.examples.append({"id": record.id, "message": record.message[:500], "where": record.where})


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

    @property
    def size(self) -> int:
        return sum(u.size for u in self.units)

    @property
    def members(self) -> list[str]:
        return [m for u in self.units for m in u.members]

    def to_record(self) -> Cluster:
        traffic = Traffic()
        statuses: Counter[str] = Counter()
        templates: Counter[str] = Counter()
        agents: Counter[str] = Counter()
        for u in self.units:
            traffic.merge(u.traffic)
            statuses.update(u.statuses)
            templates.update(u.templates)
            agents.update(u.agents)
        roles = Counter({k[1]: v for k, v in traffic.values.items() if k[0] == "role"})
        firsts = [u.first for u in self.units if u.first]
        lasts = [u.last for u in self.units if u.last]
        cycle = next((u.cycle for u in self.units if u.cycle), None)
        examples = [e for u in sorted(self.units, key=lambda u: -u.size) for e in u.examples][:EXAMPLES]
        return Cluster(
            fingerprint=self.fingerprint, title=self.title, systemic=self.systemic, status=self.status,
            statuses=dict(statuses.most_common()), size=self.size, share=round(self.share, 5),
            first_seen=min(firsts) if firsts else None, last_seen=max(lasts) if lasts else None,
            agents=AgentSummary(len(agents), tuple(a for a, _ in agents.most_common(10))),
            roles=dict(roles.most_common()),
            distinguishing=[Distinguishing.from_dict(d) for d in self.distinguishing],
            numeric=[NumericBound.from_dict(n) for n in self.numeric],
            deadlock=DeadlockCycle.from_dict(cycle) if cycle else None,
            templates=[TemplateCount(t, c) for t, c in templates.most_common(10)],
            examples=examples, coords=(round(self.coords[0], 4), round(self.coords[1], 4)),
            members=self.members,
        )


def chance(k: int, n: int, p: float) -> float:
    """P(at least k of n records show a value whose share in successful traffic is p)."""
    from scipy.stats import binom

    p = min(max(p, 0.5 / 10_000), 1.0)
    return float(binom.sf(k - 1, n, p))


def distinguishing(traffic: Traffic, baseline: Traffic) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The values and numeric ranges that set a population apart from successful traffic.

    A small group shows some value at 50% by chance; each finding must also be unlikely
    under the successful traffic's own shares (binomial tail below MAX_CHANCE).
    """
    cats = []
    for key, count in traffic.values.items():
        n = traffic.population(key)
        share = count / n if n else 0.0
        base = baseline.share(key)
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


def _profile_features(traffic: Traffic, baseline: Traffic) -> dict[str, float]:
    """Each value's weight: its share here times its log-lift over successful traffic (common values weigh 0)."""
    out: dict[str, float] = {}
    for key in traffic.values:
        if key[0] not in STRUCTURED and key[0] != "role" and key[0] != "count(agents)":
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
class ClusterResult:
    clusters: list[Group]
    failures: int
    successes: int
    embedder: str
    stats: IngestStats
    rare_events: int = 0
    unit_coords: list[tuple[float, float, int, int]] = field(default_factory=list)  # x, y, size, cluster index


def cluster_records(records: Iterable[Record], *, embedder: Any, min_size: int = 5, include_all: bool = False,
                    stats: IngestStats | None = None, on_phase: Callable[[str], None] | None = None) -> ClusterResult:
    """Cluster the failures of a record stream (all records with include_all)."""
    import numpy as np

    stats = stats if stats is not None else IngestStats()
    miner = TemplateMiner()
    baseline = Traffic()
    units: dict[str, Unit] = {}
    record_template: list[tuple[int, Record]] = []
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
            unit.add(record, str(tid))
            continue
        record_template.append((miner.add(record.message), record))
    stats.failures, stats.successes = failures, successes
    if on_phase:
        on_phase("templates")
    for tid, record in record_template:
        rid = miner.resolve(tid)
        key = f"t{rid}"
        unit = units.get(key)
        if unit is None:
            unit = units[key] = Unit(key=key, text=miner.template_of(rid).text)
        unit.add(record, unit.text)
    _merge_cycles(units)
    for unit in units.values():
        if unit.cycle is not None:
            unit.templates = Counter({miner.template_of(miner.resolve(int(t))).text: c for t, c in unit.templates.items()})
            unit.text = unit.templates.most_common(1)[0][0]
    del record_template
    ordered = sorted(units.values(), key=lambda u: (-u.size, u.key))
    if not ordered:
        return ClusterResult([], failures, successes, embedder.name, stats)
    if on_phase:
        on_phase("embed")
    text = embedder.embed([u.text for u in ordered])
    profiles = [_profile_features(u.traffic, baseline) for u in ordered]
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

    def summarise(group: list[Unit]) -> Group:
        return _summarise(group, baseline, min_size, total,
                          [coords[position[id(u)]] for u in group])

    clusters = [summarise([ordered[i] for i in members]) for members in groups.values()]
    # Two groups with the same status and the same explaining input conditions are one
    # systemic failure worded differently: a policy answers conditions, not phrasing.
    by_signature: dict[str, list[Group]] = {}
    for c in clusters:
        by_signature.setdefault(c.signature if c.systemic else f"rare:{id(c)}", []).append(c)
    clusters = [summarise([u for c in same for u in c.units]) if len(same) > 1 else same[0]
                for same in by_signature.values()]
    clusters = _absorb_consistent(clusters, summarise)
    rare = sum(c.size for c in clusters if not c.systemic)
    clusters.sort(key=lambda c: (not c.systemic, -c.size, c.fingerprint))
    _dedupe_fingerprints(clusters)
    order = {id(c): n for n, c in enumerate(clusters)}
    by_unit = {id(u): order[id(c)] for c in clusters for u in c.units}
    unit_coords = [(float(coords[i][0]), float(coords[i][1]), u.size, by_unit[id(u)]) for i, u in enumerate(ordered)]
    return ClusterResult(clusters, failures, successes, embedder.name, stats, rare_events=rare, unit_coords=unit_coords)


def _summarise(group: list[Unit], baseline: Traffic, min_size: int, total: int, coords: list[Any]) -> Group:
    traffic = Traffic()
    statuses: Counter[str] = Counter()
    for u in group:
        traffic.merge(u.traffic)
        statuses.update(u.statuses)
    status = statuses.most_common(1)[0][0]
    cats, nums = distinguishing(traffic, baseline)
    cycle = next((u.cycle for u in group if u.cycle), None)
    size = sum(u.size for u in group)
    explained = any(c["field"] != "kind" for c in cats) or bool(nums) or cycle is not None
    top = max(group, key=lambda u: u.size)
    weights = [u.size for u in group]
    cx = sum(c[0] * w for c, w in zip(coords, weights, strict=True)) / sum(weights)
    cy = sum(c[1] * w for c, w in zip(coords, weights, strict=True)) / sum(weights)
    fp = fingerprint(status, cats, nums, cycle, top.text)
    return Group(fingerprint=fp, title=title(status, cats, nums, cycle, top.text), units=group,
                   systemic=size >= min_size and explained, distinguishing=cats[:8], numeric=nums[:4], status=status,
                   share=size / total, coords=(float(cx), float(cy)), signature=fp.rsplit("-", 1)[-1])


def _consistent(small: Group, big: Group) -> int:
    """How many of big's explaining conditions small's events also meet (0 when any is not met).

    A few events of a failure worded another way are too few to be significant alone; if they
    meet every condition that explains a bigger cluster with the same status, they are that failure.
    """
    if small.status != big.status or not big.systemic or big.size <= small.size:
        return 0
    if any(u.cycle is not None for u in small.units) or any(u.cycle is not None for u in big.units):
        return 0
    traffic = Traffic()
    for u in small.units:
        traffic.merge(u.traffic)
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
    return met


def _absorb_consistent(clusters: list[Group], summarise: Callable[[list[Unit]], Group]) -> list[Group]:
    clusters = sorted(clusters, key=lambda c: -c.size)
    absorbed: dict[int, list[Group]] = {}
    kept: list[Group] = []
    for c in clusters:
        best, best_met = None, 0
        for i, big in enumerate(kept):
            met = _consistent(c, big)
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

    n = len(units)
    if n == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    # deadlock cycles are found structurally: they never merge with text clusters or each other
    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=DISTANCE_THRESHOLD).fit_predict(vectors)
    out = np.array(labels)
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
