"""`policyctl demo`: the whole loop on a generated swarm, in a new directory, with the real commands.

Creates a policy repository from this project's policies, starts the gateway on it,
simulates a day of the demo world through the gateway, lets the bot cluster the failures
and open pull requests (local forge), merges them, waits for the gateway to hot-swap to
the merged revision, simulates the next day through it, and prints, per fault, the
failure rate before and after and the successful traffic newly denied.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from policyctl.errors import PolicyctlError

IDENT = ["-c", "user.name=policyctl demo", "-c", "user.email=demo@policyctl.local", "-c", "commit.gpgsign=false"]


class DemoError(PolicyctlError):
    code = "demo_failed"


def project_root() -> Path:
    """Where the demo's seed policy set is: the source tree, else the copy the wheel ships."""
    from policyctl.scaffold import seed_root

    here = Path(__file__).resolve().parent.parent
    if (here / "policies" / "main.rego").is_file():
        return here
    seed = seed_root()
    if (seed / "policies" / "main.rego").is_file():
        return seed
    raise DemoError(f"cannot find the seed policy set (looked in {here} and {seed}); reinstall policyctl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    out: Path
    events: int = 10_000
    embedder: str = "minilm"
    say: Callable[[str], None] = print
    started: float = field(default_factory=time.perf_counter)
    exe: list[str] = field(default_factory=lambda: [sys.executable, "-m", "policyctl.cli.main"])
    steps: int = 8
    step_no: int = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no}/{self.steps}] {title}  (+{time.perf_counter() - self.started:.0f}s)")

    def run(self, *args: str, quiet: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        self.say(f"  $ policyctl {shown}")
        done = subprocess.run([*self.exe, *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if check and done.returncode != 0:
            raise DemoError(f"`policyctl {shown}` failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")
        if not quiet and done.stdout.strip():
            for line in done.stdout.rstrip().splitlines():
                self.say(f"    {line}")
        return done

    def git(self, repo: Path, *args: str) -> str:
        return subprocess.run(["git", *IDENT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _world_faults() -> list[str]:
    """Every fault the demo world declares, so faults the policies already prevent show as zero rows."""
    try:
        from policyctl.simulate.world import load_world

        return [f.name for f in load_world("demo").faults]
    except Exception:  # noqa: BLE001 - only the table's completeness depends on it
        return []


def truth(log: Path) -> dict[str, str | None]:
    out = {}
    for line in log.with_name(log.name.replace(".jsonl", ".truth.jsonl")).read_text().splitlines():
        r = json.loads(line)
        out[r["id"]] = r["fault"] if not r["noise"] else None
    return out


def statuses(log: Path) -> dict[str, str]:
    return {e["id"]: e["outcome"]["status"] for e in map(json.loads, log.read_text().splitlines())}


def run_demo(out: Path, *, events: int = 10_000, embedder: str = "minilm", keep_running: bool = False,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    demo = Demo(out=out, events=events, embedder=embedder, say=say)
    root = project_root()
    if out.exists() and any(out.iterdir()):
        raise DemoError(f"{out} is not empty; pass a new directory (or remove it)")
    repo, logs = out / "policy-repo", out / "logs"
    logs.mkdir(parents=True)
    repo.mkdir()

    demo.step(f"a policy repository in {repo}, from this project's policies")
    demo.git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "overrides", "shadow_fixtures", "history"):
        if (root / top).is_dir():
            shutil.copytree(root / top, repo / top, ignore=shutil.ignore_patterns("__pycache__"))
    if (root / "policyctl.toml").is_file():  # the vocabulary: which fields a route may change
        shutil.copy(root / "policyctl.toml", repo / "policyctl.toml")
    demo.git(repo, "add", "-A")
    demo.git(repo, "commit", "-qm", "policy set from the policyctl project")
    original = demo.git(repo, "rev-parse", "HEAD")
    demo.run("check", "--repo", str(repo), "--ref", "main", quiet=False)

    demo.step("the gateway, serving main")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gw_log = (out / "gateway.log").open("w")
    shown = f"gateway serve --repo {repo} --port {port} --log-dir {out / 'decision-logs'}"
    say(f"  $ policyctl {shown} &")
    gateway = subprocess.Popen([*demo.exe, *shown.split()], stdout=gw_log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        _wait_ready(url, gateway)
        say(f"    serving {original[:12]} at {url}")
        result = _loop(demo, repo, logs, url, original)
    finally:
        if not keep_running:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gateway.kill()
        gw_log.close()
    result["gateway"] = url if keep_running else None
    (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the gateway exited (code {proc.returncode}); see gateway.log")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the gateway at {url} was not ready within {timeout:.0f}s; see gateway.log")


def _active(url: str) -> str | None:
    try:
        status = httpx.get(f"{url}/v1/status", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    active = status.get("active")
    if isinstance(active, dict):
        return active.get("revision") or active.get("commit")
    return active if isinstance(active, str) else status.get("active_revision")


def _loop(demo: Demo, repo: Path, logs: Path, url: str, original: str) -> dict[str, Any]:
    say, n = demo.say, str(demo.events)
    day1 = logs / "day1.jsonl"
    demo.step(f"a day of the demo world ({n} interactions) through the gateway")
    demo.run("simulate", "--world", "demo", "--events", n, "--seed", "1", "--gateway", url, "-o", str(day1), "-q")
    report = demo.out / "clusters.html"
    demo.step("the bot: cluster the failures, skip what main prevents, draft, verify, open pull requests")
    demo.run("bot", "run", "--repo", str(repo), "--logs", str(day1), "--provider", "local", "--base", "main",
             "--embedder", demo.embedder, "--report", str(demo.out), quiet=False)
    prs = json.loads(demo.run("pr", "list", "--repo", str(repo), "--json").stdout)
    prs = prs if isinstance(prs, list) else prs.get("pulls", [])
    open_prs = [p for p in prs if p.get("state") == "open"]
    if not open_prs:
        raise DemoError("the bot opened no pull request")

    demo.step(f"review and merge the {len(open_prs)} pull requests")
    demo.run("pr", "list", "--repo", str(repo), quiet=False)
    figures = {}
    for pr in open_prs:
        # what the pull request's body reports, recomputed as a reviewer would: the same replay
        shadow = demo.run("shadow", "--repo", str(repo), "--base", "main", "--candidate", str(pr["head"]),
                          "--format", "json", check=False)
        try:
            r = json.loads(shadow.stdout)
        except ValueError as exc:
            raise DemoError(f"policyctl shadow for #{pr['number']} printed no JSON: {shadow.stderr[-500:]}") from exc
        t = r["totals"]
        figures[pr["number"]] = {"verdict": r["verdict"], "prevented": t["prevented"], "failures": t["failures"],
                                 "collateral": t["collateral"], "successes": t["successes"],
                                 "collateral_pct": r["collateral_pct"], "in_region": t["in_region"]}
        say(f"    #{pr['number']} {pr['head']}: {r['verdict']}, {t['prevented']} of {t['failures']} logged failures "
            f"prevented, {t['collateral']} of {t['successes']} successes changed outside the failure region "
            f"({r['collateral_pct']:.2f}%)")
    for pr in open_prs:
        demo.run("pr", "merge", str(pr["number"]), "--repo", str(repo))
    head = demo.git(repo, "rev-parse", "main")

    demo.step(f"the gateway hot-swaps to the merged main ({head[:12]})")
    t = time.perf_counter()
    deadline = time.monotonic() + 60
    while _active(url) != head:
        if time.monotonic() > deadline:
            raise DemoError(f"the gateway did not serve {head[:12]} within 60s (active: {_active(url)})")
        time.sleep(0.1)
    say(f"    live {time.perf_counter() - t:.2f}s after the last merge, without a restart")

    day2 = logs / "day2.jsonl"
    demo.step(f"the next day ({n} interactions, new seed) through the gateway")
    demo.run("simulate", "--world", "demo", "--events", n, "--seed", "2", "--gateway", url, "-o", str(day2), "-q")
    without = logs / "day2-without-the-new-rules.jsonl"
    demo.step("the same day through the policies before the merge, to count what the new rules changed")
    demo.run("simulate", "--world", "demo", "--events", n, "--seed", "2", "--repo", str(repo), "--ref", original,
             "-o", str(without), "-q")
    result = _results(demo, day1, day2, without, report, repo, open_prs)
    result["pull_request_figures"] = figures
    return result


def _results(demo: Demo, day1: Path, day2: Path, without: Path, report: Path, repo: Path,
             prs: list[dict[str, Any]]) -> dict[str, Any]:
    t1, t2, tw = truth(day1), truth(day2), truth(without)
    s2, sw = statuses(day2), statuses(without)
    faults = sorted({f for f in (*t1.values(), *tw.values()) if f} | set(_world_faults()))
    rows: list[dict[str, Any]] = []
    for fault in faults:
        b = sum(1 for f in t1.values() if f == fault)
        w = sum(1 for f in tw.values() if f == fault)
        a = sum(1 for f in t2.values() if f == fault)
        rows.append({"fault": fault, "day1": b, "day1_pct": 100 * b / len(t1), "day2_without": w,
                     "day2": a, "day2_pct": 100 * a / len(t2)})
    sys_w = sum(1 for f in tw.values() if f)
    sys_1 = sum(1 for f in t1.values() if f)
    diverted = sum(1 for s in s2.values() if s == "diverted")  # a route that rewrote intent is no fix
    sys_2 = sum(1 for f in t2.values() if f) + diverted
    ok_without = [i for i, s in sw.items() if s == "ok"]
    newly_denied = sum(1 for i in ok_without if s2.get(i) == "denied")
    lost = sum(1 for i in ok_without if s2.get(i) != "ok")
    say = demo.say
    say("\nPer fault: share of interactions that failed")
    say(f"  {'fault':28s} {'day 1':>8s} {'day 2 without':>14s} {'day 2 with':>11s}")
    for r in rows:
        say(f"  {r['fault']:28s} {r['day1_pct']:7.2f}% {100 * r['day2_without'] / len(tw):13.2f}% {r['day2_pct']:10.2f}%")
    drop = 100 * (1 - sys_2 / sys_w) if sys_w else 0.0
    say(f"\nSystemic failures on day 2: {sys_w} without the new rules, {sys_2} with them "
        f"({diverted} diverted): down {drop:.1f}%")
    say(f"Collateral: {lost} of {len(ok_without)} interactions that worked without the new rules do not now "
        f"({100 * lost / max(len(ok_without), 1):.2f}%; {newly_denied} denied)")
    counts = Counter(s2.values())
    say(f"Day 2 outcomes: {dict(counts.most_common())}")
    say(f"\nCluster report: {report}")
    say(f"Pull requests: policyctl pr list --repo {repo}  (bodies: policyctl pr show N --repo {repo})")
    say(f"Decision logs: {demo.out / 'decision-logs'}   gateway log: {demo.out / 'gateway.log'}")
    say(f"Done in {time.perf_counter() - demo.started:.0f}s.")
    return {"faults": rows, "systemic_day1": sys_1, "systemic_day2_without": sys_w, "systemic_day2": sys_2,
            "reduction_pct": round(drop, 2), "newly_denied": newly_denied, "collateral": lost, "diverted": diverted,
            "ok_without": len(ok_without),
            "pull_requests": [p.get("number") for p in prs], "report": str(report), "repo": str(repo),
            "seconds": round(time.perf_counter() - demo.started, 1)}
