"""policyctl.workers on real child processes: frames both ways, hello, deadline kills, death reasons, replacement."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest

from policyctl.workers import (
    Backoff,
    ChildGone,
    Expired,
    FrameDecoder,
    FrameTooLarge,
    SpawnFailed,
    death_reason,
    encode,
    python_command,
)
from policyctl.workers.aio import AsyncChild
from policyctl.workers.sync import Child

MAX_FRAME = 8 * 1024 * 1024

# A worker that echoes each frame, or on request sleeps, segfaults, exits, or starts a child of its own.
ECHO = '''
import os, resource, signal, subprocess, sys, time
import orjson
from policyctl.workers.child import say_hello, take_pipes
from policyctl.workers.frames import read_frame, write_frame

resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfault leaves no core file behind
mode = sys.argv[1] if len(sys.argv) > 1 else "echo"
proto_in, proto_out = take_pipes(keep_stderr=False)
if mode == "exit-at-start":
    sys.exit(3)
if mode == "no-hello":
    time.sleep(60)
if mode == "not-a-worker":
    write_frame(proto_out, b'{"hi": 1}')
    time.sleep(60)
say_hello(proto_out)
while (body := read_frame(proto_in, 8 * 1024 * 1024)) is not None:
    message = orjson.loads(body) if body.startswith(b"{") else {}
    op = message.get("op")
    if op == "sleep":
        time.sleep(message["s"])
    elif op == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif op == "exit":
        sys.exit(message["code"])
    elif op == "spawn":
        grandchild = subprocess.Popen(["sleep", "60"])
        body = orjson.dumps({"pid": grandchild.pid})
    write_frame(proto_out, body)
'''


@pytest.fixture
def echo(tmp_path: Path) -> list[str]:
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO)
    return [sys.executable, str(script)]


def spawn(command: list[str], *args: str, timeout_s: float = 20.0) -> Child:
    return Child.spawn([*command, *args], max_frame=MAX_FRAME, timeout_s=timeout_s)


def ask(child: Child, message: dict[str, object], timeout_s: float = 20.0) -> bytes:
    child.send(encode(orjson.dumps(message)), time.monotonic() + timeout_s)
    return child.receive(time.monotonic() + timeout_s)


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie not yet reaped by init counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------- frames


def test_frames_survive_any_split_and_a_huge_length_is_refused() -> None:
    stream = encode(b"one") + encode(b"") + encode(b"x" * 70_000)
    decoder = FrameDecoder(MAX_FRAME)
    frames = [f for i in range(0, len(stream), 7) for f in decoder.feed(stream[i:i + 7])]
    assert frames == [b"one", b"", b"x" * 70_000]
    with pytest.raises(FrameTooLarge):
        FrameDecoder(1024).feed(encode(b"y" * 2048))


def test_a_real_child_echoes_frames_small_and_larger_than_a_pipe(echo: list[str]) -> None:
    child = spawn(echo)
    try:
        assert ask(child, {"op": "echo", "n": 1}) == orjson.dumps({"op": "echo", "n": 1})
        big = os.urandom(3 * 1024 * 1024)  # far over a pipe's 64 KiB: both sides must loop
        child.send(encode(big), time.monotonic() + 20)
        assert child.receive(time.monotonic() + 20) == big
    finally:
        child.kill()
        child.reap()


def test_the_asyncio_side_shares_the_codec_and_the_hello(echo: list[str]) -> None:
    async def scenario() -> list[bytes]:
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        child = AsyncChild(replies.put_nowait, lambda code: None, max_frame=MAX_FRAME)
        await child.start(echo)
        await asyncio.wait_for(child.hello, 20)
        child.send(b"first")
        child.send(b"second" * 20_000)
        got = [await asyncio.wait_for(replies.get(), 20) for _ in range(2)]
        child.say_goodbye(b"last")  # echoed, then end of file: it exits by itself
        assert await asyncio.wait_for(child.exited, 20) == 0
        return got

    assert asyncio.run(scenario()) == [b"first", b"second" * 20_000]


# ---------------------------------------------------------------- spawning


@pytest.mark.parametrize(("mode", "why"), [("exit-at-start", "exit status 3"),
                                           ("not-a-worker", "not a hello"),
                                           ("no-hello", "no hello within 1 s")])
def test_a_child_that_does_not_say_hello_is_refused_with_the_reason(echo: list[str], mode: str, why: str) -> None:
    with pytest.raises(SpawnFailed, match=why):
        spawn(echo, mode, timeout_s=1.0)


def test_python_command_runs_a_module_main_isolated_with_an_empty_environment() -> None:
    command = python_command("policyctl.workers.lifecycle", isolated=True)
    assert command[:2] == [sys.executable, "-I"]
    assert python_command("policyctl.gateway.evaluator") == [sys.executable, "-m", "policyctl.gateway.evaluator"]


# ---------------------------------------------------------------- deadlines and deaths


def test_a_deadline_kills_the_whole_process_group_and_names_sigkill(echo: list[str]) -> None:
    child = spawn(echo)
    grandchild = orjson.loads(ask(child, {"op": "spawn"}))["pid"]
    child.send(encode(orjson.dumps({"op": "sleep", "s": 30})), time.monotonic() + 5)
    started = time.monotonic()
    with pytest.raises(Expired):
        child.receive(time.monotonic() + 0.3)
    assert time.monotonic() - started < 5
    child.kill()
    assert child.death() == "signal SIGKILL"
    child.reap()
    deadline = time.monotonic() + 5
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(grandchild), "the worker's own child outlived the kill"


def test_a_segfaulting_child_is_named_sigsegv(echo: list[str]) -> None:
    child = spawn(echo)
    child.send(encode(orjson.dumps({"op": "segv"})), time.monotonic() + 5)
    with pytest.raises(ChildGone) as gone_:
        child.receive(time.monotonic() + 20)
    assert gone_.value.before_request is False  # it had the request: not to be retried elsewhere
    assert child.death() == "signal SIGSEGV"
    child.reap()


def test_a_dead_child_refuses_the_next_request_before_it_is_delivered(echo: list[str]) -> None:
    child = spawn(echo)
    child.send(encode(orjson.dumps({"op": "exit", "code": 7})), time.monotonic() + 5)
    child.proc.wait(20)
    with pytest.raises(ChildGone) as gone_:
        child.send(encode(b"x" * 200_000), time.monotonic() + 5)
    assert gone_.value.before_request is True
    assert child.death() == "exit status 7"
    child.reap()


def test_the_asyncio_deadline_kills_and_the_exit_names_the_signal(echo: list[str]) -> None:
    async def scenario() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        exits: asyncio.Future[int] = loop.create_future()
        overran: list[bool] = []
        child = AsyncChild(lambda body: None, exits.set_result, max_frame=MAX_FRAME)
        await child.start(echo)
        await asyncio.wait_for(child.hello, 20)
        child.send(orjson.dumps({"op": "sleep", "s": 30}))
        child.arm(0.2, lambda: (overran.append(True), child.kill()))
        killed = death_reason(await asyncio.wait_for(exits, 20))
        assert overran == [True]

        segv_exit: asyncio.Future[int] = loop.create_future()
        second = AsyncChild(lambda body: None, segv_exit.set_result, max_frame=MAX_FRAME)
        await second.start(echo)
        await asyncio.wait_for(second.hello, 20)
        second.send(orjson.dumps({"op": "segv"}))
        return killed, death_reason(await asyncio.wait_for(segv_exit, 20))

    assert asyncio.run(scenario()) == ("signal SIGKILL", "signal SIGSEGV")


def test_death_reasons_name_limits_signals_and_exit_codes() -> None:
    assert death_reason(0) == "exit status 0"
    assert death_reason(-signal.SIGXCPU) == "signal SIGXCPU, the CPU time limit"
    assert death_reason(-signal.SIGXFSZ) == "signal SIGXFSZ, the file size limit"
    assert death_reason(-signal.SIGABRT) == "signal SIGABRT"
    assert death_reason(None).startswith("no exit status")


# ---------------------------------------------------------------- replacement


def test_backoff_is_free_for_rare_deaths_then_doubles_up_to_a_cap_and_forgets() -> None:
    now = [0.0]
    backoff = Backoff(window_s=30, free=2, base_s=0.1, cap_s=1.0, clock=lambda: now[0])
    delays = []
    for _ in range(7):
        backoff.died("a")
        delays.append(backoff.delay("a"))
    assert delays == [0.0, 0.0, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay("b") == 0.0  # slots are counted apart
    now[0] = 31.0
    assert backoff.delay("a") == 0.0


def test_a_dead_child_is_replaced_after_its_backoff(echo: list[str]) -> None:
    backoff = Backoff(free=1, base_s=0.2, cap_s=1.0)
    pids: list[int] = []
    waited: list[float] = []
    for _ in range(3):
        time.sleep(delay := backoff.delay("slot"))
        waited.append(delay)
        child = spawn(echo)
        pids.append(child.pid)
        assert ask(child, {"op": "echo"}) == b'{"op":"echo"}'
        child.send(encode(orjson.dumps({"op": "segv"})), time.monotonic() + 5)
        with pytest.raises(ChildGone):
            child.receive(time.monotonic() + 20)
        assert child.death() == "signal SIGSEGV"
        child.reap()
        backoff.died("slot")
    assert len(set(pids)) == 3
    assert waited == [0.0, 0.0, 0.4]
