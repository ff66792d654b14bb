"""The process wall alone: with walls 1 and 2 switched off, hostile scripts meet only the kernel's lock-down.

Each attack is plain Python run by `exec` with every builtin in a real sandbox worker
(`UnsafeSwitches(walls_1_2=False)`, which only the test suite can use), with the modules it
wants already imported, as a script that escaped RestrictedPython and the guards would
find them. Where the resource limits alone would not stop it, the same script first runs
in a worker without the lock-down and succeeds there, so a pass means the lock-down
stopped it, not a typo in the attack. The canary is a random secret in a file the worker's
user can read; the listener is a real TCP socket on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from policyctl.sandbox import SandboxError, WorkerPool, run_override_traced
from policyctl.sandbox.wall import MECHANISMS, UnsafeSwitches, describe, probe, seccomp_mode

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the lock-down is Linux's seccomp and Landlock")

PREIMPORT = ("socket", "subprocess", "ctypes", "encodings.idna")
FILE = "overrides/hostile.py"


def _pool(lockdown: tuple[str, ...]) -> Iterator[WorkerPool]:
    pool = WorkerPool(size=1, _unsafe=UnsafeSwitches(walls_1_2=False, lockdown=lockdown, preimport=PREIMPORT))
    assert pool.wait_ready(), pool.last_spawn_error
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def locked() -> Iterator[WorkerPool]:
    """Walls 1 and 2 off, the full lock-down on: wall 3 alone."""
    yield from _pool(MECHANISMS)


@pytest.fixture(scope="module")
def unlocked() -> Iterator[WorkerPool]:
    """Walls 1 and 2 off and no lock-down: the control, where the attacks must work."""
    yield from _pool(())


@pytest.fixture
def canary(tmp_path: Path) -> tuple[Path, str]:
    secret = secrets.token_hex(16)
    path = tmp_path / "canary.txt"
    path.write_text(f"canary {secret}\n")
    path.chmod(0o644)
    return path, secret


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside the worker, for the attacks on other processes."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def attack(pool: WorkerPool, body: str, input: dict[str, Any]) -> dict[str, Any]:
    """Run `decide(input)` whose body tries each step in `body` and reports each outcome by name."""
    source = ("import ctypes, os, signal, socket, subprocess\n"
              "libc = ctypes.CDLL(None, use_errno=True)\n"
              "def forked(fork):\n"
              "    pid = fork()\n"
              "    if pid == 0:\n"
              "        os._exit(0)  # a child, had there been one, leaves at once\n"
              "    return pid\n"
              "def attempt(out, name, fn):\n"
              "    try:\n"
              "        out[name] = repr(fn())\n"
              "    except BaseException as exc:\n"
              "        out[name] = f'{type(exc).__name__}: {exc}'\n"
              "def decide(input):\n"
              "    out = {}\n"
              + "".join(f"    {line}\n" for line in body.strip().splitlines())
              + "    return out\n")
    outcome = pool.run(source, orjson.dumps(input), file=FILE, timeout_s=2.0)
    assert isinstance(outcome.result, dict)
    return outcome.result


def raw_syscall(name: str, number: int, *args: str) -> str:
    """A step that calls syscall `number` through libc, past Python: the result and errno."""
    return (f"attempt(out, {name!r}, lambda: (libc.syscall({number}, {', '.join(args)}), "
            "os.strerror(ctypes.get_errno())))")


def refused(text: str) -> bool:
    return text.startswith(("PermissionError", "OSError")) or "Operation not permitted" in text \
        or "Permission denied" in text


def test_this_machine_has_every_mechanism() -> None:
    """The tests below prove the full lock-down; say plainly when this kernel cannot apply it."""
    report = probe()
    assert report.complete, f"the lock-down is incomplete on this machine: {report.missing}"


def test_walls_1_and_2_are_really_off(locked: WorkerPool) -> None:
    """Imports, dunders and every builtin: what the compile wall and the guards would refuse runs here."""
    out = attack(locked, "attempt(out, 'pid', lambda: os.getpid())\n"
                         "attempt(out, 'dunder', lambda: ().__class__.__bases__[0].__name__)", {})
    assert out["dunder"] == "'object'" and out["pid"].isdigit()


READ_STEPS = f"""
attempt(out, "open", lambda: open(input["path"]).read())
attempt(out, "os.open", lambda: os.read(os.open(input["path"], os.O_RDONLY), 200).decode())
attempt(out, "via /proc/self/root", lambda: open("/proc/self/root" + input["path"]).read())
attempt(out, "stat", lambda: os.stat(input["path"]).st_size)
attempt(out, "listdir", lambda: os.listdir(input["dir"]))
attempt(out, "environ of the parent", lambda: open(f"/proc/{{os.getppid()}}/environ").read())
{raw_syscall("openat", 257, "-100", "input['path'].encode()", "0")}
{raw_syscall("open_by_handle_at", 304, "-100", "None", "0")}
{raw_syscall("io_uring_setup", 425, "8", "None")}
"""


def test_reading_a_canary_file_is_stopped(locked: WorkerPool, unlocked: WorkerPool,
                                          canary: tuple[Path, str]) -> None:
    path, secret = canary
    input = {"path": str(path), "dir": str(path.parent)}
    control = attack(unlocked, READ_STEPS, input)
    assert secret in control["open"] and secret in control["os.open"]  # without the lock-down it leaks
    out = attack(locked, READ_STEPS, input)
    assert secret not in repr(out)
    assert "canary.txt" not in out["listdir"]
    for step in ("open", "os.open", "via /proc/self/root", "stat", "listdir", "environ of the parent"):
        assert refused(out[step]), (step, out[step])
    for step in ("openat", "open_by_handle_at", "io_uring_setup"):
        assert out[step].startswith("(-1,") and "Operation not permitted" in out[step], (step, out[step])


WRITE_STEPS = """
attempt(out, "create", lambda: open(input["new"], "x").close())
attempt(out, "os.open O_CREAT", lambda: os.close(os.open(input["new2"], os.O_WRONLY | os.O_CREAT, 0o644)))
attempt(out, "mkdir", lambda: os.mkdir(input["dir"]))
attempt(out, "symlink", lambda: os.symlink("/etc/passwd", input["link"]))
attempt(out, "truncate", lambda: os.truncate(input["victim"], 0))
attempt(out, "rename", lambda: os.rename(input["victim"], input["new3"]))
attempt(out, "unlink", lambda: os.unlink(input["victim"]))
"""


def test_writing_creating_or_removing_files_is_stopped(locked: WorkerPool, unlocked: WorkerPool,
                                                       tmp_path: Path) -> None:
    def paths(root: Path) -> dict[str, str]:
        root.mkdir()
        victim = root / "victim.txt"
        victim.write_text("keep me\n")
        return {"new": str(root / "new.txt"), "new2": str(root / "new2.txt"), "new3": str(root / "moved.txt"),
                "dir": str(root / "dir"), "link": str(root / "link"), "victim": str(victim)}

    control_paths = paths(tmp_path / "control")
    attack(unlocked, WRITE_STEPS, control_paths)
    assert Path(control_paths["new"]).exists() and Path(control_paths["dir"]).is_dir()
    assert not Path(control_paths["victim"]).exists()  # renamed or removed without the lock-down

    locked_paths = paths(tmp_path / "locked")
    out = attack(locked, WRITE_STEPS, locked_paths)
    for step, text in out.items():
        assert refused(text), (step, text)
    assert sorted(p.name for p in (tmp_path / "locked").iterdir()) == ["victim.txt"]
    assert Path(locked_paths["victim"]).read_text() == "keep me\n"


CONNECT_STEPS = f"""
attempt(out, "socket", lambda: socket.socket())
attempt(out, "create_connection", lambda: socket.create_connection(("127.0.0.1", input["port"]), 1).close())
attempt(out, "udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", input["port"])))
attempt(out, "unix", lambda: socket.socket(socket.AF_UNIX).connect("\\0policyctl-abstract"))
attempt(out, "socketpair", lambda: socket.socketpair())
{raw_syscall("socket(2) via libc", 41, "2", "1", "0")}
"""


def _connections(listener: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def test_connecting_to_a_loopback_listener_is_stopped(locked: WorkerPool, unlocked: WorkerPool,
                                                      listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    attack(unlocked, CONNECT_STEPS, {"port": port})
    time.sleep(0.05)
    assert _connections(listener) == 1  # without the lock-down it gets through
    out = attack(locked, CONNECT_STEPS, {"port": port})
    time.sleep(0.05)
    assert _connections(listener) == 0
    for step in ("socket", "create_connection", "udp", "unix", "socketpair"):
        assert refused(out[step]), (step, out[step])
    assert out["socket(2) via libc"].startswith("(-1,") and "Operation not permitted" in out["socket(2) via libc"]


EXEC_STEPS = """
attempt(out, "execv", lambda: os.execv("/bin/sh", ["sh", "-c", f"echo pwned > {input['marker']}"]))
attempt(out, "subprocess", lambda: subprocess.run(["/bin/sh", "-c", f"echo pwned > {input['marker']}"]))
attempt(out, "os.system", lambda: os.system(f"echo pwned > {input['marker']}"))
attempt(out, "posix_spawn", lambda: os.posix_spawn("/bin/sh", ["sh", "-c", f"echo pwned > {input['marker']}"], {}))
attempt(out, "fork", lambda: forked(os.fork))
attempt(out, "clone via libc", lambda: (forked(libc.fork), os.strerror(ctypes.get_errno())))
"""


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_exec_and_new_processes_are_stopped(locked: WorkerPool, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    out = attack(locked, EXEC_STEPS, {"marker": str(marker)})
    assert not marker.exists()
    for step in ("execv", "subprocess", "posix_spawn", "fork"):
        assert refused(out[step]), (step, out[step])
    assert out["os.system"] != "0"  # the shell never ran (glibc reports 127: it could not start it)
    assert out["clone via libc"].startswith("(-1,") and "Operation not permitted" in out["clone via libc"]
    (pid,) = locked.worker_pids()
    assert _children(pid) == []
    # The worker that was asked to exec is still the sandbox worker, and still answers.
    assert attack(locked, "attempt(out, 'pid', lambda: os.getpid())", {})["pid"] == str(pid)


def test_other_processes_cannot_be_signalled_or_traced(locked: WorkerPool,
                                                       bystander: subprocess.Popen[bytes]) -> None:
    steps = f"""
attempt(out, "kill", lambda: os.kill(input["pid"], signal.SIGKILL))
attempt(out, "kill the parent (signal 0)", lambda: os.kill(os.getppid(), 0))
attempt(out, "killpg", lambda: os.killpg(os.getpgid(input["pid"]), signal.SIGKILL))
{raw_syscall("ptrace attach", 101, "16", "input['pid']", "0", "0")}
{raw_syscall("process_vm_readv", 310, "input['pid']", "None", "0", "None", "0", "0")}
{raw_syscall("pidfd_open", 434, "input['pid']", "0")}
"""
    out = attack(locked, steps, {"pid": bystander.pid})
    for step in ("kill", "kill the parent (signal 0)", "killpg"):
        assert refused(out[step]), (step, out[step])
    for step in ("ptrace attach", "process_vm_readv", "pidfd_open"):
        assert out[step].startswith("(-1,") and "Operation not permitted" in out[step], (step, out[step])
    assert bystander.poll() is None
    status = Path(f"/proc/{bystander.pid}/status").read_text()
    assert "TracerPid:\t0" in status


def test_the_lock_down_cannot_be_lifted_or_the_limits_raised(locked: WorkerPool) -> None:
    steps = f"""
attempt(out, "raise RLIMIT_AS", lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_AS, (-1, -1)))
attempt(out, "raise RLIMIT_NOFILE", lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (4096, 4096)))
{raw_syscall("prctl(PR_SET_SECCOMP, disabled)", 157, "22", "0", "0", "0", "0")}
{raw_syscall("seccomp(SET_MODE_FILTER)", 317, "1", "0", "None")}
{raw_syscall("unshare(CLONE_NEWUSER)", 272, "0x10000000")}
{raw_syscall("chroot", 161, "b'/'")}
"""
    out = attack(locked, steps, {})
    assert out["raise RLIMIT_AS"].startswith("ValueError") and out["raise RLIMIT_NOFILE"].startswith("ValueError")
    for step, text in out.items():
        if step.startswith("raise"):
            continue
        assert text.startswith("(-1,") and "Operation not permitted" in text, (step, text)


@pytest.mark.parametrize(("mechanism", "errno_text"), [("seccomp", "Operation not permitted"),
                                                       ("landlock", "Permission denied")])
def test_each_mechanism_alone_keeps_files_and_exec_out(mechanism: str, errno_text: str,
                                                      canary: tuple[Path, str], tmp_path: Path,
                                                      listener: socket.socket) -> None:
    """Where a kernel lacks one mechanism the other still refuses files, exec and TCP (docs/overrides.md)."""
    lockdown = ("no_new_privs", "landlock") if mechanism == "landlock" else ("seccomp",)
    path, secret = canary
    marker = tmp_path / "marker"
    steps = """
attempt(out, "read", lambda: open(input["path"]).read())
attempt(out, "create", lambda: open(input["marker"], "x").close())
attempt(out, "exec", lambda: subprocess.run(["/bin/sh", "-c", f"echo pwned > {input['marker']}"]))
attempt(out, "tcp", lambda: socket.create_connection(("127.0.0.1", input["port"]), 1).close())
"""
    for pool in _pool(lockdown):
        assert pool.lockdown() is not None
        report = pool.lockdown()
        assert report is not None and (report.seccomp if mechanism == "seccomp" else report.landlock_abi)
        out = attack(pool, steps, {"path": str(path), "marker": str(marker), "port": listener.getsockname()[1]})
    assert secret not in repr(out) and not marker.exists()
    time.sleep(0.05)
    assert _connections(listener) == 0
    for step in ("read", "create"):
        assert errno_text in out[step], (step, out[step])
    assert refused(out["exec"]) and refused(out["tcp"]), out


# -------------------------------------------------------------------- the production worker


@pytest.fixture(scope="module")
def production() -> Iterator[WorkerPool]:
    """A pool as the gateway starts it: every wall on."""
    pool = WorkerPool(size=1)
    assert pool.wait_ready(), pool.last_spawn_error
    yield pool
    pool.close()


def test_the_worker_runs_with_nothing_but_its_pipes(production: WorkerPool) -> None:
    """Seen from outside, through /proc: locked, an empty environment and directory, five descriptors."""
    (pid,) = production.worker_pids()
    proc = Path(f"/proc/{pid}")
    status = (proc / "status").read_text()
    assert "NoNewPrivs:\t1" in status
    assert seccomp_mode(pid) == 2  # a filter
    assert (proc / "environ").read_bytes() == b""
    cwd = Path(os.readlink(proc / "cwd"))
    assert list(cwd.iterdir()) == []
    fds = {int(fd): os.readlink(proc / "fd" / fd) for fd in os.listdir(proc / "fd")}
    assert sorted(fds) == [0, 1, 2, 3, 4], fds
    assert {fds[0], fds[1], fds[2]} == {"/dev/null"}
    assert fds[3].startswith("pipe:") and fds[4].startswith("pipe:")
    limits = (proc / "limits").read_text()
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["16", "16"]
               for line in limits.splitlines())


def test_the_worker_reports_what_it_locked(production: WorkerPool) -> None:
    (pid,) = production.worker_pids()
    report = production.lockdown()
    assert report is not None and report.pid == pid
    assert report.complete and report.missing == {}
    status = describe(production)
    assert status["source"] == "worker" and status["complete"] is True
    assert status["seccomp"] is True and status["no_new_privs"] is True
    assert status["landlock_abi"] == probe().landlock_abi
    assert production.stats()["lockdown"]["seccomp"] is True


def test_overrides_work_as_before_under_the_lock_down(production: WorkerPool) -> None:
    source = ('import math\n'
              'def decide(input):\n'
              '    ranked = sorted(input["agents"], key=lambda a: (-math.sqrt(a["load"]), a["id"]))\n'
              '    print(f"ranked {[a[\'id\'] for a in ranked]} \\N{BULLET}")\n'
              '    return {"action": "arbitrate", "params": {"winner": ranked[0]["id"]}}\n')
    input = {"agents": [{"id": "a", "load": 4}, {"id": "b", "load": 9}]}
    for _ in range(3):
        run = run_override_traced(source, input, 1.0, file="overrides/x.py", pool=production)
        assert run.decision == {"action": "arbitrate", "params": {"winner": "b"}}
        assert run.printed == "ranked ['b', 'a'] \N{BULLET}\n"
    with pytest.raises(SandboxError, match="KeyError"):
        run_override_traced("def decide(input):\n    return input['nope']\n", input, 1.0, pool=production)


def test_walls_1_and_2_cannot_be_switched_off_outside_the_test_suite() -> None:
    code = ("from policyctl.sandbox.pool import WorkerPool\n"
            "from policyctl.sandbox.wall import UnsafeSwitches\n"
            "WorkerPool(size=1, prewarm=False, _unsafe=UnsafeSwitches(walls_1_2=False))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "only by the test suite" in done.stderr


def test_the_lock_down_is_the_workers_alone(production: WorkerPool, tmp_path: Path) -> None:
    """The process that started the workers (here pytest, in production the gateway) is not locked."""
    assert production.lockdown() is not None
    (tmp_path / "parent.txt").write_text("still writable")
    assert (tmp_path / "parent.txt").read_text() == "still writable"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
