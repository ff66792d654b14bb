"""The `induce` drafter: learn the input conditions of a failure cluster and choose a remedy from the data.

Offline and deterministic. A shallow decision tree (scikit-learn) separates the cluster's
training failures from successful traffic over the events' flattened input fields; each
leaf that predicts the failure with high precision becomes one rule body, pruned to the
conditions that matter. The remedy comes from the logs: route to the value of a routable
field that succeeds for the same traffic, arbitrate conflicts by priority then id, deny
only when nothing in the logs works.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

from policyctl.cluster.ingest import flatten
from policyctl.draft.bounds import nice_threshold
from policyctl.draft.data import Evidence
from policyctl.draft.metadata import region_metadata
from policyctl.model.config import Vocabulary
from policyctl.model.draft import Condition, Draft, Remedy
from policyctl.model.region import region_of_cluster
from policyctl.model.values import value_at

MAX_DEPTH = 4
# A fault that fires with probability 0.75 leaves 25% lucky successes inside its own region:
# a body is a failure region when most of its attempts fail (with a margin over one half).
MIN_PRECISION = 0.6
MIN_ROUTE_SUPPORT = 10
LEADING = ("kind", "action.type", "resource.kind")


def _features(input: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path, value in flatten(input).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            out[f"{path}={json.dumps(value)}"] = 1.0
        else:
            out[path] = float(value)
            if float(value).is_integer() and abs(value) < 100_000:
                out[f"{path}={json.dumps(value)}"] = 1.0  # small integers (ports) can be categories too
    for agent in input.get("agents") or []:
        if isinstance(agent, dict) and isinstance(agent.get("role"), str):
            out[f"role={json.dumps(agent['role'])}"] = 1.0
    return out


def _split_condition(name: str, threshold: float, right: bool, below: list[float], above: list[float]) -> Condition:
    if "=" in name:
        path, _, raw = name.partition("=")
        value = json.loads(raw)
        if path == "role":
            return Condition("role", "has_role" if right else "lacks_role", value)
        return Condition(path, "==" if right else "!=", value)
    t = nice_threshold(threshold, below, above, failures_above=right)
    return Condition(name, ">" if right else "<=", int(t) if float(t).is_integer() else t)


class Scorer:
    """Counts of failures (tp) and ok events (fp) a body matches, from one cached boolean mask per condition."""

    def __init__(self, pos: list[dict[str, Any]], neg: list[dict[str, Any]]) -> None:
        self.pos, self.neg = pos, neg
        self._masks: dict[Condition, tuple[Any, Any]] = {}

    def mask(self, c: Condition) -> tuple[Any, Any]:
        import numpy as np

        if c not in self._masks:
            self._masks[c] = (np.fromiter((c.holds(x) for x in self.pos), bool, len(self.pos)),
                              np.fromiter((c.holds(x) for x in self.neg), bool, len(self.neg)))
        return self._masks[c]

    def masks(self, body: list[Condition]) -> tuple[Any, Any]:
        import numpy as np

        p = np.ones(len(self.pos), bool)
        n = np.ones(len(self.neg), bool)
        for c in body:
            mp, mn = self.mask(c)
            p &= mp
            n &= mn
        return p, n

    def score(self, body: list[Condition]) -> tuple[int, int]:
        p, n = self.masks(body)
        return int(p.sum()), int(n.sum())

    def precision(self, body: list[Condition]) -> float:
        tp, fp = self.score(body)
        return tp / (tp + fp) if tp + fp else 0.0


def learn_bodies(pos: list[dict[str, Any]], neg: list[dict[str, Any]]) -> list[list[Condition]]:
    """Rule bodies (conjunctions) that together cover the failures and hold few ok events."""
    import numpy as np
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.tree import DecisionTreeClassifier

    rows = [_features(x) for x in pos + neg]
    vec = DictVectorizer(sparse=False)
    X = vec.fit_transform(rows)
    names = list(vec.get_feature_names_out())
    for j, name in enumerate(names):  # a missing number is unknown, not zero
        if "=" not in name:
            X[[i for i, r in enumerate(rows) if name not in r], j] = np.nan
    y = np.array([1] * len(pos) + [0] * len(neg))
    clf = DecisionTreeClassifier(max_depth=MAX_DEPTH, class_weight="balanced", random_state=0,
                                 min_samples_leaf=max(1, len(pos) // 100))
    clf.fit(X, y)
    tree = clf.tree_
    leaves: list[list[Condition]] = []

    def walk(node: int, path: list[tuple[int, float, bool]]) -> None:
        if tree.children_left[node] == -1:
            if clf.classes_[int(np.argmax(tree.value[node][0]))] == 1:
                body = []
                for feat, thr, right in path:
                    col = X[:, feat]
                    below = [float(v) for v in col if not math.isnan(v) and v <= thr]
                    above = [float(v) for v in col if not math.isnan(v) and v > thr]
                    body.append(_split_condition(names[feat], thr, right, below, above))
                leaves.append(body)
            return
        feat, thr = int(tree.feature[node]), float(tree.threshold[node])
        walk(int(tree.children_left[node]), [*path, (feat, thr, False)])
        walk(int(tree.children_right[node]), [*path, (feat, thr, True)])

    walk(0, [])
    scorer = Scorer(pos, neg)
    leading = _constants(pos)
    bodies: list[list[Condition]] = []
    for leaf in leaves:
        body = _prune([*leading, *[c for c in leaf if c not in leading]], scorer, keep=len(leading))
        body = _relax(body, scorer)
        tp, _ = scorer.score(body)
        if tp and scorer.precision(body) >= MIN_PRECISION and body not in bodies:
            bodies.append(body)
    return _cover(bodies, scorer)


def _constants(pos: list[dict[str, Any]]) -> list[Condition]:
    """The index fields every failure shares: stated first, they keep the rule cheap to evaluate."""
    out = []
    for path in LEADING:
        values = {json.dumps(value_at(x, path), default=str) for x in pos}
        if len(values) == 1:
            value = value_at(pos[0], path)
            if isinstance(value, str):
                out.append(Condition(path, "==", value))
    return out


def _prune(body: list[Condition], scorer: Scorer, keep: int) -> list[Condition]:
    """Drop conditions (negations and upper bounds first) while no failure is lost and the body
    stays a failure region; repeat until nothing more can go."""
    body = _dedupe(body)
    changed = True
    while changed:
        changed = False
        tp, _ = scorer.score(body)
        order = sorted(range(keep, len(body)), key=lambda i: (body[i].op not in ("!=", "lacks_role", "<="), -i))
        for i in order:
            trial = body[:i] + body[i + 1:]
            t2, _ = scorer.score(trial)
            if t2 >= tp and scorer.precision(trial) >= MIN_PRECISION:
                body = trial
                changed = True
                break
    return body


def _relax(body: list[Condition], scorer: Scorer) -> list[Condition]:
    """Move each numeric bound as far as the failures reach while the body stays a failure region."""
    out = list(body)
    for i, c in enumerate(out):
        if c.op not in (">", "<="):
            continue
        others = out[:i] + out[i + 1:]
        p, n = scorer.masks(others)
        xs = sorted({float(v) for v, keep in zip((_num(x, c.field) for x in scorer.pos), p, strict=True) if keep and v is not None})
        best = c
        candidates = xs if c.op == ">" else list(reversed(xs))
        for x in candidates:
            negs = [float(v) for v, keep in zip((_num(y, c.field) for y in scorer.neg), n, strict=True) if keep and v is not None]
            below = [v for v in negs if (v < x if c.op == ">" else v > x)]
            edge = max(below) if c.op == ">" and below else (min(below) if below else None)
            if c.op == ">":
                t = nice_threshold((edge if edge is not None else x - 1), [edge] if edge is not None else [], [x],
                                   failures_above=True)
            else:
                t = nice_threshold(x, [x], [edge] if edge is not None else [], failures_above=False)
            trial = Condition(c.field, c.op, int(t) if float(t).is_integer() else t)
            if scorer.precision([*others, trial]) >= MIN_PRECISION:
                best = trial
                break
        out[i] = best
    return out


def _num(x: dict[str, Any], field: str) -> float | None:
    v = len(x.get("agents") or []) if field == "count(agents)" else value_at(x, field)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _dedupe(body: list[Condition]) -> list[Condition]:
    """Keep the tightest numeric bound per field and direction, and one copy of each test."""
    out: list[Condition] = []
    for c in body:
        if c in out:
            continue
        if c.op in (">", "<="):
            same = [d for d in out if d.field == c.field and d.op == c.op]
            if same:
                d = same[0]
                tighter = max(c.value, d.value) if c.op == ">" else min(c.value, d.value)
                out[out.index(d)] = Condition(c.field, c.op, tighter)
                continue
        if c.op == "!=" and any(d.field == c.field and d.op == "==" for d in out):
            continue
        out.append(c)
    return out


def _cover(bodies: list[list[Condition]], scorer: Scorer) -> list[list[Condition]]:
    import numpy as np

    chosen: list[list[Condition]] = []
    covered = np.zeros(len(scorer.pos), bool)
    while True:
        best, gain = None, 0
        for body in bodies:
            hits = int((scorer.masks(body)[0] & ~covered).sum())
            if hits > gain:
                best, gain = body, hits
        if best is None or gain < max(1, len(scorer.pos) // 100):
            return chosen
        chosen.append(best)
        covered |= scorer.masks(best)[0]


# --------------------------------------------------------------------------- remedy


def choose_remedy(ev: Evidence, bodies: list[list[Condition]], vocabulary: Vocabulary) -> Remedy:
    """Route over a declared alternative that works for the same traffic; arbitrate a conflict; else deny.

    Only fields the repository's vocabulary declares as alternatives (policyctl.toml) are
    routed over, and only to declared values: every other field is the agent's intent.
    """
    cycle = ev.cluster.deadlock
    if cycle or ev.kind == "conflict":
        roles = " and ".join(cycle.roles if cycle else ()) or "the contending agents"
        return Remedy("arbitrate", {}, f"{roles} contend for one resource; settling the order up front "
                      "(highest priority first, ties by agent id) removes the contention", {"kind": "conflict"})
    main = max(bodies, key=lambda b: sum(1 for x in ev.train if all(c.holds(x["input"]) for c in b)))
    types = Counter(value_at(e["input"], "action.type") for e in ev.train)
    action_type = types.most_common(1)[0][0] if types else None
    declared = vocabulary.for_type(action_type)
    if not declared:
        what = f"`{action_type}`" if isinstance(action_type, str) else "this traffic"
        return Remedy("deny", {}, f"policyctl.toml declares no alternatives for {what}, so the rule may not route "
                      "(every field is the agent's intent); the attempt is refused before it fails",
                      {"alternatives": [], "vocabulary": "none declared"})
    options = []
    for cond in main:
        if cond.op != "==" or cond.field not in declared:
            continue
        others = [c for c in main if c is not cond]
        alternatives: Counter[Any] = Counter()
        for event in ev.ok:
            inp = event["input"]
            value = value_at(inp, cond.field)
            if (value != cond.value and vocabulary.allows(action_type, cond.field, value)
                    and value_at(inp, "action.type") == action_type and all(c.holds(inp) for c in others)):
                alternatives[value] += 1
        for value, support in alternatives.items():
            options.append((support, cond, value))
    options.sort(key=lambda o: (-o[0], o[1].field, str(o[2])))
    if options and options[0][0] >= MIN_ROUTE_SUPPORT:
        support, cond, value = options[0]
        params: dict[str, Any] = {}
        node = params
        parts = cond.field.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        runners_up = [f"{o[2]} ({o[0]})" for o in options[1:4] if o[1] is cond]
        return Remedy("route", params, f"the same traffic over {cond.field.rsplit('.', 1)[-1]} {value} succeeded "
                      f"{support} times in the logs without a failure", {"field": cond.field, "from": cond.value,
                                                                         "to": value, "support": support,
                                                                         "other_alternatives": runners_up})
    fields = ", ".join(sorted(declared))
    return Remedy("deny", {}, f"no declared alternative ({fields}) succeeds for this traffic in the logs, so the "
                  "attempt is refused before it fails", {"alternatives": [], "declared": sorted(declared)})


# --------------------------------------------------------------------------- naming and rendering


def module_name(fingerprint: str, taken: set[str]) -> str:
    slug = re.sub(r"-[0-9a-f]{8}(-\d+)?$", "", fingerprint)
    name = re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_")[:48] or "drafted"
    if name in taken:
        name = f"{name}_{fingerprint.rsplit('-', 1)[-1][:6]}"
    return name


STATUS_VERB = {"crash": "crashes agents", "timeout": "times out", "deadlock": "deadlocks", "error": "fails"}


def render_module(d: Draft, ev: Evidence) -> str:
    c = ev.cluster
    desc = [d.description[i:i + 88] for i in range(0, len(d.description), 88)]
    lines = ["# METADATA", f"# title: {d.title}", "# description: >-"]
    lines += [f"#   {chunk.strip()}" for chunk in _wrap(d.description, 88)]
    lines += ["# custom:", f"#   cluster: {d.fingerprint}", "#   mode: enforce", f"#   drafter: {d.drafter}"]
    lines += region_metadata(d.region)
    lines += [f"package agentgov.rules.{d.name}", "", "import rego.v1", ""]
    del desc
    if d.remedy.action == "arbitrate":
        lines += [
            "# An agent's place in line is the number of agents that go before it: higher priority first,",
            "# ties by id. Ranked with < and >: rego-cpp's sort, min and max order numbers as strings.",
            "before(b, a) if object.get(b, \"priority\", 0) > object.get(a, \"priority\", 0)", "",
            "before(b, a) if {",
            "\tobject.get(b, \"priority\", 0) == object.get(a, \"priority\", 0)",
            "\tb.id < a.id",
            "}", "",
            "place[a.id] := count([b | some b in input.agents; before(b, a)]) if some a in input.agents", "",
            "order := [a.id | some i in numbers.range(0, count(input.agents) - 1); some a in input.agents; place[a.id] == i]",
            "",
        ]
        params = '{"winner": order[0], "order": order}'
    else:
        params = json.dumps(d.remedy.params, sort_keys=True)
    for body in d.bodies:
        lines += ["decisions contains {", f"\t\"id\": {json.dumps(d.rule_id)},", f"\t\"action\": {json.dumps(d.remedy.action)},",
                  f"\t\"params\": {params},", f"\t\"message\": {json.dumps(d.message)},", "} if {"]
        used: set[str] = set()
        for cond in body:
            var = f"agent_{re.sub(r'[^a-z0-9]+', '_', str(cond.value).lower())}" if cond.field == "role" else ""
            while var and var in used:
                var += "_"
            used.add(var)
            lines += [f"\t{line}" for line in cond.rego(var)]
        if d.remedy.action == "arbitrate":
            lines.append("\tcount(input.agents) >= 2")
        lines += ["}", ""]
    if any(c.op == "lacks_role" for b in d.bodies for c in b):
        lines += ["any_role(role) if {", "\tsome agent in input.agents", "\tagent.role == role", "}", ""]
    del c
    return "\n".join(lines).rstrip() + "\n"


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        out.append(line)
    return out


def arbitrate_order(input: dict[str, Any]) -> list[str]:
    agents = [a for a in input.get("agents") or [] if isinstance(a, dict)]
    return [a["id"] for a in sorted(agents, key=lambda a: (-(a.get("priority") or 0), a["id"]))]


def draft_induce(ev: Evidence, *, taken: set[str], vocabulary: Vocabulary | None = None) -> Draft | str:
    """The learned draft for one cluster, or the reason there is none."""
    learned = learn(ev)
    if isinstance(learned, str):
        return learned
    return make_draft(ev, learned, taken=taken, vocabulary=vocabulary or Vocabulary())


def learn(ev: Evidence) -> list[list[Condition]] | str:
    """The rule bodies the tree learns for a cluster, or the reason there are none."""
    pos, neg = _examples(ev)
    if len(pos) < 3:
        return f"only {len(pos)} training failures; too few to learn from"
    if not neg:
        return "no successful traffic in the logs to tell the failures apart from"
    bodies = learn_bodies(pos, neg)
    if not bodies:
        return "no condition on the input separates these failures from successful traffic"
    return bodies


def _examples(ev: Evidence) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pos = [e["input"] for e in ev.train]
    kind = ev.kind
    neg = [e["input"] for e in ev.ok if e["input"].get("kind") == kind] or [e["input"] for e in ev.ok]
    return pos, neg


def make_draft(ev: Evidence, bodies: list[list[Condition]], *, taken: set[str], vocabulary: Vocabulary,
               label: str = "learned") -> Draft:
    """A rendered draft (not yet verified) for these rule bodies."""
    remedy = choose_remedy(ev, bodies, vocabulary)
    c = ev.cluster
    fingerprint = c.fingerprint
    name = module_name(fingerprint, taken)
    words = " or ".join(" and ".join(x.words() for x in b) for b in bodies)
    status = c.status
    target = ""
    if remedy.action == "route":
        target = f" to {remedy.evidence['field'].rsplit('.', 1)[-1]} {remedy.evidence['to']}"
    title = f"{remedy.action.capitalize()}{target} when {words}"[:120]
    span = f"{(c.first_seen or '?')[:10]} to {(c.last_seen or '?')[:10]}"
    message = f"{status}: {words} {STATUS_VERB.get(status, 'fails')} ({c.size} failures, {span}); {remedy.action}{target}"
    description = (f"Drafted from failure cluster {fingerprint}: {c.size} {status} events "
                   f"from {span}, when {words}. Remedy: {remedy.action}{target}, because {remedy.why}.")
    d = Draft(name=name, fingerprint=fingerprint, title=title, rule_id=f"{remedy.action}_{name}", bodies=bodies,
              remedy=remedy, message=message[:240], description=description, module_path=f"policies/rules/{name}.rego",
              module_text="", fixtures_path=f"shadow_fixtures/{name}.jsonl", fixtures=[], drafter="induce", cluster=c,
              region=region_of_cluster(c))
    d.module_text = render_module(d, ev)
    d.attempts = [{"candidate": label}]
    return d


# --------------------------------------------------------------------------- searching past a failed draft

MAX_CANDIDATES = 8


def alternatives(ev: Evidence, learned: list[list[Condition]]) -> list[tuple[str, list[list[Condition]]]]:
    """Narrower and wider rule bodies to try when the learned draft fails verification, best first.

    Narrower: each learned body alone; a body joined with the cluster's contending roles (a
    deadlock between deploy and backup is not "any conflict with a deploy agent"); a body with
    the cluster's strongest distinguishing field added; numeric bounds moved in to the
    failures' own edge. Wider: a body with one condition dropped, while it stays a failure
    region. Every candidate is still a failure region (precision >= MIN_PRECISION) on the
    training data; the verifier decides the rest.
    """
    pos, neg = _examples(ev)
    scorer = Scorer(pos, neg)
    seen: list[list[list[Condition]]] = [learned]
    out: list[tuple[str, list[list[Condition]]]] = []

    def offer(label: str, bodies: list[list[Condition]]) -> None:
        bodies = [_dedupe(b) for b in bodies if b]
        if not bodies or bodies in seen:
            return
        if any(scorer.score(b)[0] == 0 or scorer.precision(b) < MIN_PRECISION for b in bodies):
            return
        seen.append(bodies)
        out.append((label, bodies))

    c = ev.cluster
    roles = sorted(c.deadlock.roles) if c.deadlock else []
    if not roles:
        roles = [x.value for x in c.distinguishing if x.field == "role" and x.share >= 0.8]
    role_conds = [Condition("role", "has_role", r) for r in roles]
    strong = [Condition(x.field, "==", x.value) for x in c.distinguishing
              if x.share >= 0.8 and x.field not in ("role", "count(agents)") and isinstance(x.value, str | int | float)]
    for body in learned:
        if role_conds and not all(rc in body for rc in role_conds):
            offer(f"narrower: {' and '.join(rc.words() for rc in role_conds)}",
                  [[*body, *(rc for rc in role_conds if rc not in body)] for body in learned])
        for sc in strong:
            if not any(x.field == sc.field for x in body):
                offer(f"narrower: also {sc.words()}", [[*b, sc] if b is body else b for b in learned])
    if len(learned) > 1:
        for body in learned:
            offer(f"narrower: only the body {' and '.join(x.words() for x in body)}", [body])
    for body in learned:
        tight = _tighten(body, scorer)
        if tight != body:
            offer("narrower: numeric bounds at the failures' edge", [tight if b is body else b for b in learned])
    for body in learned:
        for j, cond in enumerate(body):
            if cond.field in LEADING and cond.op == "==":
                continue  # the kind and type of traffic stay: they keep the rule indexed
            wider = body[:j] + body[j + 1:]
            offer(f"wider: without {cond.words()}", [wider if b is body else b for b in learned])
    return out[:MAX_CANDIDATES]


def _tighten(body: list[Condition], scorer: Scorer) -> list[Condition]:
    """Each numeric bound moved to the nearest training failure (still round-to-cover within the failures)."""
    out = []
    p, _ = scorer.masks(body)
    for c in body:
        if c.op not in (">", "<="):
            out.append(c)
            continue
        xs = [v for v, keep in zip((_num(x, c.field) for x in scorer.pos), p, strict=True) if keep and v is not None]
        if not xs:
            out.append(c)
            continue
        edge = min(xs) if c.op == ">" else max(xs)
        # just past the edge, on the failures' side of it
        if c.op == "<=":
            t = edge
        else:
            t = edge - 1 if float(edge).is_integer() else edge - max(abs(edge) * 1e-9, 1e-12)
        value = int(t) if float(t).is_integer() else t
        out.append(Condition(c.field, c.op, value if (c.op == ">" and value > c.value) or (c.op == "<=" and value < c.value) else c.value))
    return out
