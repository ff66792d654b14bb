"""The sandbox's limits in one place, so the docs, the checks and the workers agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from policyctl.bounds import MAX_OVERRIDE_BYTES

# Source: the figure the header's parser applies before any parse (policyctl.bounds).
MAX_SOURCE_BYTES = MAX_OVERRIDE_BYTES

# Wall clock: the parent kills a worker that has not answered by then.
HARD_TIMEOUT_MS = 2000
DEFAULT_TIMEOUT_MS = 250

# Every override of one decision together: past it the rest are skipped and the policies decide,
# so two slow overrides cannot add up to the gateway's evaluation deadline.
DEFAULT_BUDGET_MS = 250
BUDGET_ENV = "POLICYCTL_OVERRIDE_BUDGET_MS"  # set by `gateway serve --override-budget-ms`; workers inherit it

# Quarantine: failures weigh 1 each, a timeout TIMEOUT_WEIGHT (it costs a whole deadline and a
# killed worker, and a loop loops again); QUARANTINE_WEIGHT within the window skips the override
# until the next revision. Two timeouts, not one: a single one can be a loaded machine's tail.
QUARANTINE_WINDOW_S = 60.0
QUARANTINE_WEIGHT = 3
TIMEOUT_WEIGHT = 2

# What a script may hand back: plain JSON data, small enough to log with every decision.
MAX_RESULT_DEPTH = 16
MAX_RESULT_NODES = 2_000
MAX_RESULT_CHARS = 64 * 1024

# print() output kept per run (for `policyctl override test`); more is an output-limit error.
MAX_PRINT_CHARS = 16 * 1024

# Error messages and tracebacks from a script are cut to this length.
MAX_MESSAGE_CHARS = 500

# One frame on the pipe between the gateway and a worker; a bigger frame means a broken worker.
MAX_FRAME_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class WorkerLimits:
    """Resource limits a worker process sets on itself before it runs any script."""

    memory_mb: int = 256          # RLIMIT_AS: address space, fine for a pure-Python worker
    cpu_s_per_run: int = 2        # RLIMIT_CPU soft limit above the CPU already used, per run
    cpu_s_lifetime: int = 3600    # RLIMIT_CPU hard limit; the worker retires before reaching it
    recursion: int = 200          # sys.setrecursionlimit for scripts
    max_runs: int = 5000          # retire a worker after this many runs (hygiene, not security)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
