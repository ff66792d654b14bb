"""The whole loop on every shipped world and five seeds: simulate, cluster, draft, merge, simulate again.

    python bench/loop.py [--events 20000] [--worlds demo fleet buildfarm] [--seeds 1 2 3 4 5] [--embedder tfidf]

Per world and seed S, from a policy set with no rules (main.rego only, so every fault
shows) and the world's declared vocabulary (bench/vocabularies/<world>.toml, what its
operators would write in policyctl.toml: which fields are alternatives):
1. simulate day 1 (seed S) and cluster it; draft every systemic cluster (induce);
2. commit every verified draft to main (the merge) and check the merged revision builds
   and all its fixtures pass;
3. simulate day 2 (seed S + 1000, never seen while drafting) twice, through the empty
   revision and through the merged one: the same planned traffic and fault rolls, so
   each event's two outcomes are a counterfactual pair.
Figures, per world and seed:
- systemic failures before and after on day 2: events a fault hit, plus, after, the
  events a decision `diverted` (a route that rewrote the agent's intent is an interaction
  that did not happen as asked, so it is a failure, not a fix);
- collateral: day-2 events that succeeded without the rules and do not with them
  (denied, diverted, or routed into another failure), as a share of those successes;
- intent-changing remedies: merged rules whose route params set a field the world
  declares as intent (read statically from the module), and diverted events.
Targets: systemic failures down >= 90% in every seed of every world; collateral <= 0.5%;
zero intent-changing remedies.

The vocabularies and worlds were written before these runs; the drafter's settings were
not tuned on seeds 3-5 or on the buildfarm world (see the README's note on tuning).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, table, write_result  # noqa: E402

IDENT = ["-c", "user.name=bench", "-c", "user.email=bench@policyctl.local"]
VOCABULARIES = Path(__file__).resolve().parent / "vocabularies"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def bare_repo(root: Path, world: str) -> Path:
    repo = root / "repo"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
    vocab = VOCABULARIES / f"{world}.toml"
    if vocab.is_file():
        shutil.copy(vocab, repo / "policyctl.toml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main.rego and the vocabulary")
    return repo


def load(log: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    events = {}
    for line in log.read_text().splitlines():
        e = json.loads(line)
        events[e["id"]] = e
    truth = {}
    for line in log.with_name(log.name.replace(".jsonl", ".truth.jsonl")).read_text().splitlines():
        r = json.loads(line)
        truth[r["id"]] = r["fault"]
    return events, truth


def intent_rewrites(modules: dict[str, str], intent: set[str]) -> list[str]:
    """Rules whose route params set a field the world declares as intent."""
    from policyctl.engine.modules import route_heads
    from policyctl.model.config import route_fields

    out = []
    for path, text in modules.items():
        for head in route_heads(text):
            fields = [f for f, _ in route_fields(head.params)] if head.params is not None else ["(computed)"]
            if any(f in intent or f == "(computed)" for f in fields):
                out.append(f"{path}: {', '.join(fields)}")
    return out


def run_one(world: str, seed: int, events: int, embedder: str, root: Path) -> dict[str, Any]:
    from policyctl.cli.main import main as cli
    from policyctl.cluster import cluster_logs
    from policyctl.decide import build_revision
    from policyctl.draft import run_drafts, write_drafts
    from policyctl.repo import snapshot
    from policyctl.simulate.world import load_world

    w = load_world(world)
    intent = set(w.intent)
    for item in w.traffic:
        intent |= set(item.intent)
    repo = bare_repo(root, world)
    empty = git(repo, "rev-parse", "HEAD")
    log1 = root / "day1.jsonl"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", str(seed), "--repo", str(repo),
                "-q", "-o", str(log1)]) == 0
    timings["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters, _ = cluster_logs([log1], embedder=embedder)
    timings["cluster"] = time.perf_counter() - t
    t = time.perf_counter()
    run = run_drafts(clusters, [log1], snapshot(repo, "main"))
    timings["draft"] = time.perf_counter() - t
    write_drafts(run.verified, repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"merge {len(run.verified)} drafts", "--allow-empty")
    merged = build_revision(snapshot(repo, "main"), verify=True)  # raises if the merge breaks anything
    rewrites = intent_rewrites({d.module_path: d.module_text for d in run.verified}, intent)

    _, truth1 = load(log1)
    fault_of_cluster = {}
    for c in clusters.systemic:
        owners = Counter(truth1.get(m) for m in c.members)
        fault_of_cluster[c.fingerprint] = owners.most_common(1)[0][0]

    before_log, after_log = root / "day2-without.jsonl", root / "day2-with.jsonl"
    day2 = str(seed + 1000)
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", day2, "--repo", str(repo),
                "--ref", empty, "-q", "-o", str(before_log)]) == 0
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", day2, "--repo", str(repo),
                "--ref", "main", "-q", "-o", str(after_log)]) == 0
    before, truth_b = load(before_log)
    after, truth_a = load(after_log)
    assert before.keys() == after.keys(), "the two runs must plan the same traffic"
    faults = sorted(f.name for f in w.faults)
    per_fault = {}
    for fault in faults:
        drafts = [d for d in run.drafts if fault_of_cluster.get(d.fingerprint) == fault]
        d = next((x for x in drafts if x.verified), drafts[0] if drafts else None)
        per_fault[fault] = {
            "drafted": d is not None, "verified": bool(d and d.verified), "rule": d.name if d else None,
            "remedy": d.remedy.action if d else None, "params": d.remedy.params if d else None,
            "candidates_tried": len(d.attempts) if d else 0,
            "holdout_prevented_pct": (d.verification.get("holdout") or {}).get("prevented_pct") if d else None,
            "collateral_pct": (d.verification.get("collateral") or {}).get("collateral_pct") if d else None,
            "failures_before": sum(1 for i in before if truth_b[i] == fault),
            "failures_after": sum(1 for i in after if truth_a[i] == fault),
        }
    diverted = sum(1 for e in after.values() if e["outcome"]["status"] == "diverted")
    systemic_before = sum(1 for i in before if truth_b[i])
    systemic_after = sum(1 for i in after if truth_a[i]) + diverted
    ok_before = [i for i in before if before[i]["outcome"]["status"] == "ok"]
    lost = Counter(after[i]["outcome"]["status"] for i in ok_before if after[i]["outcome"]["status"] != "ok")
    collateral = sum(lost.values())
    return {
        "world": world, "seed": seed, "day2_seed": int(day2), "events": events, "systemic_faults": len(faults),
        "verified_drafts": len(run.verified), "rejected_drafts": len(run.drafts) - len(run.verified),
        "skipped_clusters": run.skipped, "merged_fixtures": len(merged.fixtures), "per_fault": per_fault,
        "systemic_failures_before": systemic_before, "systemic_failures_after": systemic_after,
        "systemic_failures_reduction_pct": round(100 * (1 - systemic_after / systemic_before), 2) if systemic_before else None,
        "ok_events_without_rules": len(ok_before), "collateral": collateral,
        "collateral_pct": round(100 * collateral / len(ok_before), 3) if ok_before else 0.0,
        "collateral_by_status": dict(sorted(lost.items())),
        "intent_changing_remedies": len(rewrites), "intent_rewrites": rewrites, "diverted_after": diverted,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--worlds", nargs="+", default=["demo", "fleet", "buildfarm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--embedder", default="tfidf")
    args = parser.parse_args()
    results = []
    for world in args.worlds:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_one(world, seed, args.events, args.embedder, Path(tmp))
            results.append(r)
            print(f"{world} seed {seed}: {r['systemic_failures_before']} -> {r['systemic_failures_after']} systemic "
                  f"failures ({r['systemic_failures_reduction_pct']}% down), collateral {r['collateral_pct']}%, "
                  f"{r['intent_changing_remedies']} intent-changing remedies, {r['diverted_after']} diverted",
                  flush=True)
    rows = [[r["world"], r["seed"], f"{r['verified_drafts']}/{r['systemic_faults']}", r["systemic_failures_before"],
             r["systemic_failures_after"], f"{r['systemic_failures_reduction_pct']}%", f"{r['collateral_pct']}%",
             r["intent_changing_remedies"], r["diverted_after"]] for r in results]
    print(table(rows, ["world", "seed", "verified", "systemic before", "after", "reduction", "collateral",
                       "intent-changing", "diverted"]))
    fault_rows = []
    for r in results:
        for fault, f in r["per_fault"].items():
            if r["seed"] == args.seeds[0]:
                fault_rows.append([r["world"], fault, f["rule"] or "-", f["remedy"] or "-",
                                   json.dumps(f["params"]) if f["params"] else "", f["candidates_tried"],
                                   f["failures_before"], f["failures_after"]])
    print(table(fault_rows, ["world", "fault", "rule", "remedy", "params", "tried", "before", "after"]))
    met = all((r["systemic_failures_reduction_pct"] or 0) >= 90 and r["collateral_pct"] <= 0.5
              and r["intent_changing_remedies"] == 0 and r["diverted_after"] == 0 for r in results)
    worst = {"reduction_pct": min((r["systemic_failures_reduction_pct"] or 0) for r in results),
             "collateral_pct": max(r["collateral_pct"] for r in results),
             "intent_changing_remedies": sum(r["intent_changing_remedies"] for r in results),
             "diverted": sum(r["diverted_after"] for r in results)}
    path = write_result("loop", {"embedder": args.embedder, "runs": results, "worst": worst, "met": met,
                                 "targets": {"reduction": ">= 90% every seed and world", "collateral": "<= 0.5%",
                                             "intent_changing_remedies": 0}})
    print(f"worst case: {worst}; targets met: {met}")
    print(f"wrote {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
