"""The gateway's worker IPC, option by option: what each costs per decision, measured on a real worker process.

    python bench/ipc.py [--requests 4000]

Issue 15 asks to measure the ways to cut the IPC cost before choosing. Each option runs
the same 200 inputs of bench/gateway.py through a worker process that holds the same
revision and evaluates with the same `policyctl.gateway.evaluator.handle`, over
`policyctl.workers` frames on pipes, one request in flight at a time (as the gateway
does), and reports wall time and CPU (parent + worker) per decision:

- `dict frame` (what the gateway sent before this change and still sends): the parent
  serialises {"op", "rev", "input"} with orjson, the worker parses it, decides, serialises
  the reply, the parent parses it.
- `spliced body`: the parent splices the request's own bytes into the frame instead of
  serialising the parsed input again (one serialisation instead of two).
- `batched N`: N decisions per frame and per reply (only possible when N requests wait for
  the same worker at once).
- `pickle`: the same frames with pickle instead of JSON (a "faster format"); the parent may
  never unpickle what a worker sends (workers run hostile override scripts), so this is
  measured for completeness, not as a candidate.
- `threads`: two threads deciding in one process against one thread, which would only help
  if the engine released the GIL.

The baseline, in the same run, is `Pipeline.decide_dict` in-process: the decision itself.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile, table, write_result  # noqa: E402
from gateway import PYTHON, cpu_seconds, sample_inputs, seed_repo  # noqa: E402


def child(repo: str, rev: str) -> int:
    """The worker side: the gateway evaluator's `handle`, plus batches and pickle frames for the comparison."""
    from policyctl.gateway.evaluator import Evaluator, handle
    from policyctl.workers.child import say_hello, take_pipes
    from policyctl.workers.frames import read_frame, write_frame

    in_fd, out_fd = take_pipes(keep_stderr=True)
    stdin = os.fdopen(in_fd, "rb")
    evaluator = Evaluator()
    evaluator.load(rev, repo)
    say_hello(out_fd)
    while True:
        frame = read_frame(stdin, 64 << 20)
        if frame is None:
            return 0
        if frame[:1] == b"P":  # pickle
            message = pickle.loads(frame[1:])  # noqa: S301 - the bench's own parent, never a worker's output
            write_frame(out_fd, b"P" + pickle.dumps(handle(evaluator, message["op"], message)))
            continue
        message = orjson.loads(frame)
        if message["op"] == "decide_many":
            replies = [evaluator.decide(message["rev"], x) for x in message["inputs"]]
            write_frame(out_fd, orjson.dumps({"ok": True, "replies": replies}))
        else:
            write_frame(out_fd, orjson.dumps(handle(evaluator, message["op"], message)))


def measure(worker: Any, frames: list[bytes], per_frame: int, decode: Any) -> dict[str, float]:
    """Send each frame and wait for its reply; wall and CPU per decision."""
    far = time.monotonic() + 600
    walls: list[float] = []
    cpu0 = os.times()
    w0 = cpu_seconds(worker.pid)
    start = time.perf_counter()
    for frame in frames:
        t = time.perf_counter()
        worker.send(frame, far)
        decode(worker.receive(far))
        walls.append((time.perf_counter() - t) / per_frame)
    elapsed = time.perf_counter() - start
    cpu1 = os.times()
    n = len(frames) * per_frame
    parent = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / n
    workers = (cpu_seconds(worker.pid) - w0) / n
    return {"wall_us": round(elapsed / n * 1e6, 1), "p99_us": round(percentile(walls, 99) * 1e6, 1),
            "cpu_parent_us": round(parent * 1e6, 1), "cpu_worker_us": round(workers * 1e6, 1),
            "cpu_total_us": round((parent + workers) * 1e6, 1)}


def threads_speedup(pipeline: Any, inputs: list[dict[str, Any]], rounds: int = 10) -> dict[str, float]:
    def run() -> None:
        for _ in range(rounds):
            for x in inputs:
                pipeline.decide_dict(x)

    t = time.perf_counter()
    run()
    one = len(inputs) * rounds / (time.perf_counter() - t)
    pair = [threading.Thread(target=run) for _ in range(2)]
    t = time.perf_counter()
    for th in pair:
        th.start()
    for th in pair:
        th.join()
    two = 2 * len(inputs) * rounds / (time.perf_counter() - t)
    return {"one_thread_per_s": round(one), "two_threads_per_s": round(two), "speedup": round(two / one, 2)}


def serialisation_us(rev: str, inputs: list[dict[str, Any]], bodies: list[bytes], rounds: int = 20) -> dict[str, float]:
    """Parent-side cost of building a frame: serialising the parsed input again vs splicing the body's bytes."""
    head = b'{"op":"decide","rev":"' + rev.encode() + b'","body":'
    t = time.perf_counter()
    for _ in range(rounds):
        for x in inputs:
            orjson.dumps({"op": "decide", "rev": rev, "input": x})
    dumped = (time.perf_counter() - t) / (rounds * len(inputs))
    t = time.perf_counter()
    for _ in range(rounds):
        for b in bodies:
            head + b + b"}"
    spliced = (time.perf_counter() - t) / (rounds * len(bodies))
    return {"dumps_us": round(dumped * 1e6, 2), "splice_us": round(spliced * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("REPO", "REV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    from policyctl.decide import build_revision
    from policyctl.repo import snapshot
    from policyctl.workers.frames import encode
    from policyctl.workers.sync import Child

    with tempfile.TemporaryDirectory(prefix="policyctl-bench-ipc-") as tmp:
        repo = seed_repo(Path(tmp))
        snap = snapshot(repo, "HEAD")
        rev = str(snap.revision)
        inputs = sample_inputs()
        bodies = [orjson.dumps({"input": x}) for x in inputs]
        pipeline = build_revision(snap, verify=False).pipeline
        for x in inputs:
            pipeline.decide_dict(x)
        t = time.perf_counter()
        for i in range(args.requests):
            pipeline.decide_dict(inputs[i % len(inputs)])
        in_process = (time.perf_counter() - t) / args.requests * 1e6

        worker = Child.spawn([PYTHON, str(Path(__file__).resolve()), "--child", str(repo), rev], max_frame=64 << 20,
                             timeout_s=120)
        try:
            n = args.requests
            pick = [inputs[i % len(inputs)] for i in range(n)]
            as_dict = [encode(orjson.dumps({"op": "decide", "rev": rev, "input": x})) for x in pick]
            measure(worker, as_dict[:400], 1, orjson.loads)  # warm both sides
            options: dict[str, dict[str, float]] = {}
            options["dict frame"] = measure(worker, as_dict, 1, orjson.loads)
            for size in (4, 16):
                batches = [encode(orjson.dumps({"op": "decide_many", "rev": rev, "inputs": pick[i:i + size]}))
                           for i in range(0, n - size + 1, size)]
                options[f"batched {size}"] = measure(worker, batches, size, orjson.loads)
            pickled = [encode(b"P" + pickle.dumps({"op": "decide", "rev": rev, "input": x})) for x in pick]
            options["pickle"] = measure(worker, pickled, 1, lambda b: pickle.loads(b[1:]))  # noqa: S301 - bench only
        finally:
            worker.kill()
            worker.reap()
        ser = serialisation_us(rev, inputs, bodies)
        threads = threads_speedup(pipeline, inputs)

    base = options["dict frame"]["cpu_total_us"]
    rows = [[name, o["wall_us"], o["p99_us"], o["cpu_parent_us"], o["cpu_worker_us"], o["cpu_total_us"],
             f"{o['cpu_total_us'] / base:.2f}×"] for name, o in options.items()]
    print(f"in-process Pipeline.decide_dict: {in_process:.1f} µs per decision")
    print(table(rows, ["option", "wall µs/decision", "p99 µs", "CPU parent µs", "CPU worker µs", "CPU total µs",
                       "CPU vs dict frame"]))
    print(f"building a frame on the parent: orjson.dumps of the parsed input {ser['dumps_us']} µs, splicing the "
          f"request's bytes {ser['splice_us']} µs")
    print(f"threads: 1 thread {threads['one_thread_per_s']}/s, 2 threads {threads['two_threads_per_s']}/s "
          f"(×{threads['speedup']}: the engine holds the GIL)")
    if not args.no_write:
        path = write_result("ipc", {"requests": args.requests, "in_process_decide_us": round(in_process, 1),
                                    "options": options, "frame_building": ser, "threads": threads})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
