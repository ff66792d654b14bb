"""Shadow replay throughput on a long log against raw engine throughput times the number of workers.

    python bench/shadow.py [--events 100000] [--modules 1000] [--jobs 2] [--engine regorus]

A replay makes two decisions per event (base and candidate: the policy set of --modules
drafted-shaped rules, and the same plus one). Throughput is counted in decisions per second
and compared with the raw engine's decisions per second on the same policy set (one
program of every module, the engine without our index, measured in this run in one
process) times the number of workers. Target: >= 0.7. A stricter ratio is reported too:
against the raw engine on the repository's policies plus 10 modules, i.e. what the engine
costs when it holds only what can apply. Peak memory of the largest worker and of the
parent (which only streams the file) are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402
from engine import drafted_module, make_inputs, policy_snapshot, raw_program, time_raw  # noqa: E402

from policyctl.engine import DEFAULT_ENGINE, ENGINE_ENV, ENGINES  # noqa: E402
from policyctl.repo import Snapshot  # noqa: E402
from policyctl.shadow import replay  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--engine", default=DEFAULT_ENGINE, choices=sorted(ENGINES))
    args = parser.parse_args()
    os.environ[ENGINE_ENV] = args.engine  # the replay's workers build on it too

    base = policy_snapshot(args.modules)
    files = dict(base.files)
    path, text = drafted_module(args.modules)
    files[path] = text.encode()
    candidate = Snapshot(revision="bench-candidate", files=files)

    rng = random.Random(5)
    inputs = make_inputs(20_000, seed=9, modules=args.modules)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        with log.open("w") as f:
            for i in range(args.events):
                status = "crash" if rng.random() < 0.1 else "ok"
                f.write(json.dumps({"id": f"evt-{i:07d}", "input": inputs[i % len(inputs)],
                                    "outcome": {"status": status}}) + "\n")
        size_mb = log.stat().st_size / 2**20

        sample = inputs[: 5000 if args.modules <= 100 else 300]
        raw = time_raw(raw_program(base, args.engine), args.engine, sample)
        raw_dps = len(raw) / sum(raw)
        small = time_raw(raw_program(policy_snapshot(10), args.engine), args.engine, make_inputs(5000, seed=9))
        small_dps = len(small) / sum(small)

        t = time.perf_counter()
        report = replay(base, candidate, [log], fixtures=False, jobs=args.jobs)
        elapsed = time.perf_counter() - t
    worker_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    parent_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events = report.t["events"]
    dps = 2 * events / elapsed
    ratio = dps / (raw_dps * args.jobs)
    strict = dps / (small_dps * args.jobs)
    rows = [[f"raw {args.engine}, {args.modules} modules in one program, 1 process", f"{raw_dps:,.0f}", "", ""],
            [f"raw {args.engine}, 10 modules, 1 process", f"{small_dps:,.0f}", "", ""],
            [f"shadow replay, {args.jobs} workers", f"{dps:,.0f}", f"{events / elapsed:,.0f}", f"{elapsed:.1f}"]]
    print(f"Shadow replay of {events:,} events ({size_mb:.0f} MiB), two decisions each")
    print(table(rows, ["path", "decisions/s", "events/s", "seconds"]))
    print(f"replay / (raw x {args.jobs} workers) = {ratio:.2f} (target >= 0.7); "
          f"against the raw engine on 10 modules {strict:.2f}")
    print(f"peak RSS: largest worker {worker_peak_mb:.0f} MiB, parent {parent_peak_mb:.0f} MiB (streams the log)")
    out = write_result("shadow", {
        "engine": args.engine, "modules": args.modules, "events": events, "log_mib": round(size_mb, 1), "jobs": args.jobs, "seconds": round(elapsed, 2),
        "replay_decisions_per_s": round(dps), "replay_events_per_s": round(events / elapsed),
        "raw_decisions_per_s_one_process": round(raw_dps), "ratio": round(ratio, 3), "target": ">= 0.7",
        "raw_10_modules_decisions_per_s_one_process": round(small_dps), "ratio_against_raw_10_modules": round(strict, 3),
        "met": ratio >= 0.7, "worker_peak_rss_mib": round(worker_peak_mb), "parent_peak_rss_mib": round(parent_peak_mb),
        "changed": report.t["changed"], "prevented": report.t["prevented"],
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
