"""The active revision as an OPA bundle: built once per revision off the request path, cached, served by ETag.

OPA's bundle plugin polls `GET <service url>/<resource>` with `If-None-Match: <last ETag>`;
the ETag is the quoted revision, so a poll of an unchanged revision is answered 304 without
building anything. A bundle is built by `policyctl bundle build` in a child process: the
bytes are exactly what that command writes for the commit, and a slow compile never holds
the gateway's event loop or its GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("policyctl.gateway")

BUNDLE_PATH = "/v1/bundles/agentgov.tar.gz"
GZIP = "application/gzip"
KEEP = 4              # bundles kept: the active revision and the few before it
RETRY_FAILED_S = 10.0  # a revision whose build failed is not rebuilt on every poll


@dataclass(frozen=True)
class BundleSigning:
    """How the gateway signs the bundles it serves: the `bundle build` signing options."""

    key_file: Path
    algorithm: str
    key_id: str
    scope: str = ""

    def cli_args(self) -> list[str]:
        return ["--signing-key", str(self.key_file), "--signing-alg", self.algorithm, "--key-id", self.key_id,
                "--scope", self.scope]


class BundleUnavailable(Exception):
    """No bundle can be served right now (no active revision, or its build failed): HTTP 503."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BundleAnswer:
    """What GET /v1/bundles/agentgov.tar.gz answers: 200 with the bundle, or 304 for the caller's ETag."""

    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def media_type(self) -> str | None:
        return GZIP if self.status == 200 else None


def etag(revision: str) -> str:
    return f'"{revision}"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against a list of entity tags, or `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


class BundleService:
    """Builds and caches the bundle of each revision asked for; one build at a time, shared by every waiter."""

    def __init__(self, repo: Path, *, signing: BundleSigning | None = None, timeout: float = 60.0) -> None:
        self.repo = repo
        self.signing = signing
        self.timeout = timeout
        self.built: OrderedDict[str, bytes] = OrderedDict()
        self.failed: dict[str, tuple[float, str]] = {}
        self.builds = 0
        self._pending: dict[str, asyncio.Task[bytes]] = {}
        self._one_at_a_time = asyncio.Lock()
        self._procs: set[asyncio.subprocess.Process] = set()

    async def answer(self, revision: str | None, if_none_match: str | None) -> BundleAnswer:
        """The answer for the active `revision`; raises BundleUnavailable."""
        if revision is None:
            raise BundleUnavailable("not_ready", "no revision is served yet; see /v1/status")
        tag = etag(revision)
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if not_modified(if_none_match, tag):
            return BundleAnswer(304, b"", headers)
        return BundleAnswer(200, await self.get(revision), headers)

    async def get(self, revision: str) -> bytes:
        """The bundle bytes of `revision`, built on first use. A caller that goes away leaves the build running."""
        body = self.built.get(revision)
        if body is not None:
            self.built.move_to_end(revision)
            return body
        failure = self.failed.get(revision)
        if failure is not None and time.monotonic() - failure[0] < RETRY_FAILED_S:
            raise BundleUnavailable("bundle_build_failed", failure[1])
        task = self._pending.get(revision)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._build(revision))
            # Retrieved here too, so a build whose every caller went away is not reported as unhandled.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._pending[revision] = task
        return await asyncio.shield(task)

    async def _build(self, revision: str) -> bytes:
        try:
            async with self._one_at_a_time:
                body = await self._run_build(revision)
        except BundleUnavailable as exc:
            self.failed[revision] = (time.monotonic(), exc.message)
            log.warning("bundle of %s not built: %s", revision[:12], exc.message)
            raise
        finally:
            self._pending.pop(revision, None)
        self.failed.pop(revision, None)
        self.built[revision] = body
        while len(self.built) > KEEP:
            self.built.popitem(last=False)
        self.builds += 1
        return body

    async def _run_build(self, revision: str) -> bytes:
        """`policyctl bundle build --ref REVISION` in a child process, bounded by the build timeout."""
        with tempfile.TemporaryDirectory(prefix="policyctl-bundle-") as tmp:
            output = Path(tmp) / "bundle.tar.gz"
            args = [sys.executable, "-m", "policyctl.cli.main", "bundle", "build", "--repo", str(self.repo),
                    "--ref", revision, "-o", str(output), "--json", *(self.signing.cli_args() if self.signing else [])]
            proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            self._procs.add(proc)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise BundleUnavailable("bundle_build_failed", f"building the bundle of {revision[:12]} took over "
                                        f"{self.timeout:g} s") from None
            finally:
                self._procs.discard(proc)
            if proc.returncode != 0:
                why = err.decode("utf-8", "replace").strip().removeprefix("Error: ")[-500:]
                raise BundleUnavailable("bundle_build_failed", f"building the bundle of {revision[:12]} failed: "
                                        f"{why or f'exit {proc.returncode}'}")
            built = json.loads(out)
            if built.get("revision") != revision:
                raise BundleUnavailable("bundle_build_failed", f"asked for {revision}, built {built.get('revision')}")
            return output.read_bytes()

    async def close(self) -> None:
        """Stop any build still running (the gateway is shutting down)."""
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for task in list(self._pending.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BundleUnavailable):
                await task
