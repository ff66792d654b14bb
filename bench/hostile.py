"""The gateway under hostile commits and overload, on loopback, bounded in time.

    python bench/hostile.py [--only spin,memory,overload]

1. spin: one, then two overrides that spin on every input but their own fixture's (they pass
   the build) are committed; 50 req/s for 20 s. Target: >= 99% of requests answered within
   their deadline (1 s here, the client's), and the overrides shown quarantined in /v1/status.
2. memory: 1,000 inputs of 250 KB (just under the 256 KiB input limit; 400 KB is refused
   with 413) at 50 req/s. Target: the main process's RSS ends within 50 MB of its start.
3. overload: a policy whose evaluation of one input kind takes ~20 ms, one worker (about 50
   decisions/s), offered 3x that for 15 s by clients that give up after 2 s (and say so in
   X-Request-Timeout). Targets: served requests p99 < 100 ms; no decision logged for a client
   that left; a probe (a fast input) 1 s after the load: p99 < 20 ms.

Each part starts its own gateway (`policyctl gateway serve`, a real process) on a fresh
repository and reports its figures; results in bench/results/hostile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile, table, write_result  # noqa: E402
from gateway import RunningGateway, git, seed_repo, start_gateway  # noqa: E402

SPIN = '''"""Spin on every input but the fixture's (a bug that passes the build)."""
OVERRIDE = {"match": {}, "expires": "2031-06-01T00:00:00Z", "priority": %(priority)d, "timeout_ms": 300}

def decide(input):
    if input.get("context", {}).get("fixture"):
        return None
    n = 0
    while True:
        n += 1
'''
FIXTURE_INPUT = {"kind": "action", "agents": [{"id": "probe"}], "action": {"type": "probe"}, "context": {"fixture": True}}
SLOW_RULE = """# METADATA
# title: Slow
# description: a comprehension that costs ~20 ms, reached only by action type slow
# custom:
#   mode: enforce
package agentgov.rules.slow

import rego.v1

decisions contains {"id": "slow", "action": "deny", "params": {}, "message": "slow"} if {
\tinput.kind == "action"
\tinput.action.type == "slow"
\tcount([x | some x in numbers.range(0, 70000); x > 0]) > 1
}
"""


def action(kind: str = "file_share", **extra: Any) -> dict[str, Any]:
    return {"kind": "action", "agents": [{"id": "etl-1", "role": "etl"}],
            "action": {"type": kind, "protocol": "smb", "file_type": "csv", **extra},
            "resource": {"kind": "share", "id": "fs-1"}}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _post(host: str, port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request on its own connection (a client that gives up closes it, as real ones do)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((f"POST /v1/decide HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                      f"{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
        return int(head[9:12]), await reader.readexactly(length)
    finally:
        writer.close()


async def paced(url: str, rate: float, duration: float, bodies: list[bytes], timeout: float,
                headers: dict[str, str] | None = None) -> list[tuple[float, int, dict[str, Any] | None, bool]]:
    """Open-loop requests at `rate`/s; each (latency from its intended send, status, body, gave_up)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [b'{"input":' + b + b"}" for b in bodies]  # POST /v1/decide takes {"input": …}
    out: list[tuple[float, int, dict[str, Any] | None, bool]] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: float) -> None:
        try:
            body_in = bodies[i % len(bodies)]
            code, raw = await asyncio.wait_for(_post(host, int(port), body_in, headers or {}), timeout)
            body = orjson.loads(raw) if raw[:1] == b"{" else None
            out.append((loop.time() - intended, code, body, False))
        except TimeoutError:
            out.append((loop.time() - intended, 0, None, True))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out.append((loop.time() - intended, -1, None, False))

    total = int(rate * duration)
    for i in range(total):
        intended = start + i / rate
        await asyncio.sleep(max(0.0, intended - loop.time()))
        task = asyncio.create_task(one(i, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)
    return out


def status(gw: RunningGateway) -> dict[str, Any]:
    return dict(httpx.get(gw.url + "/v1/status", timeout=10).json())


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def wait_serving(gw: RunningGateway, rev: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (status(gw).get("active") or {}).get("revision") == rev:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{rev[:12]} not served: {json.dumps(status(gw))[:800]}")


# --------------------------------------------------------------------------- parts


def spin(root: Path) -> dict[str, Any]:
    repo = seed_repo(root / "spin")
    gw = start_gateway(repo, "--poll", "600", "--workers", "2", workdir=root)
    out: dict[str, Any] = {}
    bodies = [orjson.dumps(action()), orjson.dumps(action(protocol="sftp"))]
    try:
        for n in (1, 2):
            name = f"spin_{n}"
            (repo / "overrides").mkdir(exist_ok=True)
            (repo / "overrides" / f"{name}.py").write_text(SPIN % {"priority": n})
            fixtures = repo / "shadow_fixtures" / "overrides"
            fixtures.mkdir(parents=True, exist_ok=True)
            (fixtures / f"{name}.jsonl").write_text(json.dumps(
                {"id": f"{name}-001", "input": FIXTURE_INPUT, "why": "keep", "expect": {"source": "default"}}) + "\n")
            wait_serving(gw, commit(repo, f"a spinning override ({n})"))
            answers = asyncio.run(paced(gw.url, 50, 20, bodies, timeout=1.0))
            within = sum(1 for lat, code, _, gave_up in answers if code == 200 and not gave_up and lat <= 1.0)
            quarantined = [q.get("name") or q.get("override") for q in
                           (status(gw).get("overrides") or {}).get("quarantined", [])]
            lat = [a[0] * 1e3 for a in answers if a[1] == 200]
            codes: dict[str, int] = {}
            for _, code, body, gave_up in answers:
                key = "gave_up" if gave_up else f"{code} {(body or {}).get('code', '')}".strip()
                codes[key] = codes.get(key, 0) + 1
            out[f"{n}_spinning"] = {"requests": len(answers), "statuses": codes, "answered_within_deadline": within,
                                    "pct": round(100 * within / len(answers), 2),
                                    "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
                                    "quarantined": quarantined,
                                    "met": within >= 0.99 * len(answers) and len(quarantined) >= n}
    finally:
        gw.stop()
    return out


def memory(root: Path) -> dict[str, Any]:
    repo = seed_repo(root / "memory")
    gw = start_gateway(repo, "--poll", "600", "--workers", "2", "--log-dir", str(root / "memory-log"), workdir=root)
    try:
        time.sleep(1)
        start = rss_mib(gw.proc.pid)
        pad = "x" * (250_000 - 400)
        bodies = [orjson.dumps(action(note=f"{i}-{pad}")) for i in range(20)]
        assert all(len(b) + 10 < 256 * 1024 for b in bodies)
        peak = start
        answers = asyncio.run(paced(gw.url, 50, 20, bodies, timeout=10))
        peak = max(peak, rss_mib(gw.proc.pid))
        time.sleep(3)  # the writer's flush
        end = rss_mib(gw.proc.pid)
        st = status(gw)
    finally:
        gw.stop()
    ok = sum(1 for a in answers if a[1] == 200)
    return {"requests": len(answers), "answered": ok, "input_bytes": len(bodies[0]),
            "main_rss_mib": {"start": round(start, 1), "after_load": round(peak, 1), "end": round(end, 1)},
            "growth_mib": round(end - start, 1), "decision_log": st.get("decision_log"),
            "met": end - start <= 50 and ok == len(answers)}


def overload(root: Path) -> dict[str, Any]:
    repo = seed_repo(root / "overload")
    rules = repo / "policies" / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "slow.rego").write_text(SLOW_RULE)
    commit(repo, "a slow rule")
    log_dir = root / "overload-log"
    gw = start_gateway(repo, "--poll", "600", "--workers", "1", "--log-dir", str(log_dir), "--log-flush", "0.2",
                       workdir=root)
    try:
        slow = orjson.dumps(action("slow"))
        # capacity, measured: one client in a loop for 3 s
        t = time.perf_counter()
        n = 0
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            while time.perf_counter() - t < 3:
                c.post("/v1/decide", content=b'{"input":' + slow + b"}", headers={"Content-Type": "application/json"})
                n += 1
        capacity = n / (time.perf_counter() - t)
        answers = asyncio.run(paced(gw.url, 3 * capacity, 15, [slow], timeout=2.0,
                                    headers={"X-Request-Timeout": "2"}))
        time.sleep(1)
        fast = orjson.dumps(action())
        probe = []
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for _ in range(50):
                t0 = time.perf_counter()
                c.post("/v1/decide", content=b'{"input":' + fast + b"}", headers={"Content-Type": "application/json"})
                probe.append((time.perf_counter() - t0) * 1e3)
        time.sleep(1.5)  # the log writer's flush
    finally:
        gw.stop()
    served = [a for a in answers if a[1] == 200]
    answered_ids = {a[2]["decision_id"] for a in served if a[2]}
    logged = []
    for f in sorted(log_dir.rglob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            logged.append(rec.get("id"))  # an Event's id is its decision's id
    probe_ids = 50 + n  # the capacity loop's and the probe's decisions are logged too
    unanswered_logged = max(0, len(set(logged) - answered_ids) - probe_ids)
    lat = [a[0] * 1e3 for a in served]
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a[1] if not a[3] else "gave_up")] = statuses.get(str(a[1] if not a[3] else "gave_up"), 0) + 1
    p99 = percentile(lat, 99)
    return {"capacity_per_s": round(capacity, 1), "offered_per_s": round(3 * capacity, 1),
            "requests": len(answers), "statuses": statuses, "served": len(served),
            "served_p50_ms": round(percentile(lat, 50), 2), "served_p99_ms": round(p99, 2),
            "logged_for_clients_that_left": unanswered_logged,
            "probe_p50_ms": round(percentile(probe, 50), 2), "probe_p99_ms": round(percentile(probe, 99), 2),
            "met": p99 < 100 and unanswered_logged == 0 and percentile(probe, 99) < 20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="spin,memory,overload")
    args = parser.parse_args()
    parts = {"spin": spin, "memory": memory, "overload": overload}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="policyctl-hostile-") as tmp:
        for name in args.only.split(","):
            print(f"{name} …", flush=True)
            results[name] = parts[name](Path(tmp))
            print(json.dumps(results[name], indent=1)[:1500], flush=True)
    rows = [[name, "yes" if r.get("met", all(v.get("met") for v in r.values() if isinstance(v, dict))) else "NO"]
            for name, r in results.items()]
    print(table(rows, ["part", "target met"]))
    previous = Path(__file__).resolve().parent / "results" / "hostile.json"
    if previous.exists() and set(results) != set(parts):  # a partial run keeps the other parts' figures
        kept = json.loads(previous.read_text())
        results = {**{k: kept[k] for k in parts if k in kept and k not in results}, **results}
    path = write_result("hostile", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
