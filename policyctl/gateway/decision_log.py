"""The decision log: every decision as an Event line, written by a thread off the request path, rotated by size."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import orjson

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_FLUSH_INTERVAL = 0.2
DEFAULT_MAX_BACKLOG = 100_000
DEFAULT_WINDOW = 100_000
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024  # ~16,000 decisions of 1 KB: minutes of traffic for an outcome to join
DEFAULT_BACKLOG_BYTES = 16 * 1024 * 1024


class DecisionLog:
    """JSON Lines files `decisions-<start>-<pid>-<n>.jsonl` in one directory, or nothing when disabled.

    Guarantees (docs/gateway.md says the same):
    - A record is serialised on the request path (a few microseconds) and queued; the writer
      thread writes whatever is queued every `flush_interval` seconds with one `write(2)` of
      whole lines, so the file only ever ends in the middle of a line if the process dies
      inside that call, and each gateway start opens a new file.
    - SIGTERM (and any orderly stop) drains the queue, writes it, fsyncs and closes: no loss.
    - SIGKILL loses what was still queued: at most the last flush interval of decisions.
    - The queue is bounded by records and by bytes (inputs can be 512 KiB each, so a count
      alone bounds nothing); when the writer falls behind (a slow or full disk) new records
      are counted as lost (metric and status), never dropped silently, and the request path
      never waits for the writer.
    - An outcome (`POST /v1/outcome`) is written as a second complete Event line with the same
      `id`, the decision's input and decision, and `outcome`; readers keep the last line per id.
      Outcomes join decisions still held in a window of recent decisions bounded by records
      and by bytes; the oldest are evicted first, and counted.
    """

    def __init__(self, directory: Path | None, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL, max_backlog: int = DEFAULT_MAX_BACKLOG,
                 window: int = DEFAULT_WINDOW, window_bytes: int = DEFAULT_WINDOW_BYTES,
                 backlog_bytes: int = DEFAULT_BACKLOG_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval
        self.max_backlog = max_backlog
        self.window_size = window
        self.window_max_bytes = window_bytes
        self.max_backlog_bytes = backlog_bytes
        self.window_bytes = 0
        self.window_evicted = 0
        # Each counter has one writer (the event loop adds, the writer thread subtracts), so
        # the backlog's size needs no lock on the request path.
        self._bytes_queued = 0
        self._bytes_taken = 0
        self._queue: deque[bytes] = deque()
        self._window: OrderedDict[str, bytes] = OrderedDict()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._size = 0
        self._seq = 0
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.file: Path | None = None
        self.files: list[str] = []
        # queued and lost_backlog change on the event loop; the rest on the writer thread.
        self.queued = 0
        self.lost_backlog = 0
        self.written = 0
        self.lost_write = 0
        self.outcomes = 0
        self.rotations = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def window_entries(self) -> int:
        return len(self._window)

    @property
    def backlog_bytes(self) -> int:
        return self._bytes_queued - self._bytes_taken

    @property
    def lost(self) -> int:
        return self.lost_backlog + self.lost_write

    def start(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, fsync and close (what SIGTERM does)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._drain()
        self._close_file()

    # ------------------------------------------------------------------ request path

    def decision(self, record: dict[str, Any]) -> None:
        """Queue one decision's Event line and keep it for an outcome to join."""
        if self.directory is None:
            return
        line = orjson.dumps(record)
        self._enqueue(line)
        self._remember(record["id"], line)

    def outcome(self, decision_id: str, outcome: dict[str, Any], ts: str) -> bool:
        """Queue the decision's Event line again with `outcome`; False when the decision is not in the window."""
        line = self._window.get(decision_id)
        if line is None:
            return False
        record = orjson.loads(line)
        record["outcome"] = outcome
        record["outcome_ts"] = ts
        line = orjson.dumps(record)
        self._remember(decision_id, line)
        self._enqueue(line)
        self.outcomes += 1
        return True

    def _remember(self, decision_id: str, line: bytes) -> None:
        """Keep `line` for an outcome to join, evicting the oldest while the window is over a bound."""
        window = self._window
        old = window.pop(decision_id, None)
        if old is not None:
            self.window_bytes -= len(old)
        window[decision_id] = line
        self.window_bytes += len(line)
        while window and (len(window) > self.window_size or self.window_bytes > self.window_max_bytes):
            _, evicted = window.popitem(last=False)
            self.window_bytes -= len(evicted)
            self.window_evicted += 1

    def knows(self, decision_id: str) -> bool:
        return decision_id in self._window

    def _enqueue(self, line: bytes) -> None:
        # The newest record is the one dropped: what is queued is already promised to the disk.
        if len(self._queue) >= self.max_backlog or self.backlog_bytes + len(line) > self.max_backlog_bytes:
            self.lost_backlog += 1
            self._wake.set()
            return
        self._queue.append(line)
        self._bytes_queued += len(line)
        self.queued += 1
        if len(self._queue) >= 4096:
            self._wake.set()  # a burst: write now rather than at the next interval

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            # Each batch fits what is left of the current file, or a fresh one: files rotate at
            # max_bytes and a line never straddles two. Bounded, so a backlog is no huge buffer.
            left = self.max_bytes - self._size if self._fd is not None else 0
            room = min(left if len(queue[0]) + 1 <= left else self.max_bytes, 4 * 1024 * 1024)
            batch: list[bytes] = []
            size = 0
            while queue and (not batch or size + len(queue[0]) + 1 <= room):
                line = queue.popleft()
                batch.append(line)
                size += len(line) + 1
            self._bytes_taken += size - len(batch)
            self._write(batch)

    def _write(self, batch: list[bytes]) -> None:
        data = b"\n".join(batch) + b"\n"
        try:
            if self._fd is None or (self._size > 0 and self._size + len(data) > self.max_bytes):
                self._rotate()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._size += len(data)
            self.written += len(batch)
            self.last_error = None
        except OSError as exc:
            self.lost_write += len(batch)
            self.last_error = f"{self.file}: {exc.strerror or exc}"
            self._close_file()  # a later write opens a fresh file

    def _rotate(self) -> None:
        if self._fd is not None:
            self._close_file()
            self.rotations += 1
        assert self.directory is not None
        self._seq += 1
        self.file = self.directory / f"decisions-{self._stamp}-{os.getpid()}-{self._seq:04d}.jsonl"
        self._fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        self.files.append(str(self.file))

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "dir": str(self.directory) if self.directory else None,
                "file": str(self.file) if self.file else None, "written": self.written, "backlog": self.backlog,
                "lost": self.lost, "lost_backlog_full": self.lost_backlog, "lost_write_errors": self.lost_write,
                "outcomes_joined": self.outcomes, "rotations": self.rotations, "last_error": self.last_error,
                "flush_interval_s": self.flush_interval, "max_bytes": self.max_bytes,
                "max_backlog": self.max_backlog, "backlog_bytes": self.backlog_bytes,
                "max_backlog_bytes": self.max_backlog_bytes, "outcome_window": self.window_size,
                "window_entries": self.window_entries, "window_bytes": self.window_bytes,
                "window_max_bytes": self.window_max_bytes, "window_evicted": self.window_evicted}
