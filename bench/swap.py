"""Hot swap under load: 300 requests/s for 60 s while a commit lands on main every 2 s, some of them broken.

    python bench/swap.py [--rate 300] [--duration 60] [--every 2]

The commits cycle through: a good change (parquet routed to another protocol, fixtures
updated), a policy that does not compile, a good change, a data change that breaks a
fixture, a good change. Checked in the same run:
- no failed request (HTTP errors or fail-closed error decisions);
- no broken commit ever served: every decision names the seed or a commit that built;
- every good commit served; commit-to-serving latency from the moment `git commit`
  returned to the first answer naming the commit (client side), p50/p95/max, and the
  gateway's own figure (the ref file's mtime to the swap); target p95 under 1 s;
- the decision log: its records equal the decisions answered (after SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, percentile, table, write_result  # noqa: E402
from gateway import git, open_loop, sample_inputs, seed_repo, start_gateway  # noqa: E402

BROKEN_RULE = """# METADATA
# title: Broken
# custom:
#   mode: enforce
package agentgov.rules.broken

import rego.v1

decisions contains {"id": "x", "action": "deny"} if {
\tinput.kind == "action"
\tx := [1, 2
}
"""
PROTOCOLS = ["nfs", "s3", "sftp", "ftps", "webdav"]
KINDS = ["good", "broken_policy", "good", "broken_fixture", "good"]


def set_route(repo: Path, protocol: str, *, fixtures: bool) -> None:
    (repo / "policies/file_share/data.json").write_text(json.dumps({"routes": {"parquet": {"smb": protocol}}}))
    if fixtures:
        path = repo / "shadow_fixtures/file_share/parquet_smb.jsonl"
        lines = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["expect"].get("action") == "route":
                record["expect"]["params"] = {"action": {"protocol": protocol}}
            lines.append(json.dumps(record))
        path.write_text("\n".join(lines) + "\n")


class Committer(threading.Thread):
    """Lands one commit on main every `every` seconds; remembers what each one was and when it landed."""

    def __init__(self, repo: Path, every: float, until: float) -> None:
        super().__init__(daemon=True)
        self.repo = repo
        self.every = every
        self.until = until
        self.commits: list[dict[str, Any]] = []
        self.error: str | None = None

    def run(self) -> None:
        broken = self.repo / "policies/rules/broken.rego"
        protocol = "sftp"
        n = 0
        next_at = time.monotonic() + self.every
        try:
            while next_at < self.until:
                time.sleep(max(0.0, next_at - time.monotonic()))
                kind = KINDS[n % len(KINDS)]
                if broken.exists():
                    broken.unlink()
                if kind == "good":
                    protocol = PROTOCOLS[(PROTOCOLS.index(protocol) + 1) % len(PROTOCOLS)]
                    set_route(self.repo, protocol, fixtures=True)
                elif kind == "broken_policy":
                    broken.parent.mkdir(parents=True, exist_ok=True)
                    broken.write_text(BROKEN_RULE)
                else:  # broken_fixture: the data moves, the fixtures do not
                    other = PROTOCOLS[(PROTOCOLS.index(protocol) + 2) % len(PROTOCOLS)]
                    set_route(self.repo, other, fixtures=False)
                git(self.repo, "add", "-A")
                git(self.repo, "commit", "-q", "-m", f"{kind} #{n}")
                landed = time.monotonic()
                sha = git(self.repo, "rev-parse", "HEAD")
                self.commits.append({"n": n, "sha": sha, "kind": kind, "ok": kind == "good", "landed": landed})
                if kind != "good":
                    set_route(self.repo, protocol, fixtures=True)  # the next commit starts from the good state
                n += 1
                next_at += self.every
        except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
            self.error = f"{type(exc).__name__}: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="policyctl-bench-swap-") as tmp:
        root = Path(tmp)
        repo = seed_repo(root)
        seed = git(repo, "rev-parse", "HEAD")
        log_dir = root / "log"
        gw = start_gateway(repo, "--workers", str(args.workers), "--log-dir", str(log_dir), workdir=root)
        bodies = [orjson.dumps({"input": x}) for x in sample_inputs()]
        answers: list[tuple[float, str | None, str | None]] = []

        def on_answer(intended: float, done: float, status: int, body: bytes) -> None:
            if status == 200:
                decision = orjson.loads(body)
                answers.append((done, decision.get("revision"), decision.get("source")))

        loadavg_before = os.getloadavg()
        committer = Committer(repo, args.every, time.monotonic() + args.duration)
        committer.start()
        result = asyncio.run(open_loop(gw.host, gw.port, args.rate, args.duration, bodies, on_answer=on_answer))
        committer.join(30)
        loadavg_after = os.getloadavg()
        import httpx

        time.sleep(1.5)  # let the last commit land before reading what the gateway says about it
        status = httpx.get(gw.url + "/v1/status", timeout=10).json()
        metrics = httpx.get(gw.url + "/metrics", timeout=10).text
        exit_status = gw.stop()
        log_ids: list[str] = []
        log_lines = 0
        for path in sorted(log_dir.glob("decisions-*.jsonl")):
            for line in path.read_bytes().splitlines():
                record = json.loads(line)
                log_lines += 1
                if "outcome" not in record:
                    log_ids.append(record["id"])

    commits = committer.commits
    good = {seed} | {c["sha"] for c in commits if c["ok"]}
    bad = {c["sha"] for c in commits if not c["ok"]}
    served = {rev for _, rev, _ in answers}
    first_seen: dict[str, float] = {}
    for done, rev, _ in answers:
        if rev is not None and rev not in first_seen:
            first_seen[rev] = done
    latencies = [first_seen[c["sha"]] - c["landed"] for c in commits if c["ok"] and c["sha"] in first_seen]
    never_served = [c["sha"][:12] for c in commits if c["ok"] and c["sha"] not in first_seen]
    error_decisions = sum(1 for _, _, source in answers if source == "error")
    failed_in_status = {f["revision"] for f in status.get("failed_revisions", [])}
    reload_failed = next((float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                          if line.startswith('policyctl_gateway_reloads_total{result="failed"}')), None)
    ms = [x * 1e3 for x in latencies]
    summary = {
        "rate": args.rate, "duration_s": args.duration, "commit_every_s": args.every, "workers": args.workers,
        "requests": result.summary(), "failed_requests": result.errors + error_decisions,
        "commits": {"total": len(commits), "good": len(good) - 1, "broken_policy": sum(c["kind"] == "broken_policy" for c in commits),
                    "broken_fixture": sum(c["kind"] == "broken_fixture" for c in commits)},
        "broken_commits_served": sorted(r[:12] for r in served & bad),
        "decisions_on_unbuilt_revisions": sorted(r[:12] for r in served - good if r),
        "good_commits_never_served": never_served,
        "broken_commits_rejected_by_gateway": int(reload_failed) if reload_failed is not None else None,
        "commit_to_serving_ms": {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p95": round(percentile(ms, 95), 1),
                                 "max": round(max(ms), 1) if ms else None},
        "gateway_commit_to_serving": _histogram(metrics, "policyctl_gateway_commit_to_serving_seconds"),
        "decision_log": {"decisions_answered": result.ok, "decision_records": len(log_ids),
                         "distinct_ids": len(set(log_ids)), "lines": log_lines,
                         "equal": len(set(log_ids)) == len(log_ids) == result.ok},
        "gateway_exit_status": exit_status, "committer_error": committer.error,
        "status_failed_revisions_last_10": sorted(r[:12] for r in failed_in_status),
        "loadavg_before": [round(x, 2) for x in loadavg_before], "loadavg_after": [round(x, 2) for x in loadavg_after],
    }
    req = summary["requests"]
    print(table([[int(args.rate), req["sent"], req["errors"], error_decisions, req["p50_ms"], req["p99_ms"], req["max_ms"]]],
                ["req/s", "sent", "errors", "error decisions", "p50 ms", "p99 ms", "max ms"]))
    c2s = summary["commit_to_serving_ms"]
    print(f"commits: {len(commits)} ({summary['commits']['good']} good, {summary['commits']['broken_policy']} broken policy, "
          f"{summary['commits']['broken_fixture']} broken fixture); gateway rejected {summary['broken_commits_rejected_by_gateway']}")
    print(f"broken commits served: {summary['broken_commits_served'] or 'none'}; decisions on revisions that did not "
          f"build: {summary['decisions_on_unbuilt_revisions'] or 'none'}; good commits never served: {never_served or 'none'}")
    print(f"commit-to-serving (git commit returned -> first answer naming it): p50 {c2s['p50']} ms, "
          f"p95 {c2s['p95']} ms, max {c2s['max']} ms over {c2s['n']} commits (target p95 < 1000 ms)")
    gw_c2s = summary["gateway_commit_to_serving"]
    print(f"gateway's own commit-to-serving (ref mtime -> swap): mean {gw_c2s['mean_ms']} ms over {gw_c2s['count']} swaps")
    dl = summary["decision_log"]
    print(f"decision log: {dl['decision_records']} records for {dl['decisions_answered']} decisions answered "
          f"({'equal' if dl['equal'] else 'NOT EQUAL'}); exit status after SIGTERM {exit_status}")
    print(f"load average before/after: {summary['loadavg_before']} / {summary['loadavg_after']}")
    ok = (summary["failed_requests"] == 0 and not summary["broken_commits_served"]
          and not summary["decisions_on_unbuilt_revisions"] and not never_served and dl["equal"])
    print("all checks passed" if ok else f"CHECKS FAILED; request failures: {req['failures']}")
    summary["checks_passed"] = ok
    summary["target_p95_below_1s_met"] = bool(ms) and percentile(ms, 95) < 1000
    if not args.no_write:
        path = write_result("swap", summary)
        print(f"wrote {path.relative_to(PROJECT)}")
    return 0 if ok else 1


def _histogram(metrics: str, name: str) -> dict[str, Any]:
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "_sum "):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count "):
            count = float(line.rsplit(" ", 1)[1])
    return {"count": int(count), "mean_ms": round(total / count * 1e3, 1) if count else None}


if __name__ == "__main__":
    sys.exit(main())
