"""Worker processes: length-prefixed frames, spawning with a hello, deadline kills, death reasons, replacement; one-shot children (`oneshot`).

The sandbox (threads, rlimits, a prewarmed pool) and the gateway's evaluation (asyncio,
revision affinity) are two policies on this one machinery. Only the light modules are
re-exported here: a sandbox worker imports `policyctl.workers.frames` at start-up and must
not pay for asyncio or subprocess; the parents import `sync` or `aio` themselves.
"""

from __future__ import annotations

from policyctl.workers.errors import ChildGone, Expired, SpawnFailed
from policyctl.workers.frames import (
    HEADER,
    FrameDecoder,
    FrameTooLarge,
    encode,
    read_frame,
    write_all,
    write_frame,
)
from policyctl.workers.lifecycle import death_reason, kill_group, python_command
from policyctl.workers.replacement import Backoff

__all__ = [
    "HEADER",
    "Backoff",
    "ChildGone",
    "Expired",
    "FrameDecoder",
    "FrameTooLarge",
    "SpawnFailed",
    "death_reason",
    "encode",
    "kill_group",
    "python_command",
    "read_frame",
    "write_all",
    "write_frame",
]
