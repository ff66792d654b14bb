"""OPA's conformance cases on both engines: pass rate per engine and per topic, and the failures.

    python bench/conformance.py [--timeout 10] [--processes 2]

Cases come from ../shared/opa-conformance/cases (when that folder exists) and from
conformance/opa/cases; each case runs on regopy and on Regorus in child processes, so a
crash or a hang is recorded as that case's failure. Writes bench/results/conformance.json
(totals, per topic, failing notes with reasons) and bench/results/conformance_pass.json
({engine: sorted passing notes}), the list tests/test_conformance.py holds the engines to.
The baseline measured in the same run is the other engine: a case one engine passes and
the other fails is a divergence a policy would see when the gateway switches engines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, RESULTS, table, write_result  # noqa: E402


def rate(passed: int, total: int) -> float:
    return round(passed / total, 4) if total else 0.0


def summarize(results: list[Any]) -> dict[str, Any]:
    """Totals, per-topic figures and failing notes of one engine's results."""
    topics: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        topics[r.topic][0] += 1
        topics[r.topic][1] += r.passed
    passed = sum(r.passed for r in results)
    return {
        "total": len(results), "passed": passed, "pass_rate": rate(passed, len(results)),
        "topics": {t: {"total": n, "passed": p, "pass_rate": rate(p, n)} for t, (n, p) in sorted(topics.items())},
        "failures": [{"note": r.note, "file": r.file, "reason": r.reason} for r in results if not r.passed],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--processes", type=int, default=2, help="child processes per engine")
    args = parser.parse_args()
    from policyctl.engine.conformance import ENGINES, case_roots, load_cases, run_cases

    roots = case_roots(PROJECT)
    cases = load_cases(roots)
    per_engine: dict[str, dict[str, Any]] = {}
    passing: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for engine in ENGINES:
        started = time.perf_counter()
        results = run_cases(engine, cases, timeout_s=args.timeout, processes=args.processes)
        seconds[engine] = round(time.perf_counter() - started, 2)
        per_engine[engine] = {**summarize(results), "seconds": seconds[engine]}
        passing[engine] = sorted(r.note for r in results if r.passed)

    topics = sorted({c.topic for c in cases})
    rows = []
    for topic in [*topics, "ALL"]:
        row: list[Any] = [topic]
        for engine in ENGINES:
            s = per_engine[engine] if topic == "ALL" else per_engine[engine]["topics"][topic]
            row += [f"{s['passed']}/{s['total']}", f"{100 * s['pass_rate']:.1f}%"]
        rows.append(row)
    print(table(rows, ["topic", *[h for e in ENGINES for h in (e, "rate")]]))
    sets = {e: set(p) for e, p in passing.items()}
    only = {e: sorted(sets[e] - set().union(*(sets[o] for o in ENGINES if o != e))) for e in ENGINES}
    for engine in ENGINES:
        print(f"{engine}: {per_engine[engine]['passed']}/{per_engine[engine]['total']} in {seconds[engine]} s; "
              f"passes {len(only[engine])} case(s) the other fails")

    path = write_result("conformance", {
        "case_roots": [os.path.relpath(r, PROJECT) for r in roots],
        "cases": len(cases), "files": len({c.file for c in cases}), "timeout_s": args.timeout,
        "engines": per_engine, "only_passes": only,
    })
    pass_path = RESULTS / "conformance_pass.json"
    pass_path.write_text(json.dumps(passing, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}\nwrote {pass_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
