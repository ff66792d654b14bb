"""The override sandbox: the compile wall, legitimate scripts, decision checks, and the worker pool."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from policyctl.errors import PolicyctlError
from policyctl.model.records import ACTIONS
from policyctl.sandbox import (
    InvalidDecision,
    OverrideRuntimeError,
    SandboxCompileError,
    SandboxError,
    SandboxLimitError,
    SandboxTimeout,
    SandboxViolation,
    WorkerPool,
    compile_problems,
    run_override,
    run_override_traced,
)
from policyctl.sandbox import result as sandbox_result
from policyctl.sandbox.limits import MAX_SOURCE_BYTES

CONFLICT: dict[str, Any] = {
    "kind": "conflict",
    "agents": [{"id": "deploy-2", "role": "deploy", "priority": 5},
               {"id": "backup-1", "role": "backup", "priority": 10},
               {"id": "deploy-1", "role": "deploy", "priority": 5}],
    "resource": {"kind": "port", "port": 22, "host": "bastion-1"},
}
ACTION: dict[str, Any] = {
    "kind": "action",
    "agents": [{"id": "etl-3", "role": "etl", "priority": 5}],
    "action": {"type": "file_share", "protocol": "smb", "file_type": "parquet", "size_bytes": 1200},
    "resource": {"kind": "share", "id": "fs-2"},
}


def script(body: str) -> str:
    return "def decide(input):\n" + "".join(f"    {line}\n" for line in body.splitlines())


# ------------------------------------------------------------------------- the compile wall


@pytest.mark.parametrize(("source", "line", "needle"), [
    ("import os\ndef decide(input):\n    return None\n", 1, "imports are not allowed"),
    ("from os import path\ndef decide(input):\n    return None\n", 1, "imports are not allowed"),
    ("import math\nimport json\ndef decide(input):\n    return None\n", 2, "except `import math`"),
    ("from math import *\ndef decide(input):\n    return None\n", 1, "`from math import *` is not allowed"),
    ("from math import system\ndef decide(input):\n    return None\n", 1, "math.system is not available"),
    ("def decide(input):\n    return open('/etc/passwd').read()\n", 2, "'open' is not available"),
    ("def decide(input):\n    exec('x = 1')\n", 2, "Exec calls are not allowed"),
    ("def decide(input):\n    return eval('1')\n", 2, "Eval calls are not allowed"),
    ("def decide(input):\n    return compile('1', 'f', 'eval')\n", 2, "'compile' is not available"),
    ("def decide(input):\n    return input.__class__\n", 2, '"__class__" is an invalid attribute name'),
    ("def decide(input):\n    _x = 1\n", 2, '"_x" is an invalid variable name'),
    ("class Evil:\n    pass\ndef decide(input):\n    return None\n", 1, "class definitions are not allowed"),
    ("def decide(input):\n    return type(input)\n", 2, "'type' is not available"),
    ("def decide(input, other):\n    return None\n", 1, "exactly one argument"),
    ("def decide(input):\n    return None\n    def f(:\n", 3, "not valid Python"),
    ("def other(input):\n    return None\n", None, "no `def decide(input):`"),
])
def test_compile_wall_names_file_and_line(source: str, line: int | None, needle: str) -> None:
    problems = compile_problems(source, file="overrides/x.py")
    assert problems, source
    assert any(needle in p.message and p.line == line for p in problems), [str(p) for p in problems]
    assert all(p.file == "overrides/x.py" and p.code == "override_compile" for p in problems)
    # run_override refuses it too, before any worker sees it, with the same file:line.
    with pytest.raises(SandboxCompileError) as info:
        run_override(source, CONFLICT, 1.0)
    assert info.value.problems


def test_compile_wall_caps_the_source_size() -> None:
    source = script("return None") + "# " + "x" * MAX_SOURCE_BYTES + "\n"
    (problem,) = compile_problems(source, file="overrides/big.py")
    assert "limit is 65536" in problem.message


def test_compile_wall_survives_deeply_nested_expressions() -> None:
    for source in ("x = " + "-" * 60000 + "1\n", "x = 1" + "+1" * 5000 + "\n", "x = " + "(" * 300 + ")" * 300):
        problems = compile_problems(source + "\ndef decide(input):\n    return None\n", file="o.py")
        assert problems and problems[0].code == "override_compile"


def test_a_local_variable_may_shadow_an_unavailable_builtin() -> None:
    assert compile_problems(script("type = input['kind']\nreturn None"), file="o.py") == []


def test_sandbox_errors_are_policyctl_errors() -> None:
    for cls in (SandboxCompileError, SandboxViolation, InvalidDecision, OverrideRuntimeError, SandboxTimeout,
                SandboxLimitError):
        assert issubclass(cls, SandboxError) and issubclass(cls, PolicyctlError)


def test_the_worker_knows_the_same_actions_as_the_model() -> None:
    assert tuple(sandbox_result.ACTIONS) == tuple(ACTIONS)


# ------------------------------------------------------------------------- legitimate overrides

LEGIT: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = [
    ("sorting", '''
"""Serialize deploy agents on port 22 (INC-4412)."""
OVERRIDE = {"match": {"kind": "conflict"}, "expires": "2099-01-01T00:00:00Z", "priority": 100}

def decide(input):
    ranked = sorted(input["agents"], key=lambda a: (-a.get("priority", 0), a["id"]))
    return {"action": "arbitrate", "params": {"winner": ranked[0]["id"], "order": [a["id"] for a in ranked]}}
''', CONFLICT, {"action": "arbitrate",
                "params": {"winner": "backup-1", "order": ["backup-1", "deploy-1", "deploy-2"]}}),
    ("loops", '''
def decide(input):
    best = None
    total = 0
    for agent in input["agents"]:
        total += agent.get("priority", 0)
        if best is None or agent["priority"] > best["priority"]:
            best = agent
    i = 0
    while i < 3:
        i += 1
    if total < 10:
        return None
    return {"action": "arbitrate", "params": {"winner": best["id"]}}
''', CONFLICT, {"action": "arbitrate", "params": {"winner": "backup-1"}}),
    ("comprehensions", '''
def decide(input):
    roles = {a["role"] for a in input["agents"]}
    by_id = {a["id"]: a["priority"] for a in input["agents"]}
    deployers = [a["id"] for a in input["agents"] if a["role"] == "deploy"]
    pairs = [[x, y] for x, y in zip(deployers, reversed(deployers))]
    if "backup" in roles and any(p > 9 for p in by_id.values()) and all(by_id.values()):
        return {"action": "deny", "params": {"deployers": sorted(deployers), "pairs": pairs,
                                             "count": len(roles)}}
    return None
''', CONFLICT, {"action": "deny", "params": {"deployers": ["deploy-1", "deploy-2"],
                                             "pairs": [["deploy-2", "deploy-1"], ["deploy-1", "deploy-2"]],
                                             "count": 2}}),
    ("string methods", '''
def decide(input):
    action = input["action"]
    protocol = action.get("protocol", "").strip().upper()
    kind = "-".join(part.capitalize() for part in action["type"].split("_"))
    if protocol == "SMB" and action["file_type"].endswith("quet") and kind.startswith("File"):
        return {"action": "route", "params": {"action": {"protocol": "sftp"},
                                              "note": f"{kind} over {protocol.lower()} rerouted".replace("smb", "SMB")}}
    return {"action": "allow"}
''', ACTION, {"action": "route", "params": {"action": {"protocol": "sftp"},
                                            "note": "File-Share over SMB rerouted"}}),
    ("arithmetic", '''
LIMIT_MB = 64

def megabytes(size):
    return round(size / (1024 * 1024), 3)

def decide(input):
    size = input["action"]["size_bytes"]
    q, r = divmod(size, 1000)
    score = abs(-q) * 2 ** 3 + r % 7 + min(5, max(1, q)) + sum([1, 2, 3])
    if megabytes(size) > LIMIT_MB:
        return {"action": "deny", "params": {}}
    return {"action": "allow", "params": {"score": score, "mb": megabytes(size), "ratio": 7 // 2 + 0.5}}
''', ACTION, {"action": "allow", "params": {"score": 8 + 200 % 7 + 1 + 6, "mb": 0.001, "ratio": 3.5}}),
    ("weighted scores with math", '''
import math
from math import log2

def score(agent):
    return math.sqrt(agent["priority"]) * 10 + log2(len(agent["id"]))

def decide(input):
    scores = {a["id"]: score(a) for a in input["agents"]}
    ranked = sorted(scores, key=lambda i: (-scores[i], i))
    spread = math.fsum(scores.values()) / len(scores)
    note = "%s leads by %.1f (mean %.2f)" % (ranked[0], scores[ranked[0]] - scores[ranked[1]], spread)
    return {"action": "arbitrate", "params": {"winner": ranked[0], "order": ranked,
                                              "note": note, "top": math.floor(scores[ranked[0]])}}
''', CONFLICT, {"action": "arbitrate",
                "params": {"winner": "backup-1", "order": ["backup-1", "deploy-1", "deploy-2"],
                           "note": "backup-1 leads by 9.3 (mean 28.45)", "top": 34}}),
    ("no opinion", '''
def decide(input):
    if input["kind"] != "conflict":
        return None
    return {"action": "negotiate"}
''', ACTION, None),
]


@pytest.mark.parametrize(("name", "source", "input", "expected"), LEGIT, ids=[c[0] for c in LEGIT])
def test_legitimate_overrides_work(name: str, source: str, input: dict[str, Any],
                                   expected: dict[str, Any] | None) -> None:
    assert compile_problems(source, file=f"overrides/{name}.py") == []
    decision = run_override(source, input, 1.0)
    if expected is None:
        assert decision is None
    else:
        assert decision == {"params": {}, **expected}


def test_print_output_is_kept_for_the_author() -> None:
    run = run_override_traced(script('print("agents:", len(input["agents"]), sep=" ")\nreturn None'),
                              CONFLICT, 1.0)
    assert run.decision is None and run.printed == "agents: 3\n"


def test_runtime_errors_name_the_script_line() -> None:
    source = 'def decide(input):\n    x = 1\n    return input["missing"]\n'
    with pytest.raises(OverrideRuntimeError) as info:
        run_override(source, CONFLICT, 1.0)
    assert info.value.line == 3 and "KeyError" in info.value.message and ":3:" in info.value.message


# ------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(("body", "needle"), [
    ('return {"action": "explode"}', "is not one of allow, deny, route, arbitrate, negotiate"),
    ('return {"action": "route"}', "a route needs params"),
    ('return {"action": "route", "params": []}', "expected a dict"),
    ('return {"action": "arbitrate", "params": {"winner": "nobody"}}', "not one of the input's agents"),
    ('return {"action": "arbitrate", "params": {"winner": "deploy-1", "order": ["deploy-1", "x"]}}',
     "list of the input's agent ids"),
    ('return {"action": "allow", "why": "because"}', "unknown key"),
    ('return "allow"', "returned a str"),
    ('return ["allow"]', "returned a list"),
])
def test_invalid_decisions_are_refused(body: str, needle: str) -> None:
    with pytest.raises(InvalidDecision, match=needle):
        run_override(script(body), CONFLICT, 1.0)


def test_timeout_is_validated_and_capped() -> None:
    with pytest.raises(SandboxError, match="positive"):
        run_override(script("return None"), CONFLICT, 0)
    with pytest.raises(SandboxError, match="positive"):
        run_override(script("return None"), CONFLICT, float("nan"))
    with pytest.raises(SandboxTimeout, match="2000 ms"):
        run_override(script("while True:\n    pass"), CONFLICT, 60)


def test_input_that_is_not_json_is_a_sandbox_error() -> None:
    with pytest.raises(SandboxError, match="not JSON"):
        run_override(script("return None"), {"kind": "conflict", "x": object()}, 1.0)
    with pytest.raises(SandboxError, match="must be a dict"):
        run_override(script("return None"), ["not", "a", "dict"], 1.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the worker pool


@pytest.fixture
def pool() -> Any:
    p = WorkerPool(size=2)
    assert p.wait_ready()
    yield p
    p.close()


def run_in(pool: WorkerPool, source: str, input: dict[str, Any] = CONFLICT, timeout_s: float = 1.0) -> Any:
    return run_override_traced(source, input, timeout_s, pool=pool).decision


def test_a_timed_out_worker_is_killed_and_replaced(pool: WorkerPool) -> None:
    before = set(pool.worker_pids())
    with pytest.raises(SandboxTimeout):
        run_in(pool, script("while True:\n    pass"), timeout_s=0.3)
    assert pool.wait_ready()
    after = set(pool.worker_pids())
    assert len(after) == 2 and after != before
    for pid in before - after:  # the process is really gone (killed and reaped), not merely forgotten
        assert _gone(pid)
    stats = pool.stats()
    assert stats["timeouts"] == 1 and stats["killed"] == 1 and stats["spawned"] == 3
    assert run_in(pool, script('return {"action": "allow"}')) == {"action": "allow", "params": {}}


def test_workers_are_reused_between_calls(pool: WorkerPool) -> None:
    for _ in range(20):
        run_in(pool, script("return None"))
    stats = pool.stats()
    assert stats["spawned"] == 2 and stats["ok"] == 20


def test_concurrent_calls_share_the_pool(pool: WorkerPool) -> None:
    results: list[Any] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results.append(run_in(pool, script(f'return {{"action": "allow", "params": {{"i": {i}}}}}')))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r["params"]["i"] for r in results) == list(range(8))


def test_a_closed_pool_refuses_calls() -> None:
    p = WorkerPool(size=1)
    p.close()
    with pytest.raises(SandboxError, match="closed"):
        run_in(p, script("return None"))


def test_the_worker_process_never_imports_the_engine() -> None:
    code = ("import sys, policyctl.sandbox.worker; "
            "bad = [m for m in ('regopy', 'policyctl.engine', 'policyctl.decide', 'jsonschema', 'git') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, env={})
    assert out.stdout.strip() == "[]"


def test_the_worker_runs_with_limits_an_empty_environment_and_directory(pool: WorkerPool) -> None:
    pid = pool.worker_pids()[0]
    proc = Path(f"/proc/{pid}")
    environ = (proc / "environ").read_bytes()
    assert b"HOME=" not in environ and b"PATH=" not in environ
    cwd = os.readlink(proc / "cwd")
    assert "policyctl-sandbox-" in cwd and os.listdir(cwd) == []
    limits = (proc / "limits").read_text()
    assert _limit(limits, "Max address space") == str(256 * 1024 * 1024)
    assert _limit(limits, "Max file size") == "0"
    assert _limit(limits, "Max open files") == "16"
    assert len(os.listdir(proc / "fd")) <= 5  # 0-2 on /dev/null and the two protocol pipes
    assert os.getpgid(pid) == pid  # its own process group, killed as a whole


def _limit(text: str, name: str) -> str:
    line = next(x for x in text.splitlines() if x.startswith(name))
    return line[len(name):].split()[0]


def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.01)
    return False


def test_a_forked_child_gets_its_own_workers_and_leaves_the_parents_alone(pool: WorkerPool) -> None:
    """Forking (a parallel replay) must not make two processes talk to one worker over one pipe."""
    assert run_in(pool, script('return {"action": "allow"}'))
    parent_pids = pool.worker_pids()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            ok = run_in(pool, script('return {"action": "deny"}')) == {"action": "deny", "params": {}}
            code = 0 if ok and not set(pool.worker_pids()) & set(parent_pids) else 2
            pool.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.worker_pids() == parent_pids
    assert run_in(pool, script('return {"action": "allow"}')) == {"action": "allow", "params": {}}


def test_the_kernel_cpu_limit_stops_a_worker_the_parent_did_not() -> None:
    """RLIMIT_CPU is the backstop behind the parent's deadline (say the parent is wedged)."""
    from policyctl.sandbox.limits import WorkerLimits

    p = WorkerPool(size=1, limits=WorkerLimits(cpu_s_per_run=1))
    try:
        with pytest.raises(SandboxLimitError, match="SIGXCPU"):
            # A deadline far beyond the CPU budget, through the pool's own API (run_override caps at 2 s).
            p.run(script("while True:\n    pass"), b'{"kind": "action"}', file="o.py", timeout_s=60)
        assert run_in(p, script("return None")) is None
    finally:
        p.close()
