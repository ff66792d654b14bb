"""`policyctl gateway status`: fetch a running gateway's /v1/status and say it for a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from policyctl.errors import InputError, PolicyctlError
from policyctl.gateway.security import load_token


def fetch_status(url: str, token_file: Path | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """GET <url>/v1/status with the token, translating transport errors into PolicyctlError."""
    headers = {"Authorization": f"Bearer {load_token(token_file)}"} if token_file else {}
    target = url.rstrip("/") + "/v1/status"
    try:
        response = httpx.get(target, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PolicyctlError(f"{target}: cannot reach the gateway ({exc}); is `policyctl gateway serve` running?",
                             code="gateway_unreachable") from exc
    if response.status_code == 401:
        raise InputError(f"{target}: 401 unauthorized; pass --token-file with the gateway's token")
    if response.status_code != 200:
        raise PolicyctlError(f"{target}: HTTP {response.status_code}: {response.text[:300]}", code="gateway_error")
    try:
        status: dict[str, Any] = response.json()
    except ValueError as exc:
        raise PolicyctlError(f"{target}: the answer is not JSON", code="gateway_error") from exc
    return status


def _short(rev: str | None) -> str:
    return rev[:12] if rev else "-"


def format_status(status: dict[str, Any], url: str = "") -> str:
    """A few lines a person reads: what is served, whether it is behind, what failed, the log."""
    lines: list[str] = []
    state = "ready" if status.get("ready") else f"NOT READY ({status.get('ready_reason')})"
    if status.get("degraded"):
        state += f", DEGRADED: {status.get('degraded_reason')}"
    lines.append(f"gateway {url} {state}" if url else f"gateway {state}")
    active = status.get("active")
    if active:
        policies = active.get("policies", [])
        rules = [p for p in policies if p.get("mode") in ("enforce", "shadow")]
        shadow = sum(1 for p in rules if p.get("mode") == "shadow")
        lines.append(f"  serving   {_short(active['revision'])}  {active.get('subject', '')!r}  since "
                     f"{active.get('loaded_at')}  ({len(rules)} rules, {shadow} in shadow mode, "
                     f"{len(active.get('overrides', []))} overrides, {active.get('fixtures', 0)} fixtures passed)")
    else:
        lines.append("  serving   nothing")
    head = status.get("head") or {}
    behind = status.get("behind")
    if behind is None:
        lag = ""
    elif behind == 0:
        lag = " (up to date)"
    else:
        lag = f" ({behind} commit{'s' if behind != 1 else ''} ahead of what is served)"
    lines.append(f"  head      {_short(head.get('revision'))}  {head.get('subject', '')!r}{lag}  "
                 f"[{status.get('ref')} in {status.get('repo')}]")
    if status.get("building"):
        lines.append(f"  building  {_short(status['building'])}")
    swap = status.get("last_swap")
    if swap and swap.get("commit_to_serving_s") is not None:
        lines.append(f"  last swap {_short(swap['revision'])} at {swap['at']}: "
                     f"{swap['commit_to_serving_s'] * 1e3:.0f} ms from the ref moving to serving")
    err = status.get("last_error")
    if err:
        lines.append(f"  last error {_short(err['revision'])} {err.get('subject', '')!r} at {err.get('at')}: "
                     f"{err['code']}")
        for problem in (err.get("problems") or [])[:5]:
            where = problem.get("file", "")
            if problem.get("line"):
                where += f":{problem['line']}"
            lines.append(f"      {where}: {problem.get('message')}")
        if not err.get("problems"):
            lines.append(f"      {err.get('message')}")
    reloads = status.get("reloads") or {}
    lines.append(f"  reloads   {reloads.get('ok', 0)} ok, {reloads.get('failed', 0)} failed")
    fetch = status.get("fetch")
    if fetch:
        lines.append(f"  fetch     {status.get('remote')} every {status.get('poll_s')} s: {fetch['ok']} ok, "
                     f"{fetch['failed']} failed" + (f"; last error: {fetch['last_error']}" if fetch.get("last_error") else ""))
    wall = (active or {}).get("sandbox_wall")
    if wall:
        lines.append(f"  sandbox   {_wall_line(wall)}")
    workers = status.get("workers") or {}
    restarts = sum((workers.get("restarts") or {}).values())
    lines.append(f"  workers   {workers.get('ready')}/{workers.get('count')} ready, {workers.get('timeouts', 0)} "
                 f"evaluations stopped at the {workers.get('eval_timeout_s')} s deadline, {restarts} restarts")
    dlog = status.get("decision_log") or {}
    if dlog.get("enabled"):
        lost = f"{dlog['lost']} LOST" if dlog.get("lost") else "none lost"
        lines.append(f"  decision log {dlog.get('file') or dlog.get('dir')}: {dlog.get('written', 0)} written, "
                     f"{dlog.get('backlog', 0)} queued, {lost}")
    else:
        lines.append("  decision log off (start with --log-dir DIR)")
    decisions = status.get("decisions") or {}
    lines.append(f"  decisions {decisions.get('total', 0)}, shadow divergences {decisions.get('shadow_divergences', 0)}")
    if active:
        for p in active.get("policies", []):
            if p.get("mode") in ("enforce", "shadow"):
                lines.append(f"    {p['mode']:<8} {p['file']}  {p.get('title', '')}")
        for o in active.get("overrides", []):
            lines.append(f"    override {o.get('mode', '?'):<8} {o['file']}  {o.get('doc') or o.get('error', '')}")
            q = o.get("quarantine")
            if q:  # skipped until the next commit: say why, so the fix is obvious
                lines.append(f"      quarantined: {q.get('count')} failures ({q.get('code')}), "
                             f"first {q.get('first')}, last {q.get('last')}; the policies decide its inputs")
    return "\n".join(lines) + "\n"


def _wall_line(wall: dict[str, Any]) -> str:
    """The override workers' kernel wall in one line: which mechanisms hold, and what is missing."""
    held = [name for name, on in (("seccomp filter", wall.get("seccomp")),
                                  (f"Landlock ABI {wall.get('landlock_abi')}", wall.get("landlock_abi")),
                                  ("no_new_privs", wall.get("no_new_privs"))) if on]
    seen = "locked by the override workers" if wall.get("source") == "worker" else "available (no override worker yet)"
    line = f"{', '.join(held) or 'no kernel mechanism'} {seen}"
    missing = wall.get("missing") or {}
    if missing:
        line += "; MISSING: " + "; ".join(f"{k} ({v})" for k, v in sorted(missing.items()))
    return line + f" [kernel {wall.get('kernel', '?')}]"
