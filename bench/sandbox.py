"""Override sandbox cost: a call through the worker pool against the same restricted code in-process.

    python bench/sandbox.py [--calls 3000] [--repeat 3] [--timeouts 10] [--pool-size 2] [--check]

1. Per-call overhead. The design's example override (arbitrate by priority) on a
   conflict of five agents, `--calls` times each way, the three ways taking turns:
   - in-process baseline: the same compiled restricted code run by `execute` in this
     process, on a private copy of the input (JSON round trip), with the decision check;
   - pool: `run_override_traced` through a prewarmed WorkerPool as the gateway runs it
     (JSON over pipes, the worker's fresh globals, its post-run garbage collection, the
     checks on both sides), its workers locked down (seccomp, Landlock, no_new_privs);
   - pool without the lock-down: the same, its workers started with the lock-down
     switched off (a benchmark-only switch), so the lock-down's own cost is measured in
     the same run: the seccomp filter runs on every syscall a call makes.
   Overhead = pool minus baseline at the same percentile, in each of --repeat series;
   the series with the median p99 is reported, the worst one beside it (on a shared
   machine the tail of a pipe round trip is the scheduler's). Target: p99 overhead < 2 ms,
   lock-down included. The lock-down's overhead (locked minus unlocked pool) is reported
   beside it, and its cost at start-up (a worker spawned with and without it, in turns).
2. Timeouts. A script that never returns (a Python loop; a single long C call,
   10**10**8) with a `--timeout-ms` deadline: how late the call returns after its
   deadline (target: < 50 ms), and how long until the killed worker's replacement is
   ready (spawn of a fresh isolated `python -I` worker).
--check exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile, summarize, table, write_result  # noqa: E402

from policyctl.sandbox import SandboxTimeout, WorkerPool, compile_override, run_override_traced  # noqa: E402
from policyctl.sandbox.execute import execute  # noqa: E402
from policyctl.sandbox.limits import WorkerLimits  # noqa: E402
from policyctl.sandbox.pool import Worker  # noqa: E402
from policyctl.sandbox.result import check_decision  # noqa: E402
from policyctl.sandbox.wall import UnsafeSwitches, describe  # noqa: E402

UNLOCKED = UnsafeSwitches(lockdown=())  # walls 1 and 2 stay on; only the kernel lock-down is off

TARGET_P99_OVERHEAD_MS = 2.0
TARGET_LATENESS_MS = 50.0

SCRIPT = '''"""Serialize deploy agents on port 22 until the lock service is fixed (INC-4412)."""
OVERRIDE = {"match": {"kind": "conflict", "resource.port": 22},
            "expires": "2099-11-28T00:00:00Z", "priority": 100}

def decide(input):
    ranked = sorted(input["agents"], key=lambda a: (-a.get("priority", 0), a["id"]))
    return {"action": "arbitrate", "params": {"winner": ranked[0]["id"], "order": [a["id"] for a in ranked]}}
'''
INPUT: dict[str, Any] = {
    "kind": "conflict",
    "agents": [{"id": f"deploy-{i}", "role": "deploy", "priority": (i * 7) % 5} for i in range(5)],
    "resource": {"kind": "port", "port": 22, "host": "bastion-1"},
    "context": {"ticket": "INC-4412"},
}
RUNAWAY = {
    "python loop": "def decide(input):\n    while True:\n        pass\n",
    "one long C call": "def decide(input):\n    return 10**10**8\n",
}
FILE = "overrides/port22.py"


def in_process_call(code: Any) -> dict[str, Any] | None:
    private = orjson.loads(orjson.dumps(INPUT))
    run = execute(code, private, file=FILE)
    return check_decision(run.result, INPUT)


def measure_overhead(pool: WorkerPool, unlocked: WorkerPool, calls: int, warmup: int) -> dict[str, Any]:
    code = compile_override(SCRIPT, file=FILE)
    expected = in_process_call(code)
    for _ in range(warmup):
        in_process_call(code)
        run_override_traced(SCRIPT, INPUT, 1.0, file=FILE, pool=pool)
        run_override_traced(SCRIPT, INPUT, 1.0, file=FILE, pool=unlocked)
    base: list[float] = []
    pooled: list[float] = []
    bare: list[float] = []
    for i in range(calls):
        t0 = time.perf_counter()
        in_process_call(code)
        t1 = time.perf_counter()
        base.append(t1 - t0)
        # The two pools take turns going first, so neither always follows the in-process call.
        for which in ((pool, pooled), (unlocked, bare)) if i % 2 else ((unlocked, bare), (pool, pooled)):
            t2 = time.perf_counter()
            decision = run_override_traced(SCRIPT, INPUT, 1.0, file=FILE, pool=which[0]).decision
            which[1].append(time.perf_counter() - t2)
            assert decision == expected
    over = {q: (percentile(pooled, q) - percentile(base, q)) * 1000 for q in (50, 99)}
    lock = {q: (percentile(pooled, q) - percentile(bare, q)) * 1000 for q in (50, 99)}
    return {"calls": calls, "in_process": summarize(base), "pool": summarize(pooled),
            "overhead_ms": {"p50": round(over[50], 3), "p99": round(over[99], 3)},
            "target_p99_overhead_ms": TARGET_P99_OVERHEAD_MS, "met": over[99] < TARGET_P99_OVERHEAD_MS,
            "pool_without_lockdown": summarize(bare),
            "lockdown_overhead_ms": {"p50": round(lock[50], 3), "p99": round(lock[99], 3)}}


def measure_spawn(rounds: int) -> dict[str, Any]:
    """A worker started to ready (hello and lock-down report), with and without the lock-down, in turns."""
    import tempfile

    times: dict[str, list[float]] = {"locked": [], "unlocked": []}
    limits = WorkerLimits()
    with tempfile.TemporaryDirectory(prefix="policyctl-bench-") as workdir:
        for i in range(rounds * 2):
            name = "locked" if i % 2 == 0 else "unlocked"
            t0 = time.perf_counter()
            worker = Worker.start(limits, workdir, unsafe=None if name == "locked" else UNLOCKED)
            times[name].append((time.perf_counter() - t0) * 1000)
            worker.kill()
            worker.reap()
    p50 = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "locked_ms_p50": round(p50["locked"], 1), "unlocked_ms_p50": round(p50["unlocked"], 1),
            "lockdown_ms_p50": round(p50["locked"] - p50["unlocked"], 1)}


def measure_timeouts(pool: WorkerPool, rounds: int, timeout_ms: int) -> dict[str, Any]:
    out: dict[str, Any] = {"timeout_ms": timeout_ms, "rounds": rounds, "by_script": {}}
    replace_ms: list[float] = []
    worst = 0.0
    for name, source in RUNAWAY.items():
        lateness: list[float] = []
        for _ in range(rounds):
            assert pool.wait_ready()
            t0 = time.perf_counter()
            try:
                run_override_traced(source, INPUT, timeout_ms / 1000, file=FILE, pool=pool)
            except SandboxTimeout:
                pass
            else:
                raise AssertionError(f"{name}: expected a timeout")
            t1 = time.perf_counter()
            lateness.append((t1 - t0) * 1000 - timeout_ms)
            assert pool.wait_ready()  # the replacement is up and idle
            replace_ms.append((time.perf_counter() - t1) * 1000)
        worst = max(worst, max(lateness))
        out["by_script"][name] = {"lateness_ms_p50": round(statistics.median(lateness), 2),
                                  "lateness_ms_max": round(max(lateness), 2)}
    out["lateness_ms_max"] = round(worst, 2)
    out["target_lateness_ms"] = TARGET_LATENESS_MS
    out["met"] = worst < TARGET_LATENESS_MS
    out["replace_ms"] = {"p50": round(statistics.median(replace_ms), 1), "max": round(max(replace_ms), 1),
                         "spawn_to_ready_p50": pool.stats()["spawn_ms_p50"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="series of --calls calls each way")
    parser.add_argument("--timeouts", type=int, default=10, help="runaway calls per script")
    parser.add_argument("--timeout-ms", type=int, default=100)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--spawns", type=int, default=10, help="workers started each way for the start-up cost")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    pool = WorkerPool(size=args.pool_size)
    unlocked = WorkerPool(size=args.pool_size, _unsafe=UNLOCKED)
    try:
        assert pool.wait_ready() and unlocked.wait_ready(), "workers did not start"
        mechanisms = describe(pool)
        series = [measure_overhead(pool, unlocked, args.calls, args.warmup) for _ in range(args.repeat)]
        unlocked.close()
        spawn = measure_spawn(args.spawns)
        timeouts = measure_timeouts(pool, args.timeouts, args.timeout_ms)
        stats = pool.stats()
    finally:
        pool.close()
        unlocked.close()

    series.sort(key=lambda r: r["overhead_ms"]["p99"])
    overhead = dict(series[len(series) // 2])
    overhead["series_p99_overhead_ms"] = [r["overhead_ms"]["p99"] for r in series]
    worst = series[-1]["overhead_ms"]["p99"]
    overhead["series_p99_lockdown_overhead_ms"] = [r["lockdown_overhead_ms"]["p99"] for r in series]
    ip, pl, ov = overhead["in_process"], overhead["pool"], overhead["overhead_ms"]
    bare, lock = overhead["pool_without_lockdown"], overhead["lockdown_overhead_ms"]
    print(f"lock-down of the workers: seccomp {'on' if mechanisms['seccomp'] else 'OFF'}, Landlock ABI "
          f"{mechanisms['landlock_abi'] or 'none'}, no_new_privs {'on' if mechanisms['no_new_privs'] else 'OFF'} "
          f"(kernel {mechanisms['kernel']})")
    print(table([
        ["in-process (same restricted code)", ip["p50_us"], ip["p99_us"], ip["mean_us"], ""],
        ["worker pool, locked down", pl["p50_us"], pl["p99_us"], pl["mean_us"], ""],
        ["worker pool, lock-down off", bare["p50_us"], bare["p99_us"], bare["mean_us"], ""],
        ["overhead (locked pool - in-process)", round(ov["p50"] * 1000, 1), round(ov["p99"] * 1000, 1), "",
         f"p99 < {TARGET_P99_OVERHEAD_MS * 1000:.0f} us: {'met' if overhead['met'] else 'MISSED'}"],
        ["lock-down (locked - unlocked pool)", round(lock["p50"] * 1000, 1), round(lock["p99"] * 1000, 1), "", ""],
    ], ["per call (median series)", "p50 us", "p99 us", "mean us", "target"]))
    print(f"p99 overhead of each of {len(series)} series of {args.calls} calls: "
          f"{', '.join(f'{x * 1000:.0f} us' for x in overhead['series_p99_overhead_ms'])} "
          f"(worst {worst * 1000:.0f} us); of the lock-down alone: "
          f"{', '.join(f'{x * 1000:.0f} us' for x in overhead['series_p99_lockdown_overhead_ms'])}")
    print(f"a worker started to ready: {spawn['locked_ms_p50']} ms locked down, {spawn['unlocked_ms_p50']} ms "
          f"without (p50 of {spawn['rounds']} each): the lock-down adds {spawn['lockdown_ms_p50']} ms at start-up")
    print()
    rows = [[f"{name}, deadline {args.timeout_ms} ms", v["lateness_ms_p50"], v["lateness_ms_max"]]
            for name, v in timeouts["by_script"].items()]
    print(table(rows, ["timed-out call returns after its deadline", "p50 ms", "max ms"]))
    print(f"target: every timed-out call back within deadline + {TARGET_LATENESS_MS:.0f} ms: "
          f"{'met' if timeouts['met'] else 'MISSED'}")
    r = timeouts["replace_ms"]
    print(f"killed worker replaced (until a new worker is idle): p50 {r['p50']} ms, max {r['max']} ms "
          f"(spawn to ready p50 {r['spawn_to_ready_p50']} ms)")
    # Tail latency through a pipe is mostly the scheduler: record how busy the machine was.
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']} on {os.cpu_count()} CPUs")
    path = write_result("sandbox", {"script": SCRIPT, "pool_size": args.pool_size, "lockdown": mechanisms,
                                    "overhead": overhead, "spawn": spawn, "timeouts": timeouts,
                                    "pool_stats": stats, "load_average": load})
    print(f"\nwrote {path}")
    missed = not overhead["met"] or not timeouts["met"]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
