"""Verification every drafter's output passes before it can reach a pull request."""

from __future__ import annotations

import json
from typing import Any

from policyctl.decide import Pipeline, build_revision
from policyctl.decide.checks import check_vocabulary
from policyctl.draft.data import Evidence
from policyctl.draft.induce import arbitrate_order
from policyctl.errors import PolicyCompileError
from policyctl.model.cluster import Cluster
from policyctl.model.draft import Draft
from policyctl.model.region import region_of_cluster
from policyctl.repo import Snapshot
from policyctl.shadow.replay import decide, ok_change, rule_regions, signature

MAX_FIXTURES = 5


def _key(input: dict[str, Any]) -> str:
    return json.dumps(input, sort_keys=True)


def make_fixtures(d: Draft, ev: Evidence, base: Pipeline) -> list[dict[str, Any]]:
    """`prevent` cases from the cluster's training failures, `keep` cases from the nearest ok traffic."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in ev.train:
        inp = event["input"]
        if _key(inp) in seen or not any(all(c.holds(inp) for c in b) for b in d.bodies):
            continue
        seen.add(_key(inp))
        expect: dict[str, Any] = {"action": d.remedy.action}
        if d.remedy.action == "route":
            expect["params"] = d.remedy.params
        elif d.remedy.action == "arbitrate":
            order = arbitrate_order(inp)
            expect["params"] = {"winner": order[0], "order": order}
        out.append({"id": f"{d.name}-prevent-{len(out) + 1:03d}", "input": inp, "expect": expect, "why": "prevent",
                    "origin": event["id"]})
        if len(out) >= MAX_FIXTURES:
            break
    # keep: ok traffic that meets all but one condition of a body, the closest a rule comes to misfiring
    near = []
    for event in ev.ok:
        inp = event["input"]
        for body in d.bodies:
            missed = sum(1 for c in body if not c.holds(inp))
            if missed == 1 and _key(inp) not in seen:
                near.append((event, body))
                break
    for kept, (event, _) in enumerate(sorted(near, key=lambda eb: eb[0]["id"])):
        if kept >= MAX_FIXTURES:
            break
        inp = event["input"]
        decision = base.decide_dict(inp)
        expect = {"action": decision["action"]}
        if decision.get("params"):
            expect["params"] = decision["params"]
        seen.add(_key(inp))
        out.append({"id": f"{d.name}-keep-{kept + 1:03d}", "input": inp, "expect": expect, "why": "keep",
                    "origin": event["id"]})
    return out


def candidate_snapshot(base: Snapshot, drafts: list[Draft]) -> Snapshot:
    files = dict(base.files)
    for d in drafts:
        files[d.module_path] = d.module_text.encode()
        files[d.fixtures_path] = "".join(json.dumps(f, sort_keys=True) + "\n" for f in d.fixtures).encode()
    return Snapshot(revision=None, files=files, blob_ids={}, root=base.root)


def in_region(input: dict[str, Any], cluster: Cluster) -> bool:
    """Whether an input lies in the failure region the clustering found for `cluster`."""
    return region_of_cluster(cluster).contains(input)


def verify(d: Draft, ev: Evidence, base_snap: Snapshot, base: Pipeline) -> Draft:
    """Fill d.verification and d.verified; the reasons say exactly what failed."""
    v: dict[str, Any] = {}
    snap = candidate_snapshot(base_snap, [d])
    try:
        revision = build_revision(snap, verify=True)
    except PolicyCompileError as exc:
        d.reasons = [str(p) for p in exc.problems[:10]] or [exc.message]
        d.verification = {"compiled": False, "fixtures_passed": False}
        d.verified = False
        return d
    # Whatever the drafter (a model may write any route): a draft never rewrites the agent's intent.
    intent = [p for p in check_vocabulary(snap) if p.file == d.module_path and p.severity == "error"]
    cand = revision.pipeline
    v["compiled"] = True
    v["fixtures_passed"] = True
    v["fixtures"] = {"total": len(revision.fixtures), "added": len(d.fixtures)}
    module = cand.policies.module_by_name(d.name)

    def reachable(inp: dict[str, Any]) -> bool:
        if module is None:
            return True
        key = dict(zip(cand.policies.index_paths, cand.policies.key(inp), strict=True))
        return module.applies(key)

    def prevented(events: list[dict[str, Any]]) -> tuple[int, int]:
        n = 0
        for e in events:
            logged = e.get("decision") if isinstance(e.get("decision"), dict) else None
            with_params = logged is None or "params" in logged
            now = decide(cand, e["input"])
            then = signature(logged, with_params) if logged else signature(decide(base, e["input"]))
            n += signature(now, with_params) != then
        return n, len(events)

    held, total = prevented(ev.holdout)
    train_n, train_total = prevented(ev.train)
    v["holdout"] = {"events": total, "prevented": held, "prevented_pct": round(100 * held / total, 2) if total else None}
    v["train"] = {"events": train_total, "prevented": train_n,
                  "prevented_pct": round(100 * train_n / train_total, 2) if train_total else None}
    changed = evaluated = in_region_changed = 0
    transitions: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    regions = rule_regions(cand)
    for e in ev.ok:
        inp = e["input"]
        if not reachable(inp):
            continue  # the index proves the new module cannot fire: the decision is base's
        evaluated += 1
        b = ev.base_cache.get(e["id"])
        if b is None:
            b = ev.base_cache[e["id"]] = decide(base, inp)
        c = decide(cand, inp)
        kind = ok_change(inp, b, c, regions)
        if kind is not None:
            if kind == "in_region":
                in_region_changed += 1
                continue
            changed += 1
            t = f"{b.get('action')}→{c.get('action')}"
            transitions[t] = transitions.get(t, 0) + 1
            if len(examples) < 3:
                examples.append({"id": e["id"], "input": inp, "base": b.get("action"), "candidate": c.get("action")})
    ok = len(ev.ok)

    def matches(inp: dict[str, Any]) -> bool:
        if d.bodies:
            return any(all(c.holds(inp) for c in b) for b in d.bodies)
        # a module written as Rego (Claude): it matches where the candidate decides by it
        decision = decide(cand, inp)
        return decision.get("source") == "policy" and any(
            isinstance(r, dict) and r.get("file") == d.module_path for r in decision.get("reasons") or [])

    residual = [e for e in ev.failures if not matches(e["input"])]
    ok_matching = sum(1 for e in ev.ok if matches(e["input"]))
    if ev.ok and ev.ok_total > len(ev.ok):  # a reservoir sample of ok traffic: scale to the logs
        ok_matching = round(ok_matching * ev.ok_total / len(ev.ok))
    failed = len(ev.failures) - len(residual)
    attempts = failed + ok_matching
    v["match"] = {"attempts": attempts, "failed": failed,
                  "failed_pct": round(100 * failed / attempts, 1) if attempts else None}
    v["residual"] = {"failures": len(residual), "of": len(ev.failures), "examples": [e["id"] for e in residual[:5]]}
    v["collateral"] = {"ok_events": ok, "ok_events_in_logs": ev.ok_total, "reachable": evaluated, "changed": changed,
                       "in_region": in_region_changed,
                       "region": d.region.to_list() if d.region else [],
                       "collateral_pct": round(100 * changed / ok, 3) if ok else 0.0, "transitions": transitions,
                       "examples": examples}
    d.verification = v
    reasons = []
    budgets = base_snap.config.budgets
    min_prevented, max_collateral = budgets.min_prevented_pct / 100, budgets.max_collateral_pct / 100
    if total and held / total < min_prevented:
        reasons.append(f"prevents {held} of {total} held-out failures ({100 * held / total:.1f}%), "
                       f"under {100 * min_prevented:g}%")
    if not total:
        reasons.append("no held-out failures to verify against")
    if ok and changed / ok > max_collateral:
        reasons.append(f"changes {changed} of {ok} ok events outside the failure region ({100 * changed / ok:.2f}%), "
                       f"over the {100 * max_collateral:g}% budget")
    reasons += [f"{p.where}: {p.message}" for p in intent]
    d.reasons = reasons
    d.verified = not reasons
    return d

