"""The worker's side: take the protocol pipes off stdio, then say hello."""

from __future__ import annotations

import os
import signal

import orjson

from policyctl.workers.frames import write_frame
from policyctl.workers.lifecycle import hello_message


def take_pipes(*, keep_stderr: bool) -> tuple[int, int]:
    """Move the protocol from stdin/stdout to private descriptors, and return them (in, out).

    Afterwards 0 and 1 point elsewhere, so nothing that reads stdin or prints by accident
    (a library banner, a stray print in a script) can corrupt a frame: stdout goes to
    stderr when `keep_stderr` (the gateway's log shows it), else everything goes to
    /dev/null. Ctrl-C belongs to the parent, which stops its workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    if keep_stderr:
        os.dup2(2, 1)
    else:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    os.close(devnull)
    return proto_in, proto_out


def say_hello(fd: int) -> None:
    """Tell the parent this worker is ready; it waits for this frame before it sends any request."""
    write_frame(fd, orjson.dumps(hello_message()))
