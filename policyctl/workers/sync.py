"""A worker process driven from a thread: blocking calls on non-blocking pipes, each bounded by a deadline."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import Self

from policyctl.workers.errors import ChildGone, Expired, SpawnFailed
from policyctl.workers.frames import FrameTooLarge, read_frame, write_all
from policyctl.workers.lifecycle import death_reason, is_hello, kill_group


class Child:
    """One worker process and the parent's ends of its pipes.

    Every wait has a deadline: when it passes the caller gets Expired and kills the
    worker, since a worker that overran cannot be trusted with the next request.
    """

    def __init__(self, proc: subprocess.Popen[bytes], max_frame: int) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.pid = proc.pid
        self.max_frame = max_frame
        self.wfd = proc.stdin.fileno()
        self.rfd = proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)

    @classmethod
    def spawn(cls, command: list[str], *, max_frame: int, timeout_s: float, cwd: str | None = None,
              env: dict[str, str] | None = None) -> Self:
        """Start `command` in its own session (its group can be killed whole) and wait for its hello."""
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, cwd=cwd, env=env, close_fds=True,
                                    start_new_session=True, bufsize=0)
        except OSError as exc:
            raise SpawnFailed(f"it could not be run: {exc}") from None
        child = cls(proc, max_frame)
        try:
            if not is_hello(child.receive(time.monotonic() + timeout_s)):
                raise SpawnFailed("its first frame was not a hello")
        except Expired:
            child.kill()
            child.reap()
            raise SpawnFailed(f"no hello within {timeout_s:g} s") from None
        except (ChildGone, SpawnFailed) as exc:
            child.kill()
            child.reap()
            why = str(exc) if isinstance(exc, SpawnFailed) else "it closed its pipe"
            raise SpawnFailed(f"{why} ({death_reason(proc.returncode)})") from None
        return child

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes, deadline: float) -> None:
        """Write already framed `data`; ChildGone(before_request=True) when the worker has gone."""
        try:
            write_all(self.wfd, data, deadline)
        except OSError:
            raise ChildGone(True) from None

    def receive(self, deadline: float) -> bytes:
        """The next frame; ChildGone when the worker has gone or sent a frame no worker sends."""
        try:
            body = read_frame(self.rfd, self.max_frame, deadline)
        except (OSError, FrameTooLarge):
            raise ChildGone(False) from None
        if body is None:
            raise ChildGone(False)
        return body

    def kill(self) -> None:
        """SIGKILL the worker's process group, now (the caller returns at once; `reap` can wait elsewhere)."""
        kill_group(self.pid)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def reap(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.close_pipes()

    def close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def death(self) -> str:
        """Why the worker ended, for an error message (a moment's wait: its pipe closes just before it exits)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=0.2)
        return death_reason(self.proc.returncode)
