"""Sandboxed override scripts: compile them (RestrictedPython), run them in worker processes under limits.

The only importer of RestrictedPython. Three walls (DESIGN.md, "Sandbox for overrides"):
`compile` (RestrictedPython plus the override rules), `guards` (the builtins and guards
of each run, the result checks in `result`) and `worker`/`pool` (processes with CPU,
memory and output limits and a deadline the parent enforces by killing).

Public API: `compile_problems`, `run_override`, `load_overrides` and `OverrideSet`, and
the `SandboxError` tree. The worker process imports this package too, so the pool and
the pipeline parts are imported lazily (the worker never loads them, nor the engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policyctl.sandbox.compile import compile_override, compile_problems
from policyctl.sandbox.errors import (
    InvalidDecision,
    OverrideRuntimeError,
    SandboxCompileError,
    SandboxError,
    SandboxLimitError,
    SandboxTimeout,
    SandboxUnavailable,
    SandboxViolation,
)
from policyctl.sandbox.limits import (
    DEFAULT_TIMEOUT_MS,
    HARD_TIMEOUT_MS,
    MAX_SOURCE_BYTES,
    WorkerLimits,
)

if TYPE_CHECKING:
    from policyctl.sandbox.overrides import (
        Override,
        OverrideRun,
        OverrideSet,
        load_overrides,
        run_override,
        run_override_traced,
    )
    from policyctl.sandbox.pool import WorkerPool, shared_pool, shutdown

_LAZY = {
    "Override": "policyctl.sandbox.overrides",
    "OverrideRun": "policyctl.sandbox.overrides",
    "OverrideSet": "policyctl.sandbox.overrides",
    "load_overrides": "policyctl.sandbox.overrides",
    "run_override": "policyctl.sandbox.overrides",
    "run_override_traced": "policyctl.sandbox.overrides",
    "WorkerPool": "policyctl.sandbox.pool",
    "shared_pool": "policyctl.sandbox.pool",
    "shutdown": "policyctl.sandbox.pool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policyctl.sandbox' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_TIMEOUT_MS", "HARD_TIMEOUT_MS", "MAX_SOURCE_BYTES", "InvalidDecision", "Override", "OverrideRun",
    "OverrideRuntimeError", "OverrideSet", "SandboxCompileError", "SandboxError", "SandboxLimitError",
    "SandboxTimeout", "SandboxUnavailable", "SandboxViolation", "WorkerLimits", "WorkerPool", "compile_override",
    "compile_problems", "load_overrides", "run_override", "run_override_traced", "shared_pool", "shutdown",
]
