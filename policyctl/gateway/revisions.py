"""Which revision the gateway serves: build and verify each new commit of the ref off the request path, swap one reference."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyctl.errors import PolicyctlError, RepoError, UsageError
from policyctl.gateway.metrics import Histogram
from policyctl.gateway.workers import WorkerFailure, WorkerPool
from policyctl.repo import commit_summary, first_parent_history, resolve

log = logging.getLogger("policyctl.gateway")

MAX_HISTORY = 50          # commits tried, newest first, when the head does not build at start
MAX_FAILED = 100          # failed commits remembered (never rebuilt)
_WATCHED_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


@dataclass(eq=False)
class ServedRevision:
    """A revision compiled in every worker; `in_flight` counts the requests that started on it."""

    id: str
    subject: str
    detail: dict[str, Any]
    loaded_at: float
    build_s: float
    in_flight: int = 0

    def describe(self) -> dict[str, Any]:
        detail = self.detail
        return {"revision": self.id, "subject": self.subject, "committed_at": detail.get("committed_at"),
                "loaded_at": utc_stamp(self.loaded_at), "build_s": round(self.build_s, 3),
                "policies": detail.get("policies", []), "overrides": detail.get("overrides", []),
                "fixtures": detail.get("fixtures", 0), "fixtures_passed": detail.get("fixtures_passed", 0),
                "sandbox_wall": detail.get("sandbox_wall")}


@dataclass
class BuildFailure:
    """A commit that did not build or verify, and why: shown in /v1/status and the metrics."""

    revision: str
    subject: str
    code: str
    message: str
    problems: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {"revision": self.revision, "subject": self.subject, "code": self.code, "message": self.message,
                "problems": self.problems[:20], "at": utc_stamp(self.at)}


def utc_stamp(ts: float) -> str:
    """`2026-12-01T15:22:31.123Z`: every time the gateway shows or logs (one strftime per second)."""
    return f"{_whole_second(int(ts))}.{int(ts * 1000) % 1000:03d}Z"


@functools.lru_cache(maxsize=1)
def _whole_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def git_dir(repo: Path) -> Path:
    """The git directory of a working tree or a bare repository."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--absolute-git-dir"],
                              capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RepoError(f"{repo}: not a git repository (git rev-parse --absolute-git-dir failed)") from exc
    return Path(done.stdout.strip())


def init_replica(repo: Path, ref: str) -> None:
    """Create the bare repository a `--remote` replica fetches into, if it does not exist."""
    if repo.exists() and any(repo.iterdir()):
        return
    repo.mkdir(parents=True, exist_ok=True)
    for args in (["init", "--bare", "-q", str(repo)], ["-C", str(repo), "symbolic-ref", "HEAD", ref]):
        subprocess.run(["git", *args], check=True, capture_output=True, timeout=30)


class GitWatcher:
    """watchdog on the git directory: any write under refs/, packed-refs or HEAD calls `notify`."""

    def __init__(self, directory: Path, notify: Callable[[], None]) -> None:
        self.directory = directory
        self.notify = notify
        self._observer: Any = None

    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        root = str(self.directory)
        notify = self.notify

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # opened/closed_no_write come from readers (our own resolve too): never wake on those.
                if event.event_type not in _WATCHED_EVENTS:
                    return
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    rel = str(path)[len(root):].lstrip("/") if path else ""
                    if rel.startswith("refs") or rel in ("packed-refs", "HEAD"):
                        notify()
                        return

        observer = Observer()
        observer.daemon = True
        handler = Handler()
        observer.schedule(handler, root, recursive=False)
        if (self.directory / "refs").is_dir():
            observer.schedule(handler, str(self.directory / "refs"), recursive=True)
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)


class RevisionManager:
    """The active revision, the head of the ref, the last failure, and the loop that moves between them.

    The ref is watched three ways: watchdog on the git directory (refs/, packed-refs, HEAD)
    for sub-second swaps, a slow poll as a safety net for missed events (network
    filesystems, inotify limits), and with `--remote` a fetch loop that brings a replica's
    repository up to date, after which the same path follows.
    """

    def __init__(self, repo: Path, ref: str, pool: WorkerPool, *, poll: float, remote: str | None = None,
                 swap_latency: Histogram | None = None, slow_factor: float = 5.0, on_slow: str = "degrade",
                 eval_timeout: float = 3.0) -> None:
        self.repo = repo
        self.ref = ref
        self.pool = pool
        self.poll = poll
        self.remote = remote
        self.swap_latency = swap_latency
        self.slow_factor = slow_factor
        self.on_slow = on_slow  # "degrade": kept out and retried each --poll; "refuse": failed like a broken commit
        self.eval_timeout = eval_timeout
        self.slow: dict[str, BuildFailure] = {}  # with on_slow=degrade: the commits kept out for their speed
        self.slow_refused = 0
        self.active: ServedRevision | None = None
        self.pending: str | None = None
        self.retired: dict[str, ServedRevision] = {}
        self.head: str | None = None
        self.head_subject = ""
        self.behind: int | None = None
        self.failed: OrderedDict[str, BuildFailure] = OrderedDict()
        self.last_error: BuildFailure | None = None
        self.repo_error: str | None = None
        self.ref_error: str | None = None  # the ref stopped resolving after it had: degraded, the last revision kept
        self.reloads = {"ok": 0, "failed": 0}
        self.last_swap: dict[str, Any] | None = None
        self.fetches = {"ok": 0, "failed": 0}
        self.fetch_error: str | None = None
        self.started = False
        self.git_dir: Path | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: GitWatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ request path

    def acquire(self) -> ServedRevision | None:
        """The revision a request starts on; it is held until `release`, across any swap."""
        rev = self.active
        if rev is not None:
            rev.in_flight += 1
        return rev

    def release(self, rev: ServedRevision) -> None:
        rev.in_flight -= 1
        if rev.in_flight == 0 and rev is not self.active and self.retired.pop(rev.id, None) is not None:
            self.pool.drop(rev.id)

    def wanted(self) -> set[str]:
        """Every revision a worker must hold before it takes requests."""
        out = set(self.retired)
        if self.active is not None:
            out.add(self.active.id)
        if self.pending is not None:
            out.add(self.pending)
        return out

    @property
    def degraded(self) -> bool:
        if self.head is not None and self.head in self.slow and self.active is not None:
            return True
        if self.ref_error is not None and self.active is not None:
            return True
        if self.head is not None and self.head in self.failed:
            return True
        return self.started and self.active is None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.remote is not None:
            self._tasks.append(asyncio.create_task(self._fetch_loop()))
        self._tasks.append(asyncio.create_task(self._run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)

    def wake(self) -> None:
        """Thread-safe: look at the ref now (watchdog and the fetch loop call this)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        await self._start_watcher()
        while not await self._guarded(self._initial()):
            await self._sleep()
        self.started = True
        while True:
            await self._sleep()
            await self._guarded(self.check())

    async def _guarded(self, step: Any) -> Any:
        """Run one step of the loop; an error is reported in the status, never the end of the loop."""
        try:
            return await step
        except PolicyctlError as exc:
            self.repo_error = exc.message
        except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one bad commit or git hiccup
            self.repo_error = f"{type(exc).__name__}: {exc}"
        return False

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll)
        self._wake.clear()

    async def _start_watcher(self) -> None:
        while self.git_dir is None:
            try:
                self.git_dir = await asyncio.to_thread(git_dir, self.repo)
            except RepoError as exc:
                self.repo_error = exc.message
                await asyncio.sleep(self.poll)
        self._watcher = GitWatcher(self.git_dir, self.wake)
        try:
            await asyncio.to_thread(self._watcher.start)
        except OSError as exc:  # inotify limits: the poll still finds every commit, only later
            self.repo_error = f"watching {self.git_dir} failed ({exc}); relying on the --poll interval"
            self._watcher = None

    async def _initial(self) -> bool:
        """Serve the head, or the newest commit of its first-parent history that builds."""
        try:
            head = await self._read_head()
        except PolicyctlError as exc:
            self.repo_error = exc.message
            return False
        if head in self.failed:
            return False  # waiting for a commit that builds
        if await self.build(head):
            return True
        history = await asyncio.to_thread(first_parent_history, self.repo, head, MAX_HISTORY + 1)
        for commit in history[1:]:
            if commit in self.failed:
                continue
            if await self.build(commit, report=False):
                return True
        self.started = True  # nothing builds: not ready, and degraded says why
        return False

    async def check(self) -> None:
        """Build and swap to the head of the ref if it moved and is not known to fail."""
        head = await self._read_head()
        if self.active is not None and head == self.active.id:
            return
        if head in self.failed or head == self.pending:
            return
        slow = self.slow.get(head)
        if slow is not None and time.time() - slow.at < self.poll:
            return
        await self.build(head)

    async def _read_head(self) -> str:
        try:
            head = await asyncio.to_thread(resolve, self.repo, self.ref)
        except Exception as exc:  # noqa: BLE001 - a moved or unreadable repository raises OSError as well
            reason = await asyncio.to_thread(ref_problem, self.repo, self.ref, self.git_dir, self.head, exc)
            if self.active is not None and self.ref_error is None:
                log.warning("%s; still serving %s", reason, self.active.id[:12])
            self.ref_error = reason if self.active is not None else None
            self.behind = None  # unknown: "up to date" would be a lie about a ref that is not there
            raise RepoError(reason) from exc
        recovered = self.ref_error is not None
        self.repo_error = None
        self.ref_error = None
        if head != self.head or recovered:
            self.head = head
            self.head_subject = await asyncio.to_thread(commit_summary, self.repo, head)
            await self._update_behind()
        return head

    async def _update_behind(self) -> None:
        self.behind = await self._behind(self.active.id) if self.active is not None else None

    async def _behind(self, commit: str) -> int | None:
        """How many first-parent commits the head is ahead of `commit` (None: not on that line)."""
        head = self.head
        if head is None or head == commit:
            return 0 if head == commit else None
        try:
            history = await asyncio.to_thread(first_parent_history, self.repo, head, 1000)
        except PolicyctlError:
            return None  # unknown is a fine answer; it must not fail a build
        return history.index(commit) if commit in history else None

    # ------------------------------------------------------------------ build and swap

    async def build(self, commit: str, *, report: bool = True) -> bool:
        """Compile and verify `commit` in the workers; swap to it when it passes. False when it fails."""
        changed_at = self._ref_changed_at()
        started = time.monotonic()
        wall_started = time.time()
        subject = await asyncio.to_thread(_subject, self.repo, commit)
        self.pending = commit  # a worker that starts meanwhile loads it too, before it takes requests
        try:
            detail = await self.pool.load(commit, baseline=self.active.id if self.active else None,
                                          check=self._check_speed)
            behind = await self._behind(commit)
        except BaseException as exc:
            self.pending = None
            if not isinstance(exc, WorkerFailure):
                raise
            if exc.code == "revision_slow":
                self.slow_refused += 1
                if self.on_slow == "degrade":
                    self.slow = {commit: BuildFailure(commit, subject, exc.code, exc.message)}
                    log.warning("not serving %s (%s): %s", commit[:12], subject, exc.message)
                    return False
            failure = BuildFailure(commit, subject, exc.code, exc.message, exc.problems)
            self.failed[commit] = failure
            while len(self.failed) > MAX_FAILED:
                self.failed.popitem(last=False)
            if report:
                self.last_error = failure
                self.reloads["failed"] += 1
            log.warning("not serving %s (%s): %s: %s", commit[:12], subject, exc.code, exc.message)
            return False
        now = time.time()
        served = ServedRevision(commit, subject, detail, now, time.monotonic() - started)
        # The swap: one reference. No await between here and the end of the bookkeeping.
        old, self.active = self.active, served
        self.pending = None
        self.behind = behind
        if old is not None:
            if old.in_flight > 0:
                self.retired[old.id] = old
            else:
                self.pool.drop(old.id)
        self.reloads["ok"] += 1
        latency: float | None = None
        if changed_at is not None and self.started:  # the first load is no swap: nothing to time
            latency = now - changed_at
            detail.setdefault("timing", {})["noticed_after_s"] = round(wall_started - changed_at, 3)
            if self.swap_latency is not None:
                self.swap_latency.observe(max(latency, 0.0))
        self.last_swap = {"revision": commit, "at": utc_stamp(now), "build_s": round(served.build_s, 3),
                          "commit_to_serving_s": round(latency, 3) if latency is not None else None,
                          "timing": detail.get("timing", {})}
        log.info("serving %s (%s), built in %.0f ms%s", commit[:12], subject, served.build_s * 1e3,
                 f", {latency * 1e3:.0f} ms after the ref moved" if latency is not None else "")
        return True

    def _check_speed(self, summary: dict[str, Any]) -> None:
        """Raise WorkerFailure revision_slow when the verification's evaluations say the commit is too slow."""
        timing = summary.get("timing") or {}
        reason = slow_reason(timing.get("eval"), timing.get("baseline_eval"), self.slow_factor, self.eval_timeout)
        if reason is not None:
            raise WorkerFailure("revision_slow", reason)

    def _ref_changed_at(self) -> float | None:
        """When git last wrote the ref (the loose ref file, else packed-refs): the start of commit-to-serving."""
        if self.git_dir is None or not self.ref.startswith("refs/"):
            return None
        for path in (self.git_dir / self.ref, self.git_dir / "packed-refs"):
            with contextlib.suppress(OSError):
                return path.stat().st_mtime
        return None

    # ------------------------------------------------------------------ replicas

    async def _fetch_loop(self) -> None:
        while True:
            await self.fetch()
            await asyncio.sleep(self.poll)

    async def fetch(self) -> None:
        """`git fetch <remote> +<ref>:<ref>` into the replica's repository, then look at the ref."""
        assert self.remote is not None
        args = ["git", "-C", str(self.repo), "fetch", "--quiet", "--no-tags", "--update-head-ok", self.remote,
                f"+{self.ref}:{self.ref}"]
        try:
            proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), max(30.0, self.poll * 3))
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise OSError("git fetch timed out") from None
            if proc.returncode != 0:
                raise OSError(err.decode("utf-8", "replace").strip()[:500] or f"exit status {proc.returncode}")
        except OSError as exc:
            self.fetches["failed"] += 1
            self.fetch_error = f"git fetch {self.remote} {self.ref}: {exc}"
            return
        self.fetches["ok"] += 1
        self.fetch_error = None
        self._wake.set()

    # ------------------------------------------------------------------ status

    def describe(self) -> dict[str, Any]:
        active = self.active
        degraded_reason = None
        if self.degraded:
            if active is None:
                degraded_reason = "no commit on the ref's first-parent history builds; nothing is served"
            elif self.ref_error is not None:
                degraded_reason = (f"{self.ref_error}; serving {active.id[:12]}, the last good revision, until "
                                   "the ref can be read again")
            elif self.head is not None and self.head in self.slow:
                degraded_reason = (f"the head {self.head[:12]} is too slow to serve: {self.slow[self.head].message}; "
                                   f"serving {active.id[:12]} instead (retried every {self.poll:g} s)")
            elif self.head is not None and self.head in self.failed:
                f = self.failed[self.head]
                degraded_reason = (f"the head {self.head[:12]} does not build ({f.code}); serving "
                                   f"{active.id[:12]} instead")
        return {
            "repo": str(self.repo), "ref": self.ref, "remote": self.remote, "poll_s": self.poll,
            "active": active.describe() if active else None,
            "head": {"revision": self.head, "subject": self.head_subject} if self.head else None,
            "behind": self.behind, "degraded": self.degraded, "degraded_reason": degraded_reason,
            "building": self.pending,
            "last_error": self.last_error.describe() if self.last_error else None,
            "failed_revisions": [{"revision": f.revision, "code": f.code, "at": utc_stamp(f.at)}
                                 for f in list(self.failed.values())[-10:]],
            "reloads": dict(self.reloads), "last_swap": self.last_swap,
            "slow_revision": self.slow[self.head].describe() if self.head in self.slow else None,
            "on_slow": self.on_slow, "slow_factor": self.slow_factor, "slow_refused": self.slow_refused,
            "in_flight_on_retired": {r.id: r.in_flight for r in self.retired.values()},
            "repo_error": self.repo_error,
            "fetch": {"ok": self.fetches["ok"], "failed": self.fetches["failed"], "last_error": self.fetch_error}
            if self.remote else None,
        }


def ref_problem(repo: Path, ref: str, known_git_dir: Path | None, last_head: str | None, exc: Exception) -> str:
    """Why `ref` no longer resolves, naming the ref and what happened to it or to its repository.

    The repository layer's message alone misleads here: an empty ref list after
    `git update-ref -d` reads as "no commits yet", so the cause is asked of git and the disk.
    """
    detail = exc.message if isinstance(exc, PolicyctlError) else f"{type(exc).__name__}: {exc}"
    if not repo.exists():
        return f"ref {ref}: the repository {repo} is gone (moved or deleted)"
    for path in (repo, known_git_dir):
        if path is not None and path.exists() and not os.access(path, os.R_OK | os.X_OK):
            return f"ref {ref}: {path} is not readable by this process ({detail})"
    if known_git_dir is not None and not known_git_dir.exists():
        return f"ref {ref}: the git directory {known_git_dir} of {repo} is gone (moved or deleted)"
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return f"ref {ref} in {repo} cannot be read ({detail})"
    if done.returncode == 1 and not done.stderr.strip():  # --quiet: exit 1, silent, means "no such ref"
        last = f"; it pointed at {last_head[:12]}" if last_head else ""
        return f"ref {ref} was deleted from {repo} (or never existed){last}"
    return f"ref {ref} in {repo} cannot be read ({detail})"


SLOW_FLOOR_MS = 1.0  # a slowdown smaller than this per evaluation is noise, whatever the ratio
NEAR_DEADLINE = 0.5  # an evaluation past this fraction of --eval-timeout is one spike from failing closed


def slow_reason(candidate: dict[str, Any] | None, baseline: dict[str, Any] | None, factor: float,
                eval_timeout: float) -> str | None:
    """Why a verified commit is too slow to serve (None: it is not), from the verification's timings."""
    if not candidate:
        return None
    mean, worst = float(candidate.get("mean_ms", 0)), float(candidate.get("max_ms", 0))
    limit = NEAR_DEADLINE * eval_timeout * 1e3
    if worst >= limit and (not baseline or float(baseline.get("max_ms", 0)) < limit):
        return (f"an evaluation took {worst:.0f} ms on the fixtures and recent inputs, past {NEAR_DEADLINE:g} of the "
                f"{eval_timeout:g} s evaluation deadline (--eval-timeout)")
    if baseline:
        base = float(baseline.get("mean_ms", 0))
        if mean > factor * base and mean - base >= SLOW_FLOOR_MS:
            return (f"it evaluates {mean / max(base, 1e-3):.0f}x slower than the serving revision ({mean:.1f} ms vs "
                    f"{base:.1f} ms per evaluation over {candidate.get('inputs')} fixtures and recent inputs; "
                    f"the limit is {factor:g}x, --slow-factor)")
    return None


def _subject(repo: Path, commit: str) -> str:
    try:
        return commit_summary(repo, commit)
    except PolicyctlError:
        return ""


def check_remote_ref(ref: str) -> None:
    if not ref.startswith("refs/"):
        raise UsageError(f"--ref {ref!r}: with --remote, name a full ref such as refs/heads/main")
