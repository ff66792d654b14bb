"""Replicas: two gateways following one bare repository with --remote serve each pushed commit within poll + 1 s.

    python bench/replicas.py [--poll 1] [--pushes 10] [--every 3]

A developer clone pushes a commit to a bare repository every few seconds; two gateways,
each with its own replica repository, fetch it (`--remote BARE --poll P`) and hot-swap.
For each push and each gateway: the time from `git push` returning to /v1/status naming
the commit as active (polled every 20 ms). Target: every one within P + 1 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, percentile, table, write_result  # noqa: E402
from gateway import git, seed_repo, start_gateway  # noqa: E402
from swap import set_route  # noqa: E402

PROTOCOLS = ["nfs", "s3", "sftp", "ftps"]


def push_route(repo: Path, bare: Path, n: int) -> str:
    protocol = PROTOCOLS[n % len(PROTOCOLS)]
    set_route(repo, protocol, fixtures=True)
    git(repo, "commit", "-qam", f"route parquet to {protocol} (#{n})")
    git(repo, "push", "-q", str(bare), "main")
    return git(repo, "rev-parse", "HEAD")


def wait_serving(url: str, commit: str, since: float, limit: float, out: dict[str, float]) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() - since < limit:
            if (client.get("/v1/status").json().get("active") or {}).get("revision") == commit:
                out[url] = time.monotonic() - since
                return
            time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="policyctl-bench-replicas-") as tmp:
        root = Path(tmp)
        origin = seed_repo(root, "developer")
        bare = root / "policies.git"
        git(root, "clone", "-q", "--bare", str(origin), str(bare))
        gateways = [start_gateway(root / f"replica{i}", "--remote", str(bare), "--poll", str(args.poll),
                                  "--workers", "1", workdir=root, name=f"replica{i}") for i in (1, 2)]
        rows: list[dict[str, Any]] = []
        try:
            for n in range(args.pushes):
                commit = push_route(origin, bare, n)
                pushed = time.monotonic()
                seen: dict[str, float] = {}
                threads = [threading.Thread(target=wait_serving, args=(gw.url, commit, pushed, args.poll + 10, seen))
                           for gw in gateways]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                rows.append({"commit": commit[:12], **{f"replica{i + 1}_s": round(seen[g.url], 3) if g.url in seen
                                                        else None for i, g in enumerate(gateways)}})
                # A random phase against the fetch loop, so the figures cover the whole poll interval.
                time.sleep(max(0.0, args.every + random.uniform(0, args.poll) - (time.monotonic() - pushed)))
        finally:
            codes = [gw.stop() for gw in gateways]
    limit = args.poll + 1.0
    values = [v for r in rows for k, v in r.items() if k.endswith("_s")]
    missed = [v for v in values if v is None or v > limit]
    print(table([[r["commit"], r["replica1_s"], r["replica2_s"]] for r in rows], ["commit", "replica 1 s", "replica 2 s"]))
    served = [v for v in values if v is not None]
    print(f"push -> serving on both replicas: p50 {percentile(served, 50):.3f} s, max {max(served):.3f} s; "
          f"limit poll + 1 s = {limit:.1f} s: {'met' if not missed else f'MISSED {len(missed)} times'}")
    if not args.no_write:
        path = write_result("replicas", {"poll_s": args.poll, "pushes": args.pushes, "limit_s": limit,
                                         "push_to_serving_s": {"p50": round(percentile(served, 50), 3),
                                                               "max": round(max(served), 3)},
                                         "met": not missed, "rows": rows, "exit_status": codes})
        print(f"wrote {path.relative_to(PROJECT)}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
