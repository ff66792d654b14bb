"""`policyctl gateway serve` and `policyctl gateway status`: the decision gateway and a look at a running one."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from policyctl.cli.common import emit_json, engine_flag
from policyctl.gateway.decision_log import (  # light: orjson, threading
    DEFAULT_BACKLOG_BYTES,
    DEFAULT_WINDOW_BYTES,
)

MIB = 1024 * 1024

if TYPE_CHECKING:
    from policyctl.gateway.bundles import BundleSigning


@click.group()
def gateway() -> None:
    """Serve decisions from a git ref over HTTP, hot-swapping every merge."""


@gateway.command()
@click.option("--repo", "repo", default=".", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="The policy repository. With --remote: the local replica (a bare repository, created if missing).")
@click.option("--ref", default="refs/heads/main", show_default=True, help="The ref whose commits are served.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token-file.")
@click.option("--port", default=8181, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--remote", default=None, metavar="URL", help="Follow this repository: fetch the ref every --poll seconds.")
@click.option("--poll", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Fetch interval with --remote [2]; otherwise the safety-net poll behind the file watcher [10].")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A file holding the bearer token clients must send (required off loopback).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write every decision here as JSON Lines events (off when not given).")
@click.option("--log-max-mb", type=click.FloatRange(min=0.01), default=64.0, show_default=True,
              help="Rotate a decision-log file at this size.")
@click.option("--log-flush", type=click.FloatRange(min=0.01, max=10), default=0.2, show_default=True,
              metavar="SECONDS", help="Write queued decision-log records this often (the most a SIGKILL can lose).")
@click.option("--log-window-mb", type=click.FloatRange(min=0.01), default=DEFAULT_WINDOW_BYTES / MIB, show_default=True,
              help="Memory for recent decisions that outcomes join; the oldest are evicted past it.")
@click.option("--log-backlog-mb", type=click.FloatRange(min=0.01), default=DEFAULT_BACKLOG_BYTES / MIB, show_default=True,
              help="Memory for records queued to the log writer; records past it are counted as lost.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Evaluation worker processes [one per CPU].")
@click.option("--eval-timeout", type=click.FloatRange(min=0.01), default=3.0, show_default=True, metavar="SECONDS",
              help="Deadline of one evaluation; an overrun is denied with error eval_timeout and its worker replaced. "
                   "Keep it above the longest override timeout (the sandbox allows up to 2 s).")
@click.option("--build-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS",
              help="Deadline for compiling a commit and running its fixtures.")
@click.option("--override-budget-ms", type=click.IntRange(min=1, max=60_000), default=250, show_default=True,
              metavar="MS", help="The most all the overrides of one decision may take together; past it the "
                                 "policies decide (docs/overrides.md).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, metavar="SECONDS",
              help="A request's headers must arrive within this; a slower connection gets 408 and is closed.")
@click.option("--idle-timeout", type=click.IntRange(min=1), default=30, show_default=True, metavar="SECONDS",
              help="Close a connection that sends no request for this long (keep-alive, or never used).")
@click.option("--slow-factor", type=click.FloatRange(min=1), default=5.0, show_default=True,
              help="A commit whose verification evaluates this many times slower than the serving revision (on "
                   "the fixtures and recent inputs), or within half the --eval-timeout, is not served.")
@click.option("--on-slow", type=click.Choice(["degrade", "refuse"]), default="degrade", show_default=True,
              help="degrade: keep it out, report degraded, retry it every --poll; refuse: fail it like a broken "
                   "commit (never rebuilt).")
@click.option("--queue-deadline", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              metavar="SECONDS", help="The longest a request waits for a worker; one expected to wait longer (or "
                                      "longer than its X-Request-Timeout) is refused at once with 503 overloaded.")
@click.option("--max-queue-wait", type=click.FloatRange(min=0.001), default=0.05, show_default=True,
              metavar="SECONDS", help="Admission: a request expected to wait longer than this for a worker (queue "
                                      "length x mean evaluation / workers) gets 503 overloaded with Retry-After at "
                                      "once; the queue absorbs bursts, not sustained overload.")
@click.option("--bundle-signing-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Sign the OPA bundles of GET /v1/bundles/agentgov.tar.gz with this key (as `bundle build "
                   "--signing-key`).")
@click.option("--bundle-signing-alg", type=click.Choice(["RS256", "ES256", "HS256"]), default=None,
              help="The bundles' JWT algorithm [the key's].")
@click.option("--bundle-key-id", default="policyctl", show_default=True, help="The bundles' JWT key id.")
@click.option("--bundle-scope", default="", help="The bundles' JWT scope claim.")
@engine_flag
def serve(repo: Path, ref: str, host: str, port: int, remote: str | None, poll: float | None,
          token_file: Path | None, log_dir: Path | None, log_max_mb: float, log_flush: float,
          workers: int | None, eval_timeout: float, build_timeout: float, bundle_signing_key: Path | None,
          bundle_signing_alg: str | None, bundle_key_id: str, bundle_scope: str, log_window_mb: float,
          log_backlog_mb: float, queue_deadline: float, header_timeout: float, idle_timeout: int,
          override_budget_ms: int, slow_factor: float, on_slow: str, max_queue_wait: float) -> int:
    """Serve decisions from the commits of --ref until SIGTERM or Ctrl-C.

    Each commit is read from git objects, compiled and verified against its
    fixtures before it is served; a commit that fails is never served and
    /v1/status says why. API: POST /v1/decide, POST /v1/outcome, GET /v1/status,
    /healthz, /readyz, /metrics, /openapi.json (see docs/gateway.md), and
    GET /v1/bundles/agentgov.tar.gz for OPA servers (see docs/bundles.md).
    """
    from policyctl.gateway.app import serve as run
    from policyctl.gateway.revisions import check_remote_ref, git_dir, init_replica
    from policyctl.gateway.security import check_bind, load_token
    from policyctl.gateway.service import GatewayConfig

    _return_large_blocks()
    token = load_token(token_file) if token_file else None
    signing = _bundle_signing(bundle_signing_key, bundle_signing_alg, bundle_key_id, bundle_scope)
    check_bind(host, token)
    repo = repo.resolve()
    if remote is not None:
        check_remote_ref(ref)
        init_replica(repo, ref)
    git_dir(repo)  # fail now, not in the background, when --repo is no repository
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    config = GatewayConfig(
        repo=repo, ref=ref, host=host, port=port, remote=remote, token=token,
        poll=poll if poll is not None else (2.0 if remote else 10.0), log_dir=log_dir.resolve() if log_dir else None,
        log_max_bytes=int(log_max_mb * 1024 * 1024), log_flush_interval=log_flush,
        workers=workers or os.cpu_count() or 2, eval_timeout=eval_timeout, build_timeout=build_timeout,
        bundle_signing=signing, log_window_bytes=int(log_window_mb * MIB),
        log_backlog_bytes=int(log_backlog_mb * MIB), queue_deadline=queue_deadline,
        header_timeout=header_timeout, idle_timeout=idle_timeout)
    config.override_budget_ms = override_budget_ms
    config.slow_factor, config.on_slow = slow_factor, on_slow
    config.max_queue_wait = max_queue_wait
    return run(config, announce=lambda line: click.echo(line, err=True))


def _return_large_blocks() -> None:
    """Large inputs (up to 256 KiB each) are allocated and freed at the request rate. glibc raises
    its mmap threshold after such frees, so they land in the heap and its fragments stay
    resident: a fixed threshold keeps blocks of 128 KiB and more mmapped, returned to the OS on
    free, so memory comes back after a burst of large inputs (bench/hostile.py, memory)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (glibc); setting it also stops the adjustment
    except (OSError, AttributeError):
        return


def _bundle_signing(key_file: Path | None, alg: str | None, key_id: str, scope: str) -> BundleSigning | None:
    """The bundle signing options, with the key read now: a bad key fails the start, not the first poll."""
    from policyctl.engine.bundle import load_signing_key
    from policyctl.gateway.bundles import BundleSigning

    if key_file is None:
        return None
    key = load_signing_key(key_file, alg, key_id=key_id, scope=scope)
    return BundleSigning(key_file=key_file.resolve(), algorithm=key.algorithm, key_id=key_id, scope=scope)


@gateway.command()
@click.option("--url", default="http://127.0.0.1:8181", show_default=True, help="The gateway's base URL.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The gateway's token file, when it has one.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
def status(url: str, token_file: Path | None, as_json: bool) -> int:
    """Show what a running gateway serves, whether it is behind, and what failed.

    Exits 1 when the gateway is not ready or is degraded (serving an older
    commit than the head of its ref).
    """
    from policyctl.gateway.status import fetch_status, format_status

    doc = fetch_status(url, token_file)
    if as_json:
        emit_json(doc)
    else:
        sys.stdout.write(format_status(doc, url))
    return 0 if doc.get("ready") and not doc.get("degraded") else 1
