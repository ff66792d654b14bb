"""A worker process driven from an asyncio event loop: frames handled in the protocol's callbacks, no thread hand-off."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable
from typing import Any

from policyctl.workers.errors import SpawnFailed
from policyctl.workers.frames import FrameDecoder, FrameTooLarge, encode
from policyctl.workers.lifecycle import death_reason, is_hello, kill_group


class AsyncChild:
    """One worker process: its hello and exit as futures, each later frame to `on_frame`, a deadline timer.

    `on_exit(returncode)` runs once when the process has ended, however it ended; the
    policy on top decides whether that was a crash and what to replace.
    """

    def __init__(self, on_frame: Callable[[bytes], None], on_exit: Callable[[int], None], *,
                 max_frame: int) -> None:
        loop = asyncio.get_running_loop()
        self.on_frame = on_frame
        self.on_exit = on_exit
        self.max_frame = max_frame
        self.hello: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.pid = 0
        self.killed = False
        self._timer: asyncio.TimerHandle | None = None

    async def start(self, command: list[str]) -> None:
        """Run `command` in its own session: signals to the parent's group never reach it, and its group dies whole."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            lambda: _Protocol(self), *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            start_new_session=True)
        self.transport = transport
        self.pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self.stdin = stdin

    def send(self, body: bytes) -> None:
        assert self.stdin is not None
        self.stdin.write(encode(body))

    def arm(self, timeout: float, on_overrun: Callable[..., None], *args: Any) -> None:
        """Call `on_overrun(*args)` unless `disarm` comes within `timeout` seconds (the policy then kills)."""
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(timeout, on_overrun, *args)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def say_goodbye(self, body: bytes) -> None:
        """Send a last frame and close stdin: a worker that reads end of file exits by itself."""
        if self.stdin is not None:
            with contextlib.suppress(Exception):
                self.stdin.write(encode(body))
                self.stdin.close()

    def kill(self) -> None:
        """SIGKILL the process group, once."""
        if self.pid and not self.killed:
            self.killed = True
            kill_group(self.pid)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _frame(self, body: bytes) -> None:
        if not self.hello.done():
            if is_hello(body):
                self.hello.set_result(None)
            else:
                self._fail_hello("its first frame was not a hello")
                self.kill()
            return
        self.on_frame(body)

    def _exit(self, code: int) -> None:
        self.disarm()
        self.close()
        if not self.exited.done():
            self.exited.set_result(code)
        self._fail_hello(f"the worker exited at start ({death_reason(code)})")
        self.on_exit(code)

    def _fail_hello(self, why: str) -> None:
        if not self.hello.done():
            self.hello.set_exception(SpawnFailed(why))
            self.hello.exception()  # retrieved here: nobody may be waiting any more


class _Protocol(asyncio.SubprocessProtocol):
    """Cuts the worker's stdout into frames. A protocol rather than a reader task: a reply is handled in
    the callback that receives it, without waking a task per frame."""

    def __init__(self, child: AsyncChild) -> None:
        self.child = child
        self.decoder = FrameDecoder(child.max_frame)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Known here, before `start` resumes: a worker that exits at once still reports its status.
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.child.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        try:
            frames = self.decoder.feed(data)
        except FrameTooLarge:
            self.child.kill()
            return
        for body in frames:
            self.child._frame(body)

    def process_exited(self) -> None:
        transport = self.child.transport
        code = transport.get_returncode() if transport is not None else None
        self.child._exit(code if code is not None else -1)
