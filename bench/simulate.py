"""Simulator cost: N simulated events against the same N decisions alone, measured in one run.

    python bench/simulate.py [--events 100000] [--world demo] [--seed 1] [--repeat 2] [--repo .]

The simulator draws the inputs of the world (the traffic stream does not depend on the
decisions), so the baseline sends exactly those inputs through `Pipeline.decide_dict` of
the same revision, one after the other. The simulated run does everything the command
does: draw the inputs, decide them through the pipeline, roll the faults, render the
messages, and write the event log and its truth sidecar to disk.
Target: simulated / decisions alone <= 1.3.

Cost is the process's CPU time (time.process_time): these machines are shared, and wall
time also counts the time spent waiting for a CPU. Wall times are recorded beside it.
Rounds alternate (decisions, simulation, decisions, …) so that what load remains hits
both sides; the ratio is taken from the best round of each. The baseline's 100,000
inputs are frozen out of the garbage collector's sight (gc.freeze), so that holding them
does not slow the simulated round, which in a real run has no such list. A simulation
with a constant decider (no policy evaluation) shows the simulator's own cost per event.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, table, write_result  # noqa: E402

from policyctl.decide import build_revision  # noqa: E402
from policyctl.repo import snapshot  # noqa: E402
from policyctl.simulate import PipelineDecider, load_world, simulate, traffic  # noqa: E402

TARGET = 1.3


class ConstantDecider:
    """Allows everything without evaluating a policy: the simulator's own cost."""

    revision = None
    label = "constant"

    def decide(self, input: dict[str, Any], now_ms: int, decision_id: str) -> dict[str, Any]:
        return {"decision_id": decision_id, "action": "allow", "source": "default", "revision": None}

    def close(self) -> None:
        pass


class Clock:
    """CPU and wall seconds of one measured stretch."""

    def __enter__(self) -> Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def run_simulation(world: Any, decider: Any, events: int, seed: int, folder: Path) -> tuple[Clock, str, Any]:
    out_path, truth_path = folder / "events.jsonl", folder / "events.truth.jsonl"
    with Clock() as clock, open(out_path, "wb") as out, open(truth_path, "wb") as truth:
        summary = simulate(world, decider, events=events, seed=seed, out=out, truth=truth)
    digest = hashlib.sha256(out_path.read_bytes() + truth_path.read_bytes()).hexdigest()
    return clock, digest, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--world", default="demo")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds of each side")
    parser.add_argument("--repo", default=str(PROJECT), help="policy repository (its HEAD commit is used)")
    args = parser.parse_args()

    world = load_world(args.world)
    revision = build_revision(snapshot(args.repo, "HEAD"), verify=False)
    pipeline = revision.pipeline
    inputs = [planned.input for planned in traffic(world, events=args.events, seed=args.seed)]

    # Warm the rule index: one compiled program per combination of index values the inputs reach.
    keys: dict[Any, dict[str, Any]] = {}
    for input in inputs:
        keys.setdefault(pipeline.policies.key(input), input)
    for input in keys.values():
        pipeline.decide_dict(input)

    gc.collect()
    gc.freeze()
    decide = pipeline.decide_dict
    decisions: list[Clock] = []
    simulated: list[Clock] = []
    digests: set[str] = set()
    summary = None
    with tempfile.TemporaryDirectory(prefix="policyctl-bench-") as tmp:
        folder = Path(tmp)
        for _ in range(args.repeat):
            with Clock() as clock:
                for input in inputs:
                    decide(input)
            decisions.append(clock)
            clock, digest, summary = run_simulation(world, PipelineDecider(pipeline), args.events, args.seed, folder)
            simulated.append(clock)
            digests.add(digest)
        own, _, _ = run_simulation(world, ConstantDecider(), args.events, args.seed, folder)
    assert summary is not None

    n = args.events
    best_d = min(c.cpu for c in decisions)
    best_s = min(c.cpu for c in simulated)
    ratio = best_s / best_d
    wall_ratio = min(c.wall for c in simulated) / min(c.wall for c in decisions)
    rounds = [round(s.cpu / d.cpu, 3) for d, s in zip(decisions, simulated, strict=True)]
    rows = [
        ["decisions alone (Pipeline.decide_dict)", f"{best_d:.2f}", f"{min(c.wall for c in decisions):.2f}",
         f"{best_d / n * 1e6:.0f}", "1.00"],
        ["simulate (decide + faults + write)", f"{best_s:.2f}", f"{min(c.wall for c in simulated):.2f}",
         f"{best_s / n * 1e6:.0f}", f"{ratio:.3f}"],
        ["simulator alone (constant decider)", f"{own.cpu:.2f}", f"{own.wall:.2f}", f"{own.cpu / n * 1e6:.0f}",
         f"{own.cpu / best_d:.3f}"],
    ]
    print(f"world {world.name}, {n} events, seed {args.seed}, revision {(revision.id or 'worktree')[:12]}, "
          f"{len(keys)} index programs, {args.repeat} rounds")
    print(table(rows, ["run", "cpu s", "wall s", "cpu us/event", "x decisions (cpu)"]))
    print(f"cpu ratio per round: {rounds}; wall ratio {wall_ratio:.3f}; target <= {TARGET}: "
          f"{'met' if ratio <= TARGET else 'NOT met'}; failure share {summary.failure_share:.1%}; "
          f"identical output across rounds: {len(digests) == 1}")

    path = write_result("simulate", {
        "reproduce": f"python bench/simulate.py --events {n} --world {args.world} --seed {args.seed} "
                     f"--repeat {args.repeat}",
        "world": world.name, "events": n, "seed": args.seed, "revision": revision.id, "rounds": args.repeat,
        "measure": "process CPU time (wall time beside it)",
        "decisions_alone": {"cpu_s": [round(c.cpu, 3) for c in decisions], "wall_s": [round(c.wall, 3) for c in decisions],
                            "cpu_us_per_event": round(best_d / n * 1e6, 1)},
        "simulated": {"cpu_s": [round(c.cpu, 3) for c in simulated], "wall_s": [round(c.wall, 3) for c in simulated],
                      "cpu_us_per_event": round(best_s / n * 1e6, 1)},
        "simulator_alone": {"cpu_s": round(own.cpu, 3), "wall_s": round(own.wall, 3),
                            "cpu_us_per_event": round(own.cpu / n * 1e6, 1)},
        "cpu_ratio_per_round": rounds,
        "simulated_over_decisions": round(ratio, 3),
        "simulated_over_decisions_wall": round(wall_ratio, 3),
        "target": f"<= {TARGET}", "met": ratio <= TARGET,
        "identical_output_across_rounds": len(digests) == 1,
        "failure_share": round(summary.failure_share, 4),
        "statuses": dict(summary.statuses), "faults": dict(summary.faults), "noise": summary.noise,
    })
    print(f"wrote {path.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()
