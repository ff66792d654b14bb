"""End-to-end clustering cost at 100k, 300k and 1M events, model load included.

    python bench/cluster_scale.py [--sizes 100000 300000 1000000] [--embedder minilm]

The demo world is simulated once (100,000 events through a policy set with no rules),
then tiled with fresh event ids to each size: simulating a million events would spend
minutes in policy decisions that are not what this measures. Each size is one run of
`policyctl cluster LOG -o clusters.json` in a fresh process (read, mine, embed,
cluster, write), timed from the outside; peak memory is the largest process's RSS
(the CLI or its embedding process). Target at 1M: <= 60 s and < 2 GiB on 2 cores.
A baseline in the same run: reading the same file with orjson alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402
from cluster_quality import bare_repo  # noqa: E402


def tile(source: Path, target: Path, n: int) -> None:
    lines = source.read_bytes().splitlines()
    with target.open("wb") as out:
        for i in range(n):
            record = orjson.loads(lines[i % len(lines)])
            record["id"] = f"{record['id']}-{i // len(lines)}"
            out.write(orjson.dumps(record) + b"\n")


def read_only(path: Path) -> float:
    t = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--embedder", default="minilm")
    args = parser.parse_args()
    from policyctl.model.cluster import ClusterReport

    exe = str(Path(sys.executable).parent / "policyctl")
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = bare_repo(root)
        base = root / "base.jsonl"
        subprocess.run([exe, "simulate", "--world", "demo", "--events", "100000", "--seed", "7", "--repo", str(repo),
                        "-o", str(base)], check=True, capture_output=True)
        for n in args.sizes:
            log = root / f"events-{n}.jsonl"
            tile(base, log, n)
            baseline = read_only(log)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t = time.perf_counter()
            done = subprocess.run([exe, "cluster", str(log), "--embedder", args.embedder, "-o", str(root / "c.json")],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if done.returncode != 0:
                print(done.stderr)
                return 1
            doc = ClusterReport.from_dict(json.loads((root / "c.json").read_text()), where="c.json")
            peak_mib = max(peak, before) / 1024
            runs.append({"events": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
                         "peak_rss_mib": round(peak_mib), "read_only_seconds": round(baseline, 2),
                         "failures": doc.totals.failures, "systemic_clusters": doc.totals.systemic_clusters,
                         "log_mib": round(log.stat().st_size / 2**20)})
            rows.append([f"{n:,}", f"{seconds:.1f}", f"{n / seconds:,.0f}", f"{peak_mib:.0f}", f"{baseline:.1f}",
                         doc.totals.systemic_clusters])
            log.unlink()
    print(table(rows, ["events", "seconds", "events/s", "peak RSS MiB", "orjson read-only s", "systemic clusters"]))
    last = runs[-1]
    met = last["events"] >= 1_000_000 and last["seconds"] <= 60 and last["peak_rss_mib"] < 2048
    path = write_result("cluster_scale", {"embedder": args.embedder, "runs": runs,
                                          "target": "1M events <= 60 s, peak < 2 GiB", "met": met,
                                          "note": "peak RSS is the largest single process (ru_maxrss of children)"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
