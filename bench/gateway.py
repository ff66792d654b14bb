"""Gateway latency under open-loop load: 500, 1,000 and 1,500 requests/s on loopback, beside in-process decide.

    python bench/gateway.py [--rates 500,1000,1500] [--duration 15] [--workers 2] [--repeat 3]

The load generator runs in this process and the gateway in another (`policyctl gateway
serve`, as an operator starts it). Requests leave at fixed intervals whatever the
answers do (open loop) over keep-alive connections, and each latency is measured from
the request's INTENDED send time, so a stall is charged to every request it delays
(no coordinated omission). Baseline in the same run: `Pipeline.decide_dict` in-process on
the same inputs, the cost of the decision itself. Target: p99 under 5 ms at 1,500 requests/s,
no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, percentile, table, write_result  # noqa: E402

PYTHON = str(PROJECT / ".venv" / "bin" / "python") if (PROJECT / ".venv" / "bin" / "python").exists() else sys.executable
IDENTITY = ["-c", "user.name=policyctl bench", "-c", "user.email=bench@policyctl.local", "-c", "commit.gpgsign=false"]

# --------------------------------------------------------------------------- fixtures of the run


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def seed_repo(root: Path, name: str = "policies") -> Path:
    """A git repository holding this project's policy set on main."""
    repo = root / name
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures", "overrides"):
        if (PROJECT / top).is_dir():
            shutil.copytree(PROJECT / top, repo / top)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "seed policy set")
    return repo


def sample_inputs(n: int = 200) -> list[dict[str, Any]]:
    """Varied inputs that reach every rule of the seed policy set and the defaults."""
    out: list[dict[str, Any]] = []
    protocols, types = ["smb", "sftp", "nfs"], ["parquet", "csv", "json"]
    for i in range(n):
        if i % 4 == 3:
            port = [22, 80, 5432][i % 3]
            out.append({"kind": "conflict", "resource": {"kind": "port", "port": port, "host": f"h-{i % 7}"},
                        "agents": [{"id": f"deploy-{i % 5}", "role": "deploy", "priority": i % 10},
                                   {"id": f"backup-{i % 3}", "role": "backup", "priority": (i * 7) % 10}]})
        else:
            out.append({"kind": "action", "agents": [{"id": f"etl-{i % 9}", "role": "etl", "priority": i % 10}],
                        "action": {"type": "file_share", "protocol": protocols[i % 3], "file_type": types[(i // 3) % 3],
                                   "size_bytes": 1000 + i * 37},
                        "resource": {"kind": "share", "id": f"fs-{i % 4}"}})
    return out


# --------------------------------------------------------------------------- the gateway process


@dataclass
class RunningGateway:
    proc: subprocess.Popen[bytes]
    url: str
    host: str
    port: int
    stderr_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_gateway(repo: Path, *args: str, workdir: Path, name: str = "gateway", timeout: float = 60) -> RunningGateway:
    """`policyctl gateway serve --port 0 …` in a subprocess; returns once /readyz answers 200."""
    import httpx

    stderr_path = workdir / f"{name}.stderr"
    err = stderr_path.open("wb")
    proc = subprocess.Popen([PYTHON, "-m", "policyctl.cli.main", "gateway", "serve", "--repo", str(repo),
                             "--port", "0", *args], stdout=subprocess.DEVNULL, stderr=err, cwd=workdir,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline and url is None:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited {proc.returncode}: {stderr_path.read_text()[-2000:]}")
        for line in stderr_path.read_text().splitlines():
            if "listening on http://" in line:
                url = line.split("listening on ", 1)[1].split()[0]
        time.sleep(0.05)
    assert url is not None, stderr_path.read_text()
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"the gateway did not get ready: {stderr_path.read_text()[-2000:]}")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return RunningGateway(proc, url, host.strip("[]"), int(port), stderr_path)


# --------------------------------------------------------------------------- open-loop load


@dataclass
class LoadResult:
    rate: float
    duration: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_decisions: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    reconnects: int = 0
    late_sends: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = [x * 1e3 for x in self.latencies]
        lag = [x * 1e3 for x in self.send_lags]
        return {"rate": self.rate, "duration_s": self.duration, "sent": self.sent, "ok": self.ok,
                "errors": self.errors, "error_decisions": self.error_decisions, "statuses": self.statuses,
                "reconnects": self.reconnects,
                "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
                "p99_ms": round(percentile(ms, 99), 3), "p999_ms": round(percentile(ms, 99.9), 3),
                "max_ms": round(max(ms), 3) if ms else None,
                # How late this client itself sent (already inside the latencies above): when it is
                # large, the machine's cores, not the gateway, held the request back.
                "send_lag_p50_ms": round(percentile(lag, 50), 3), "send_lag_p99_ms": round(percentile(lag, 99), 3),
                "failures": self.failures[:10]}


def http_request(host: str, port: int, path: str, body: bytes, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Connections:
    """Keep-alive connections: reuse an idle one, open another when all are busy (never wait)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, reconnected). A stale idle connection is retried once."""
        reconnected = False
        for attempt in range(2):
            # The retry always dials anew: the next idle connection may be just as stale.
            conn = self.idle.pop() if self.idle and attempt == 0 else await self.open()
            reader, writer = conn
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if attempt == 0:
                    reconnected = True
                    continue
                raise
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if b"connection: close" in head.lower():
                writer.close()
            else:
                self.idle.append(conn)
            return status, body, reconnected
        raise ConnectionError("unreachable")

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def open_loop(host: str, port: int, rate: float, duration: float, bodies: list[bytes], *,
                    path: str = "/v1/decide", token: str | None = None, warm_connections: int = 16,
                    on_answer: Callable[[float, float, int, bytes], None] | None = None) -> LoadResult:
    """Send `rate` requests/s for `duration` s; latency of each from its intended send time."""
    loop = asyncio.get_running_loop()
    pool = Connections(host, port)
    for _ in range(warm_connections):
        pool.idle.append(await pool.open())
    requests = [http_request(host, port, path, b, token) for b in bodies]
    result = LoadResult(rate, duration)
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: float) -> None:
        result.send_lags.append(loop.time() - intended)
        try:
            status, body, reconnected = await pool.exchange(requests[i % len(requests)])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors += 1
            result.failures.append(f"{type(exc).__name__}: {exc}")
            return
        done = loop.time()
        result.reconnects += reconnected
        result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
        if status != 200:
            result.errors += 1
            result.failures.append(f"HTTP {status}: {body[:200]!r}")
        else:
            result.ok += 1
            if b'"source":"error"' in body:
                result.error_decisions += 1
        result.latencies.append(done - intended)
        if on_answer is not None:
            on_answer(intended, done, status, body)

    # The client's own garbage collections would show up as server latency: none while measuring.
    gc.collect()
    gc.disable()
    start = loop.time() + 0.05
    interval = 1.0 / rate
    i = 0
    while i < total:
        now = loop.time()
        # Send everything whose time has come; sleep only until the next one is due.
        while i < total and start + i * interval <= now:
            intended = start + i * interval
            task = asyncio.create_task(one(i, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
    result.sent = total
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    gc.enable()
    pool.close()
    return result


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                continue
    return out


def cpu_snapshot(pid: int) -> tuple[float, float, float]:
    """CPU seconds of the gateway process, of its workers, and of this (client) process."""
    usage = os.times()
    return cpu_seconds(pid), sum(cpu_seconds(c) for c in children(pid)), usage.user + usage.system


# --------------------------------------------------------------------------- baseline


def in_process_cost(repo: Path, inputs: list[dict[str, Any]], rounds: int = 5) -> dict[str, float]:
    """The decision itself, in this process: Pipeline.decide_dict over the same inputs."""
    from policyctl.decide import build_revision
    from policyctl.repo import snapshot

    pipeline = build_revision(snapshot(repo, "HEAD"), verify=False).pipeline
    for input in inputs:
        pipeline.decide_dict(input)  # compile the programs these inputs need, as the gateway has
    samples: list[float] = []
    for _ in range(rounds):
        for input in inputs:
            t = time.perf_counter()
            pipeline.decide_dict(input)
            samples.append(time.perf_counter() - t)
    ms = [s * 1e3 for s in samples]
    return {"p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
            "max_ms": round(max(ms), 3), "n": len(ms)}


TARGET_RATE = 1500.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,1000,1500")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at each rate before measuring")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per rate; the table shows each, the target must hold in every one")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/gateway.json")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    with tempfile.TemporaryDirectory(prefix="policyctl-bench-gw-") as tmp:
        root = Path(tmp)
        repo = seed_repo(root)
        inputs = sample_inputs()
        bodies = [orjson.dumps({"input": x}) for x in inputs]
        baseline = in_process_cost(repo, inputs)
        gw = start_gateway(repo, "--workers", str(args.workers), "--log-dir", str(root / "log"), workdir=root)
        rows: list[list[Any]] = []
        results: list[dict[str, Any]] = []
        try:
            for rate in rates:
                for run in range(1, args.repeat + 1):
                    asyncio.run(open_loop(gw.host, gw.port, rate, args.warmup, bodies))
                    before = cpu_snapshot(gw.proc.pid)
                    load_before = os.getloadavg()[0]
                    res = asyncio.run(open_loop(gw.host, gw.port, rate, args.duration, bodies))
                    after = cpu_snapshot(gw.proc.pid)
                    s = res.summary()
                    n = max(res.sent, 1)
                    s["run"] = run
                    s["cpu_ms_per_request"] = {"gateway": round((after[0] - before[0]) / n * 1e3, 3),
                                               "workers": round((after[1] - before[1]) / n * 1e3, 3),
                                               "client": round((after[2] - before[2]) / n * 1e3, 3)}
                    s["loadavg_1m_before"] = round(load_before, 2)
                    s["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
                    results.append(s)
                    cpu = s["cpu_ms_per_request"]
                    rows.append([int(rate), run, s["sent"], s["errors"], s["error_decisions"], s["p50_ms"],
                                 s["p99_ms"], s["p999_ms"], s["max_ms"], s["send_lag_p99_ms"],
                                 f"{cpu['gateway']}+{cpu['workers']}+{cpu['client']}",
                                 f"{s['loadavg_1m_before']}/{s['loadavg_1m_after']}"])
        finally:
            code = gw.stop()
        lines = sum(1 for f in (root / "log").glob("*.jsonl") for _ in f.open("rb"))
    print(f"in-process Pipeline.decide_dict: p50 {baseline['p50_ms']} ms, p99 {baseline['p99_ms']} ms, "
          f"max {baseline['max_ms']} ms ({baseline['n']} decisions)")
    print(table(rows, ["req/s", "run", "sent", "errors", "error decisions", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
                       "client send lag p99 ms", "CPU ms/req (gateway+workers+client)", "loadavg before/after"]))
    at_target = [r for r in results if r["rate"] == TARGET_RATE]
    verdict = None
    if at_target:
        worst = max(at_target, key=lambda r: (r["errors"], r["p99_ms"]))
        verdict = all(r["p99_ms"] < 5 and r["errors"] == 0 for r in at_target)
        print(f"target p99 < 5 ms at {TARGET_RATE:.0f} req/s with no errors, in every one of {len(at_target)} runs: "
              f"{'met' if verdict else 'NOT met'} (p99 {', '.join(str(r['p99_ms']) for r in at_target)} ms; "
              f"worst run {worst['errors']} errors)")
    print(f"gateway exit status after SIGTERM: {code}; decision-log lines: {lines}")
    if not args.no_write:
        path = write_result("gateway", {
            "method": "open loop, fixed rate, latency from the intended send time, keep-alive connections, "
                      "client in a separate process on the same 2-core machine",
            "workers": args.workers, "warmup_s": args.warmup, "repeat": args.repeat, "in_process_decide": baseline,
            "rates": results,
            # uvicorn parses HTTP with httptools when it is importable, else with the pure-Python h11.
            "http_parser": "httptools" if importlib.util.find_spec("httptools") else "h11",
            "target": {"p99_ms_below": 5, "at_rate": TARGET_RATE, "met": verdict},
            "decision_log_lines": lines, "exit_status": code})
        print(f"wrote {path.relative_to(PROJECT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
