"""The third wall's lock-down: no_new_privs, Landlock and a seccomp-bpf allow-list, set by a worker on itself.

A sandbox worker calls `lock_down()` once, after its imports and before it reads its
first request. From then on the process can read and write the descriptors it already
has (its two pipes and /dev/null), manage its own memory, read the clock, lower its own
CPU limit and exit; the kernel refuses everything else, whatever code asks: opening or
creating files, sockets, exec, fork and clone, signals to other processes, ptrace,
process_vm_*, io_uring, bpf, mount, namespaces.

Three mechanisms, each applied when the kernel has it and each holding on its own:

- `no_new_privs` (prctl): exec can never gain privileges (set-uid, file capabilities);
  both others require it.
- **Landlock** (Linux 5.13+, ABI probed): a ruleset that handles every filesystem right of
  the running ABI and grants none, so no path can be opened, created, removed, renamed or
  executed; from ABI 4 no TCP bind or connect, from ABI 6 no abstract unix sockets and no
  signals to processes outside the worker. Applied through the three syscalls directly
  (`ctypes`): the `landlock` package on PyPI (a 1.0 pre-release) covers the filesystem
  rights only, which would leave TCP and signals to seccomp alone.
- **seccomp-bpf** through libseccomp (`pyseccomp`): an allow-list, not a deny-list. A
  worker that serves requests makes only a handful of syscalls (traced: read, write, brk,
  mmap, munmap, getrusage, prlimit64), so listing what it may do is short and stays
  right across CPython versions, while a deny-list has to name every dangerous syscall
  including the ones a future kernel adds (io_uring was the classic gap). Anything else
  fails with EPERM instead of killing the worker: a script sees a PermissionError (a
  failed call, the pipeline moves on), and a syscall a new CPython needs shows up as a
  clear error in the tests rather than as dead workers.

Where the kernel lacks a mechanism the others still hold, and `describe()` says which
are active: without Landlock, seccomp alone refuses every path and socket syscall;
without seccomp (no libseccomp, or a kernel without it), Landlock still refuses files,
exec and TCP but not fork or UDP; with neither, only the rlimits and the deadline remain
(docs/overrides.md, "How the sandbox works").
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import resource
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from policyctl.sandbox.pool import WorkerPool

MECHANISMS = ("no_new_privs", "landlock", "seccomp")
LOCKDOWN_OP = "lockdown"  # the frame a worker sends right after its hello: what it locked

_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39

# Landlock (include/uapi/linux/landlock.h); syscall numbers are the same on every architecture.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
# Filesystem rights by the ABI that introduced them: 1 has bits 0-12 (execute, write, read,
# read_dir, remove_dir, remove_file, make_char/dir/reg/sock/fifo/block/sym), 2 adds refer,
# 3 truncate, 5 ioctl_dev.
_FS_BY_ABI = {1: (1 << 13) - 1, 2: 1 << 13, 3: 1 << 14, 5: 1 << 15}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1                  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1        # ABI 6


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


# What a serving worker may do; everything else is EPERM. Memory, its own descriptors, the
# clock, signal returns and exit. prlimit64 and tgkill are narrowed below by argument.
_ALLOWED_SYSCALLS = (
    "read", "readv", "write", "writev", "close", "lseek",
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
    "futex", "sched_yield", "restart_syscall", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "gettimeofday", "time",
    "getrusage", "getpid", "gettid", "getrandom",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "exit", "exit_group",
)


@dataclass(frozen=True)
class Lockdown:
    """What one worker locked, as it reported it (or what `probe` says a worker would lock)."""

    no_new_privs: bool = False
    landlock_abi: int | None = None    # the ABI whose rights were all refused; None: not applied
    seccomp: bool = False              # the allow-list filter is loaded
    missing: dict[str, str] = field(default_factory=dict)  # mechanism -> why it is not active
    pid: int | None = None

    @property
    def complete(self) -> bool:
        return self.no_new_privs and self.landlock_abi is not None and self.seccomp

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lockdown:
        abi = data.get("landlock_abi")
        pid = data.get("pid")
        missing = data.get("missing")
        return cls(no_new_privs=data.get("no_new_privs") is True,
                   landlock_abi=abi if type(abi) is int else None,
                   seccomp=data.get("seccomp") is True,
                   missing={str(k): str(v) for k, v in missing.items()} if isinstance(missing, dict) else {},
                   pid=pid if type(pid) is int else None)


@dataclass(frozen=True)
class UnsafeSwitches:
    """Walls that a test or a benchmark switches off in the workers of a pool of its own.

    Reachable only from Python code that builds a `WorkerPool` itself and passes this as its
    private `_unsafe` argument: nothing in a policy repository, `policyctl.toml`, the CLI, the
    gateway's flags or the environment leads here, and the workers get it on their command
    line from that parent alone. Switching walls 1 and 2 off (plain `exec` with every builtin,
    no result checks) is refused outside pytest, so only the test suite proves the process
    wall alone; the benchmark may only switch mechanisms of the lock-down off, for a baseline.
    """

    walls_1_2: bool = True
    lockdown: tuple[str, ...] = MECHANISMS
    # Modules a worker imports before it locks down, so a hostile test script finds them loaded
    # (as one that escaped walls 1 and 2 would hope to) and meets the kernel, not an ImportError.
    preimport: tuple[str, ...] = ()

    def to_json(self) -> str:
        return orjson.dumps({"walls_1_2": self.walls_1_2, "lockdown": list(self.lockdown),
                             "preimport": list(self.preimport)}).decode()

    @classmethod
    def from_json(cls, text: str) -> UnsafeSwitches:
        data = orjson.loads(text)
        return cls(walls_1_2=data["walls_1_2"] is not False, lockdown=tuple(map(str, data["lockdown"])),
                   preimport=tuple(map(str, data["preimport"])))


_seccomp_lib: Any = None
_seccomp_error: str | None = None


def preload() -> None:
    """Load libseccomp now, while this process may still open files and start ldconfig.

    A worker calls this first thing: pyseccomp finds the library with `ldconfig -p` (a child
    process, which RLIMIT_NPROC 0 forbids a non-root worker) and opens it (which Landlock
    forbids once applied).
    """
    global _seccomp_lib, _seccomp_error
    if _seccomp_lib is not None or _seccomp_error is not None:
        return
    try:
        import pyseccomp

        _seccomp_lib = pyseccomp
    except (OSError, RuntimeError, ImportError) as exc:
        # pyseccomp raises RuntimeError when libseccomp.so.2 is not installed.
        _seccomp_error = f"libseccomp could not be loaded: {type(exc).__name__}: {exc}"


def lock_down(mechanisms: tuple[str, ...] = MECHANISMS) -> Lockdown:
    """Lock this process down with every mechanism in `mechanisms` the kernel has; say what held.

    Irreversible, and for a worker only: after it the process cannot open a file, not even
    to import a module (call `preload` before). Order matters: no_new_privs first (both
    others need it), Landlock next (its syscalls are not on seccomp's allow-list), seccomp
    last.
    """
    missing: dict[str, str] = {}
    libc = _libc()
    wants_nnp = "no_new_privs" in mechanisms or "landlock" in mechanisms
    if wants_nnp and libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                                ctypes.c_ulong(0)) != 0:
        missing["no_new_privs"] = f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}"
    abi: int | None = None
    if "landlock" in mechanisms:
        try:
            abi = _apply_landlock(libc)
        except OSError as exc:
            missing["landlock"] = exc.strerror or str(exc)
    # Read before seccomp, which does not allow prctl; libseccomp sets it itself when it loads.
    no_new_privs = _no_new_privs(libc)
    seccomp = False
    if "seccomp" in mechanisms:
        preload()
        if _seccomp_lib is None:
            missing["seccomp"] = _seccomp_error or "libseccomp could not be loaded"
        else:
            try:
                _apply_seccomp(_seccomp_lib)
                seccomp = no_new_privs = True
            except OSError as exc:
                missing["seccomp"] = f"seccomp_load: {exc}"
    active = {"no_new_privs": no_new_privs, "landlock": abi is not None, "seccomp": seccomp}
    for name in MECHANISMS:
        if name not in mechanisms and not active[name]:
            missing.setdefault(name, "switched off")
    return Lockdown(no_new_privs=no_new_privs, landlock_abi=abi, seccomp=seccomp, missing=missing,
                    pid=os.getpid())


def probe() -> Lockdown:
    """What a worker started now would lock, asked of this process's kernel without applying anything."""
    missing: dict[str, str] = {}
    abi = None
    try:
        abi = _landlock_abi(_libc())
    except OSError as exc:
        missing["landlock"] = exc.strerror or str(exc)
    seccomp = False
    try:
        if seccomp_mode() is None:
            raise OSError(errno.ENOSYS, "the kernel has no seccomp (no Seccomp: line in /proc/self/status)")
        preload()
        if _seccomp_lib is None:
            raise OSError(errno.ENOENT, _seccomp_error or "libseccomp could not be loaded")
        seccomp = True
    except OSError as exc:
        missing["seccomp"] = exc.strerror or str(exc)
    return Lockdown(no_new_privs=True, landlock_abi=abi, seccomp=seccomp, missing=missing)


def describe(pool: WorkerPool | None = None) -> dict[str, Any]:
    """The process wall's mechanisms for a status page: what the workers locked, else what they would.

    `source` is `"worker"` when the figures are a worker's own report (of `pool`, or of this
    process's shared pool when one is running), `"probe"` when no worker has started here yet
    and they are this kernel's answer to a probe. `complete` is true when all three hold.
    """
    report: Lockdown | None = None
    if pool is None:
        from policyctl.sandbox import pool as pool_module

        pool = pool_module.running_shared_pool()
    if pool is not None:
        report = pool.lockdown()
    source = "worker" if report is not None else "probe"
    if report is None:
        report = probe()
    out = report.to_dict()
    out.update(source=source, complete=report.complete, kernel=platform.release())
    return out


# -------------------------------------------------------------------- the mechanisms


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _landlock_abi(libc: ctypes.CDLL) -> int:
    abi = libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0),
                       ctypes.c_long(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 0:
        err = ctypes.get_errno()
        why = {errno.ENOSYS: "the kernel has no Landlock (before 5.13, or built without it)",
               errno.EOPNOTSUPP: "Landlock is disabled at boot (lsm= does not list it)"}.get(err, os.strerror(err))
        raise OSError(err, f"Landlock: {why}")
    return int(abi)


def _apply_landlock(libc: ctypes.CDLL) -> int:
    abi = _landlock_abi(libc)
    fs = 0
    for since, bits in _FS_BY_ABI.items():
        if abi >= since:
            fs |= bits
    attr = _RulesetAttr(handled_access_fs=fs,
                        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    # Older kernels take the struct up to the fields they know (the rest must be zero, and is).
    fd = libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                      ctypes.c_long(ctypes.sizeof(attr)), ctypes.c_long(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        # No rule is added: every handled right is refused everywhere.
        if libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_long(fd), ctypes.c_long(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
    return abi


def _apply_seccomp(pyseccomp: Any) -> None:
    flt = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.EPERM))
    # A syscall of another ABI (32-bit `int 0x80` on x86-64) is not filtered by number: kill.
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    # Every thread of the process, should a worker ever have more than one.
    with contextlib.suppress(OSError):
        flt.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    for name in _ALLOWED_SYSCALLS:
        # A name this libseccomp or architecture does not know is skipped, not fatal.
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            flt.add_rule(pyseccomp.ALLOW, name)
    # Its own CPU limit (the worker moves it before each run) and reading any of its limits;
    # never another process's, never another resource.
    flt.add_rule(pyseccomp.ALLOW, "prlimit64", pyseccomp.Arg(0, pyseccomp.EQ, 0),
                 pyseccomp.Arg(1, pyseccomp.EQ, resource.RLIMIT_CPU))
    flt.add_rule(pyseccomp.ALLOW, "prlimit64", pyseccomp.Arg(0, pyseccomp.EQ, 0),
                 pyseccomp.Arg(2, pyseccomp.EQ, 0))
    # abort() signals its own thread; no signal to anything else.
    flt.add_rule(pyseccomp.ALLOW, "tgkill", pyseccomp.Arg(0, pyseccomp.EQ, os.getpid()))
    flt.load()


def seccomp_mode(pid: int | str = "self") -> int | None:
    """The `Seccomp:` field of /proc/PID/status (0 none, 1 strict, 2 filter), None when absent."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _no_new_privs(libc: ctypes.CDLL) -> bool:
    return bool(libc.prctl(_PR_GET_NO_NEW_PRIVS, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0),
                           ctypes.c_ulong(0)) == 1)
