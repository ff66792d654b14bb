"""Decision cost on each engine: the pipeline against the raw engine, and growth to 5,000 rules.

    python bench/engine.py [--inputs 3000] [--sizes 10,100,1000,5000] [--engines regorus,regopy]

Part 1 (the repository's policies plus 10 drafted-shaped modules, the same varied inputs):
raw regopy (one bundle of every module, `set_input` + `query_bundle`), raw Regorus (one
engine of every module, `set_input_json` + `eval_rule`), and `Pipeline.decide_dict` on each
engine (input checks, the rule index, evaluation, error handling, stamping).
Target: <= 100 µs per decision through the pipeline on the default engine.

Part 2: 10, 100, 1,000 and 5,000 modules shaped like drafted ones, each with its own
literals (a resource id and an action type), so traffic spans >= 1,000 distinct index key
combinations from 1,000 modules on. Each size and engine runs in a fresh child process
(its peak RSS is its own). Reported: build seconds (compile_policy_set: parse, analysis,
one whole-set compile), programs compiled while warming and recompiles in the measured
pass (0 means no thrash), pipeline µs per decision, and the raw engine on one program of
every module (the cost without an index) on a sample. Targets on the default engine:
5,000 modules cost <= 2x what 10 cost per decision; build <= 10 s at 5,000.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, summarize, table, write_result  # noqa: E402

from policyctl.decide import Pipeline  # noqa: E402
from policyctl.engine import DEFAULT_ENGINE, compile_policy_set, engine_named, with_meta  # noqa: E402
from policyctl.repo import Snapshot, worktree_snapshot  # noqa: E402

ACTION_TYPES = ["file_share", "upload", "download", "sync", "backup", "export", "import", "replicate", "archive", "publish"]
PROTOCOLS = ["smb", "nfs", "sftp", "s3"]
FILE_TYPES = ["parquet", "csv", "json", "orc", "avro"]
ROLES = ["etl", "deploy", "backup", "reporting", "monitor"]


def drafted_module(i: int) -> tuple[str, str]:
    """A module as the drafter writes one: its own cluster, literals, a guarded numeric bound."""
    t, p, f = ACTION_TYPES[i // 20 % 10], PROTOCOLS[i // 5 % 4], FILE_TYPES[i % 5]
    name = f"drafted_{i:04d}"
    alt = "sftp" if p != "sftp" else "s3"
    bound = 1000 * (i % 7)
    text = f'''# METADATA
# title: Route {f} {t} off {p} for share fs-{i}
# description: drafted-shaped benchmark rule
# custom:
#   cluster: bench-{i:04d}
#   mode: enforce
package agentgov.rules.{name}

import rego.v1

decisions contains {{
\t"id": "route_{f}_{t}_off_{p}_{i}",
\t"action": "route",
\t"params": {{"action": {{"protocol": "{alt}"}}}},
\t"message": "{f} {t} over {p} to fs-{i} fails above {bound} bytes; use {alt}",
}} if {{
\tinput.kind == "action"
\tinput.action.type == "{t}"
\tinput.resource.id == "fs-{i}"
\tinput.action.protocol == "{p}"
\tis_number(input.action.size_bytes)
\tinput.action.size_bytes > {bound}
\tsome agent in input.agents
\tagent.role != "admin"
}}
'''
    return f"policies/rules/{name}.rego", text


def policy_snapshot(n_drafted: int) -> Snapshot:
    base = worktree_snapshot(PROJECT)
    files = {p: b for p, b in base.files.items() if p.startswith("policies/") and not p.endswith("_test.rego")}
    for i in range(n_drafted):
        path, text = drafted_module(i)
        files[path] = text.encode()
    return Snapshot(revision=f"bench-{n_drafted}", files=files)


def make_inputs(n: int, seed: int = 1, modules: int = 10) -> list[dict[str, Any]]:
    """Varied traffic: 3 in 4 are actions on one of the drafted modules' shares (any protocol,
    type and size, so most do not fire), the rest conflicts over ports and locks."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        agents = [{"id": f"{r}-{rng.randint(1, 40)}", "role": r, "priority": rng.randint(0, 10)}
                  for r in rng.sample(ROLES, rng.choice([1, 2, 3]))]
        if rng.random() < 0.75:
            j = rng.randrange(max(modules, 1))
            action_type = ACTION_TYPES[j // 20 % 10] if rng.random() < 0.8 else rng.choice(ACTION_TYPES)
            out.append({"kind": "action", "agents": agents[:1],
                        "action": {"type": action_type, "protocol": rng.choice(PROTOCOLS),
                                   "file_type": rng.choice(FILE_TYPES), "size_bytes": rng.randint(0, 10_000)},
                        "resource": {"kind": "share", "id": f"fs-{j}"}, "context": {"trace": f"t{i}"}})
        else:
            if len(agents) < 2:
                agents.append({"id": f"deploy-{rng.randint(41, 80)}", "role": "deploy", "priority": rng.randint(0, 10)})
            out.append({"kind": "conflict", "agents": agents,
                        "resource": {"kind": rng.choice(["port", "lock"]), "port": rng.choice([22, 80, 443, 5432])}})
    return out


# --------------------------------------------------------------------------- raw engines


def raw_program(snapshot: Snapshot, engine: str) -> Any:
    """One program of every module, built with the library itself: the engine without our index."""
    ps = compile_policy_set(snapshot, engine_named(engine))
    data = with_meta(ps.data, ps.modules)
    if engine == "regopy":
        from regopy import Interpreter, LogLevel

        b = Interpreter()
        b.log_level = LogLevel.NONE
        for m in ps.modules:
            b.add_module(m.file, m.text)
        b.add_data(data)
        return b.build("x = data.agentgov.main.decision", ["agentgov/main/decision"])
    import orjson
    import regorus

    e = regorus.Engine()
    for m in ps.modules:
        e.add_policy(m.file, m.text)
    e.add_data_json(orjson.dumps(data).decode())
    return e


def time_raw(program: Any, engine: str, inputs: list[dict[str, Any]]) -> list[float]:
    samples = []
    if engine == "regopy":
        from regopy import Interpreter, LogLevel

        runner = Interpreter()
        runner.log_level = LogLevel.NONE
        runner.strict_built_in_errors = True
        for inp in inputs:
            t = time.perf_counter()
            runner.set_input(inp)
            out = runner.query_bundle(program)
            out[0]  # noqa: B018 - the parsed result, as a caller would read it
            samples.append(time.perf_counter() - t)
        return samples
    import orjson

    for inp in inputs:
        t = time.perf_counter()
        program.set_input_json(orjson.dumps(inp).decode())
        program.eval_rule("data.agentgov.main.decision")
        samples.append(time.perf_counter() - t)
    return samples


def time_pipeline(pipeline: Pipeline, inputs: list[dict[str, Any]]) -> list[float]:
    samples = []
    for inp in inputs:
        t = time.perf_counter()
        pipeline.decide_dict(inp)
        samples.append(time.perf_counter() - t)
    return samples


def best(fn: Any, repeat: int) -> list[float]:
    return min((fn() for _ in range(repeat)), key=sum)


# --------------------------------------------------------------------------- parts


def part1(engines: list[str], n_inputs: int, repeat: int) -> dict[str, Any]:
    inputs = make_inputs(n_inputs, modules=10)
    snap = policy_snapshot(10)
    raws = {e: raw_program(snap, e) for e in engines}
    pipes = {e: Pipeline(compile_policy_set(snap, engine_named(e))) for e in engines}
    for pipeline in pipes.values():
        time_pipeline(pipeline, inputs)  # warm the index
    runs: dict[str, list[list[float]]] = {}
    for _ in range(repeat):  # interleaved, so drift on a shared machine hits all alike
        for e in engines:
            runs.setdefault(f"raw {e}", []).append(time_raw(raws[e], e, inputs))
            runs.setdefault(f"pipeline {e}", []).append(time_pipeline(pipes[e], inputs))
    out = {name: summarize(min(r, key=sum)) for name, r in runs.items()}
    for name, r in runs.items():
        out[name]["decisions_per_s"] = round(len(inputs) / sum(min(r, key=sum)))
    return {"policy_set": "repository policies + 10 drafted-shaped modules", "inputs": len(inputs), "paths": out}


def one_size(engine: str, n: int, n_inputs: int, repeat: int, raw_sample: int) -> dict[str, Any]:
    """One engine and module count, in a fresh process: build, warm, measure, raw sample, peak RSS."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    snap = policy_snapshot(n)
    inputs = make_inputs(n_inputs, modules=n)
    t = time.perf_counter()
    policies = compile_policy_set(snap, engine_named(engine))
    build_s = time.perf_counter() - t
    pipeline = Pipeline(policies)
    keys = {policies.key(i) for i in inputs}
    t = time.perf_counter()
    time_pipeline(pipeline, inputs)
    warm_s = time.perf_counter() - t
    warmed = policies.compiles
    pipe = best(lambda: time_pipeline(pipeline, inputs), repeat)
    recompiles = policies.compiles - warmed
    rss_pipeline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    raw = raw_program(snap, engine)
    raw_t = time_raw(raw, engine, inputs[:raw_sample])
    return {"engine": engine, "modules": n, "build_s": round(build_s, 3), "key_combinations": len(keys),
            "programs_compiled": warmed, "program_capacity": policies.capacity, "warm_s": round(warm_s, 3),
            "recompiles_in_measured_pass": recompiles, "pipeline": summarize(pipe),
            "pipeline_mean_us": round(sum(pipe) / len(pipe) * 1e6, 1),
            "raw_all_modules_mean_us": round(sum(raw_t) / len(raw_t) * 1e6, 1), "raw_sample": len(raw_t),
            "peak_rss_mib_pipeline": round(rss_pipeline / 1024), "rss_mib_at_start": round(rss0 / 1024)}


def _child(args: tuple[str, int, int, int, int], queue: Any) -> None:
    queue.put(one_size(*args))


def in_child(*args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--engines", default="regorus,regopy")
    args = parser.parse_args()
    engines = args.engines.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]

    p1 = part1(engines, args.inputs, args.repeat)
    print("Part 1: pipeline vs raw engines, repository policies + 10 drafted-shaped modules, same inputs")
    print(table([[name, s["mean_us"], s["p50_us"], s["p99_us"], s["decisions_per_s"]] for name, s in p1["paths"].items()],
                ["path", "mean µs", "p50 µs", "p99 µs", "decisions/s"]))
    default_us = p1["paths"][f"pipeline {DEFAULT_ENGINE}"]["mean_us"] if DEFAULT_ENGINE in engines else None
    p1["default_engine"] = DEFAULT_ENGINE
    p1["target"] = "<= 100 µs per decision through the pipeline on the default engine"
    p1["met"] = default_us is not None and default_us <= 100
    print(f"pipeline on the default engine ({DEFAULT_ENGINE}): {default_us} µs (target <= 100)\n")

    rows: list[dict[str, Any]] = []
    for engine in engines:
        for n in sizes:
            sample = 300 if n <= 100 else 60 if n <= 1000 else 8
            rows.append(in_child(engine, n, args.inputs, args.repeat, sample))
            print(f"  {engine} {n} modules: {rows[-1]['pipeline_mean_us']} µs, build {rows[-1]['build_s']} s", flush=True)
    print("Part 2: growth with drafted-shaped modules (each size in a fresh process)")
    print(table([[r["engine"], r["modules"], r["key_combinations"], r["build_s"], r["programs_compiled"],
                  r["recompiles_in_measured_pass"], r["pipeline_mean_us"], r["pipeline"]["p99_us"],
                  r["raw_all_modules_mean_us"], r["peak_rss_mib_pipeline"]] for r in rows],
                ["engine", "modules", "key combos", "build s", "programs", "recompiles", "pipeline µs",
                 "p99 µs", "raw all-modules µs", "peak RSS MiB"]))
    growth: dict[str, Any] = {}
    for engine in engines:
        by_n = {r["modules"]: r for r in rows if r["engine"] == engine}
        lo, hi = min(by_n), max(by_n)
        growth[engine] = {"modules": [lo, hi], "per_decision_ratio": round(by_n[hi]["pipeline_mean_us"] / by_n[lo]["pipeline_mean_us"], 3),
                          "build_s_at_max": by_n[hi]["build_s"],
                          "raw_ratio": round(by_n[hi]["raw_all_modules_mean_us"] / by_n[lo]["raw_all_modules_mean_us"], 1)}
        print(f"{engine}: {hi} / {lo} modules per decision {growth[engine]['per_decision_ratio']}x "
              f"(raw engine without index {growth[engine]['raw_ratio']}x); build at {hi}: {by_n[hi]['build_s']} s")
    d = growth.get(DEFAULT_ENGINE, {})
    met = bool(d) and d["per_decision_ratio"] <= 2 and d["build_s_at_max"] <= 10
    path = write_result("engine", {"part1": p1, "part2": {"rows": rows, "growth": growth, "default_engine": DEFAULT_ENGINE,
                                                          "target": "per decision <= 2x the 10-module cost at 5,000; build <= 10 s",
                                                          "met": met}})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
