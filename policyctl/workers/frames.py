"""Length-prefixed frames on pipes: a 4-byte big-endian length, then the body (orjson by convention).

One codec for both sides and both styles: `read_frame`/`write_frame` block (a worker's
loop), or with a deadline wait on a non-blocking descriptor (a parent on a thread);
`FrameDecoder` cuts frames out of whatever bytes an asyncio protocol receives.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import struct
import time
from collections.abc import Callable
from typing import IO

from policyctl.workers.errors import Expired

HEADER = struct.Struct(">I")
_CHUNK = 1 << 20  # one read at the most: a huge frame is read in pieces, never in one allocation


class FrameTooLarge(ValueError):
    """A frame's length is over the bound: the peer is broken (or hostile), not talkative."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"frame of {size} bytes (at most {max_bytes})")
        self.size = size


def encode(body: bytes) -> bytes:
    """`body` with its length in front, ready for one write."""
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Cuts frames out of a byte stream that arrives in arbitrary pieces (an asyncio protocol's data)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The frames `data` completes, in order; raises FrameTooLarge at a length over the bound."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            if size > self.max_bytes:
                raise FrameTooLarge(size, self.max_bytes)
            end = HEADER.size + size
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[HEADER.size:end]))
            del buffer[:end]
        return frames


def read_frame(source: int | IO[bytes], max_bytes: int, deadline: float | None = None) -> bytes | None:
    """One frame from `source`, or None at end of file (the peer went away).

    With `deadline` (a `time.monotonic()` value; `source` a non-blocking descriptor), raise
    Expired when it passes first. OSError from the descriptor is the caller's to interpret.
    """
    read = _reader(source, deadline)
    head = _read_exactly(read, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    return _read_exactly(read, size)


def write_frame(fd: int, body: bytes, deadline: float | None = None) -> None:
    """Write `body` as one frame (see `write_all` for the deadline)."""
    write_all(fd, encode(body), deadline)


def write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write all of `data`; with `deadline` (non-blocking `fd`), raise Expired when the peer stops reading.

    A peer that has gone raises BrokenPipeError (an OSError), for the caller to interpret.
    """
    view = memoryview(data)
    poller = _poller(fd, select.POLLOUT) if deadline is not None else None
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            written = 0
        view = view[written:]
        if view and poller is not None and deadline is not None:
            _wait(poller, deadline)


def _read_exactly(read: Callable[[int], bytes], n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = read(min(n, _CHUNK))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _reader(source: int | IO[bytes], deadline: float | None) -> Callable[[int], bytes]:
    if not isinstance(source, int):
        return source.read
    if deadline is None:
        return functools.partial(os.read, source)
    poller = _poller(source, select.POLLIN)

    def read(n: int) -> bytes:
        while True:
            try:
                return os.read(source, n)
            except BlockingIOError:
                _wait(poller, deadline)

    return read


def _poller(fd: int, events: int) -> select.poll:
    poller = select.poll()
    poller.register(fd, events)
    return poller


def _wait(poller: select.poll, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Expired()
    with contextlib.suppress(InterruptedError):
        poller.poll(max(1, int(remaining * 1000 + 0.999)))
