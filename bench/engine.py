"""Decision cost: the full decide pipeline against raw regopy query_bundle, and growth with rule count.

    python bench/engine.py [--inputs 10000] [--repeat 3]

Part 1: the same policy set (the repository's policies plus 10 drafted-shaped modules)
and the same varied inputs through (a) raw regopy: one bundle of every module,
`set_input` + `query_bundle` per input, and (b) `Pipeline.decide_dict`: input checks,
the rule index, evaluation, error handling and stamping. Target: (b) <= 1.5 x (a).

Part 2: 10, 50 and 200 modules shaped like drafted ones (each routes one action type,
protocol and file type above a size), pipeline and raw. Target: 200 modules cost at most
twice what 10 cost through the pipeline.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, summarize, table, write_result  # noqa: E402

from policyctl.decide import Pipeline  # noqa: E402
from policyctl.engine import compile_policy_set, with_meta  # noqa: E402
from policyctl.repo import Snapshot, worktree_snapshot  # noqa: E402

ACTION_TYPES = ["file_share", "upload", "download", "sync", "backup", "export", "import", "replicate", "archive", "publish"]
PROTOCOLS = ["smb", "nfs", "sftp", "s3"]
FILE_TYPES = ["parquet", "csv", "json", "orc", "avro"]
ROLES = ["etl", "deploy", "backup", "reporting", "monitor"]


def drafted_module(i: int) -> tuple[str, str]:
    t, p, f = ACTION_TYPES[i // 20 % 10], PROTOCOLS[i // 5 % 4], FILE_TYPES[i % 5]
    name = f"drafted_{i:03d}"
    alt = "sftp" if p != "sftp" else "s3"
    text = f'''# METADATA
# title: Route {f} {t} off {p}
# description: drafted-shaped benchmark rule
# custom:
#   cluster: bench-{i:03d}
#   mode: enforce
package agentgov.rules.{name}

import rego.v1

decisions contains {{
\t"id": "route_{f}_{t}_off_{p}",
\t"action": "route",
\t"params": {{"action": {{"protocol": "{alt}"}}}},
\t"message": "{f} {t} over {p} fails above {1000 * (i % 7)} bytes; use {alt}",
}} if {{
\tinput.kind == "action"
\tinput.action.type == "{t}"
\tinput.action.protocol == "{p}"
\tinput.action.file_type == "{f}"
\tinput.action.size_bytes > {1000 * (i % 7)}
\tsome agent in input.agents
\tagent.role != "admin"
}}
'''
    return f"policies/rules/{name}.rego", text


def policy_snapshot(n_drafted: int) -> Snapshot:
    base = worktree_snapshot(PROJECT)
    files = {p: b for p, b in base.files.items() if p.startswith("policies/")}
    for i in range(n_drafted):
        path, text = drafted_module(i)
        files[path] = text.encode()
    return Snapshot(revision=f"bench-{n_drafted}", files=files)


def make_inputs(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        agents = [{"id": f"{r}-{rng.randint(1, 40)}", "role": r, "priority": rng.randint(0, 10)}
                  for r in rng.sample(ROLES, rng.choice([1, 2, 3]))]
        if rng.random() < 0.75:
            out.append({"kind": "action", "agents": agents[:1],
                        "action": {"type": rng.choice(ACTION_TYPES), "protocol": rng.choice(PROTOCOLS),
                                   "file_type": rng.choice(FILE_TYPES), "size_bytes": rng.randint(0, 10_000)},
                        "resource": {"kind": "share", "id": f"fs-{i % 9}"}, "context": {"trace": f"t{i}"}})
        else:
            if len(agents) < 2:
                agents.append({"id": f"deploy-{rng.randint(41, 80)}", "role": "deploy", "priority": rng.randint(0, 10)})
            out.append({"kind": "conflict", "agents": agents,
                        "resource": {"kind": rng.choice(["port", "lock"]), "port": rng.choice([22, 80, 443, 5432])}})
    return out


def raw_bundle(snapshot: Snapshot) -> Any:
    from regopy import Interpreter, LogLevel

    ps = compile_policy_set(snapshot)
    b = Interpreter()
    b.log_level = LogLevel.NONE
    for m in ps.modules:
        b.add_module(m.file, m.text)
    b.add_data(with_meta(ps.data, ps.modules))
    return b.build("x = data.agentgov.main.decision", ["agentgov/main/decision"])


def time_raw(bundle: Any, inputs: list[dict[str, Any]]) -> list[float]:
    from regopy import Interpreter, LogLevel

    runner = Interpreter()
    runner.log_level = LogLevel.NONE
    runner.strict_built_in_errors = True
    samples = []
    for inp in inputs:
        t = time.perf_counter()
        runner.set_input(inp)
        out = runner.query_bundle(bundle)
        out[0]  # noqa: B018 - the parsed result, as a caller would read it
        samples.append(time.perf_counter() - t)
    return samples


def warm(pipeline: Pipeline, inputs: list[dict[str, Any]]) -> float:
    """Compile the index's programs for every key these inputs reach; return the seconds it took."""
    t = time.perf_counter()
    for inp in inputs:
        pipeline.policies.program_for(inp)
    return time.perf_counter() - t


def time_pipeline(pipeline: Pipeline, inputs: list[dict[str, Any]]) -> list[float]:
    samples = []
    for inp in inputs:
        t = time.perf_counter()
        pipeline.decide_dict(inp)
        samples.append(time.perf_counter() - t)
    return samples


def best(fn: Any, repeat: int) -> list[float]:
    runs = [fn() for _ in range(repeat)]
    return min(runs, key=sum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inputs = make_inputs(args.inputs)

    snap = policy_snapshot(10)
    bundle = raw_bundle(snap)
    pipeline = Pipeline(compile_policy_set(snap))
    warm(pipeline, inputs)
    # the same pipeline with the rule index off: one program of every module, as raw has
    flat = Pipeline(compile_policy_set(snap))
    flat.policies.index_paths = ()
    # interleave the runs so drift on a shared machine hits all alike
    raw_runs, pipe_runs, flat_runs = [], [], []
    for _ in range(args.repeat):
        raw_runs.append(time_raw(bundle, inputs))
        pipe_runs.append(time_pipeline(pipeline, inputs))
        flat_runs.append(time_pipeline(flat, inputs))
    raw, pipe, flat_t = min(raw_runs, key=sum), min(pipe_runs, key=sum), min(flat_runs, key=sum)
    raw_s, pipe_s, flat_s = summarize(raw), summarize(pipe), summarize(flat_t)
    ratio = sum(pipe) / sum(raw)
    overhead = sum(flat_t) / sum(raw)
    part1 = {"policy_set": "repository policies + 10 drafted-shaped modules", "inputs": len(inputs),
             "raw_query_bundle": {**raw_s, "decisions_per_s": round(len(inputs) / sum(raw))},
             "pipeline": {**pipe_s, "decisions_per_s": round(len(inputs) / sum(pipe))},
             "pipeline_without_index": {**flat_s, "decisions_per_s": round(len(inputs) / sum(flat_t))},
             "pipeline_over_raw": round(ratio, 3), "pipeline_without_index_over_raw": round(overhead, 3),
             "target": "<= 1.5", "met": ratio <= 1.5 and overhead <= 1.5}
    print("Part 1: full pipeline vs raw regopy query_bundle, same policy set, same inputs")
    print(table([["raw query_bundle", raw_s["mean_us"], raw_s["p50_us"], raw_s["p99_us"], part1["raw_query_bundle"]["decisions_per_s"]],
                 ["decide pipeline", pipe_s["mean_us"], pipe_s["p50_us"], pipe_s["p99_us"], part1["pipeline"]["decisions_per_s"]],
                 ["decide pipeline, index off", flat_s["mean_us"], flat_s["p50_us"], flat_s["p99_us"],
                  part1["pipeline_without_index"]["decisions_per_s"]]],
                ["path", "mean µs", "p50 µs", "p99 µs", "decisions/s"]))
    print(f"pipeline / raw = {ratio:.2f}; with the index off {overhead:.2f} (target <= 1.5)\n")

    sizes = {}
    scale_inputs = inputs[: min(len(inputs), 3000)]
    for n in (10, 50, 200):
        snap = policy_snapshot(n)
        t = time.perf_counter()
        pipeline = Pipeline(compile_policy_set(snap))
        compile_s = time.perf_counter() - t
        warm_s = warm(pipeline, scale_inputs)
        pipe = best(lambda p=pipeline: time_pipeline(p, scale_inputs), args.repeat)
        unindexed = raw_bundle(snap)
        raw = best(lambda b=unindexed: time_raw(b, scale_inputs), 1)
        sizes[n] = {"pipeline": summarize(pipe), "raw_unindexed": summarize(raw),
                    "pipeline_mean_us": round(sum(pipe) / len(pipe) * 1e6, 1),
                    "raw_mean_us": round(sum(raw) / len(raw) * 1e6, 1),
                    "compile_s": round(compile_s, 3), "index_programs": len(pipeline.policies._programs),
                    "index_warm_s": round(warm_s, 3)}
    growth = sizes[200]["pipeline_mean_us"] / sizes[10]["pipeline_mean_us"]
    raw_growth = sizes[200]["raw_mean_us"] / sizes[10]["raw_mean_us"]
    print("Part 2: cost by number of drafted-shaped rule modules")
    print(table([[n, s["pipeline_mean_us"], s["pipeline"]["p99_us"], s["raw_mean_us"], s["compile_s"],
                  s["index_programs"], s["index_warm_s"]] for n, s in sizes.items()],
                ["modules", "pipeline mean µs", "pipeline p99 µs", "raw (no index) mean µs", "compile s",
                 "index programs", "programs compile s"]))
    print(f"200 / 10 modules: pipeline {growth:.2f}x (target <= 2), raw without the index {raw_growth:.2f}x")
    path = write_result("engine", {"part1": part1, "part2": {"by_modules": sizes, "growth_200_over_10": round(growth, 3),
                                                             "raw_growth_200_over_10": round(raw_growth, 3),
                                                             "target": "<= 2", "met": growth <= 2}})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
