"""The whole loop on both shipped worlds: simulate, cluster, draft, merge, simulate again.

    python bench/loop.py [--events 20000] [--worlds demo fleet] [--embedder tfidf]

Per world, from a policy set with no rules (main.rego only, so every fault shows):
1. simulate (seed 1) and cluster the log; draft every systemic cluster (induce);
2. commit every verified draft to main (the merge), and check the merged revision
   builds and all its fixtures pass;
3. simulate a new seed (2) twice, through the empty revision and through the merged
   one: the same planned traffic and fault rolls, so each event's two outcomes are a
   counterfactual pair.
Per fault: drafted and verified or not, hold-out prevention, collateral (verification
figures), and its failures before and after on seed 2. Whole loop: systemic failure rate
before and after, and newly denied successful traffic (ok without the rules, denied with
them). Targets: every systemic fault drafted and verified; systemic failures down >= 90%;
newly denied successful traffic <= 1%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402
from cluster_quality import bare_repo  # noqa: E402

IDENT = ["-c", "user.name=bench", "-c", "user.email=bench@policyctl.local"]


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


def run_world(world: str, events: int, embedder: str, root: Path) -> dict[str, Any]:
    from policyctl.cli.main import main as cli
    from policyctl.cluster import cluster_logs
    from policyctl.decide import build_revision
    from policyctl.draft import run_drafts, write_drafts
    from policyctl.repo import snapshot

    repo = bare_repo(root)
    empty = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    log1 = root / "day1.jsonl"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", "1", "--repo", str(repo), "-o", str(log1)]) == 0
    timings["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters, _ = cluster_logs([log1], embedder=embedder)
    timings["cluster"] = time.perf_counter() - t
    t = time.perf_counter()
    run = run_drafts(clusters, [log1], snapshot(repo, "main"))
    timings["draft"] = time.perf_counter() - t
    write_drafts(run.verified, repo)
    subprocess.run(["git", *IDENT, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *IDENT, "commit", "-qm", f"merge {len(run.verified)} drafts"], cwd=repo, check=True)
    merged = build_revision(snapshot(repo, "main"), verify=True)  # raises if the merge breaks anything

    _, truth1 = load(log1)
    fault_of_cluster = {}
    for c in clusters["clusters"]:
        if c["systemic"]:
            owners = Counter(truth1.get(m) for m in c["members"])
            fault_of_cluster[c["fingerprint"]] = owners.most_common(1)[0][0]

    before_log, after_log = root / "day2-without.jsonl", root / "day2-with.jsonl"
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", "2", "--repo", str(repo),
                "--ref", empty, "-o", str(before_log)]) == 0
    assert cli(["simulate", "--world", world, "--events", str(events), "--seed", "2", "--repo", str(repo),
                "--ref", "main", "-o", str(after_log)]) == 0
    before, truth_b = load(before_log)
    after, truth_a = load(after_log)
    assert before.keys() == after.keys(), "the two runs must plan the same traffic"
    faults = sorted({f for f in truth1.values() if f})
    per_fault = {}
    for fault in faults:
        drafts = [d for d in run.drafts if fault_of_cluster.get(d.fingerprint) == fault]
        d = next((x for x in drafts if x.verified), drafts[0] if drafts else None)
        per_fault[fault] = {
            "drafted": d is not None, "verified": bool(d and d.verified), "rule": d.name if d else None,
            "remedy": d.remedy.action if d else None,
            "holdout_prevented_pct": (d.verification.get("holdout") or {}).get("prevented_pct") if d else None,
            "collateral_pct": (d.verification.get("collateral") or {}).get("collateral_pct") if d else None,
            "failures_before": sum(1 for i in before if truth_b[i] == fault),
            "failures_after": sum(1 for i in after if truth_a[i] == fault),
        }
    systemic_before = sum(1 for i in before if truth_b[i])
    systemic_after = sum(1 for i in after if truth_a[i])
    ok_before = [i for i in before if before[i]["outcome"]["status"] == "ok"]
    newly_denied = sum(1 for i in ok_before if after[i]["outcome"]["status"] == "denied")
    newly_failing = sum(1 for i in ok_before if after[i]["outcome"]["status"] not in ("ok", "denied"))
    return {
        "world": world, "events": events, "systemic_faults": len(faults),
        "verified_drafts": len(run.verified), "rejected_drafts": len(run.drafts) - len(run.verified),
        "skipped_clusters": run.skipped, "merged_fixtures": len(merged.fixtures),
        "per_fault": per_fault,
        "systemic_failure_rate_before": round(systemic_before / len(before), 5),
        "systemic_failure_rate_after": round(systemic_after / len(after), 5),
        "systemic_failures_reduction_pct": round(100 * (1 - systemic_after / systemic_before), 2) if systemic_before else None,
        "ok_events_without_rules": len(ok_before), "newly_denied": newly_denied,
        "newly_denied_pct": round(100 * newly_denied / len(ok_before), 3) if ok_before else 0.0,
        "newly_failing": newly_failing, "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--worlds", nargs="+", default=["demo", "fleet"])
    parser.add_argument("--embedder", default="tfidf")
    args = parser.parse_args()
    results = []
    for world in args.worlds:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_world(world, args.events, args.embedder, Path(tmp)))
    rows = []
    for r in results:
        for fault, f in r["per_fault"].items():
            rows.append([r["world"], fault, f["rule"] or "-", f["remedy"] or "-", "yes" if f["verified"] else "NO",
                         f"{f['holdout_prevented_pct']}%", f"{f['collateral_pct']}%", f["failures_before"], f["failures_after"]])
    print(table(rows, ["world", "fault", "rule", "remedy", "verified", "held-out prevented", "collateral",
                       "failures before", "after"]))
    for r in results:
        print(f"{r['world']}: systemic failure rate {100 * r['systemic_failure_rate_before']:.2f}% -> "
              f"{100 * r['systemic_failure_rate_after']:.2f}% (down {r['systemic_failures_reduction_pct']}%); "
              f"newly denied ok traffic {r['newly_denied']} of {r['ok_events_without_rules']} ({r['newly_denied_pct']}%); "
              f"newly failing {r['newly_failing']}")
    met = all(all(f["verified"] for f in r["per_fault"].values()) and (r["systemic_failures_reduction_pct"] or 0) >= 90
              and r["newly_denied_pct"] <= 1 for r in results)
    path = write_result("loop", {"embedder": args.embedder, "worlds": results, "met": met,
                                 "targets": {"verified": "every systemic fault", "reduction": ">= 90%",
                                             "newly_denied": "<= 1%"}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
