"""The sandbox's exceptions: every failure of an override script is one of these, never anything else."""

from __future__ import annotations

from policyctl.errors import PolicyctlError, Problem


class SandboxError(PolicyctlError):
    """An override script could not produce a decision; `file` and `line` say where, when known."""

    code = "sandbox_error"
    printed = ""  # what the script printed before it failed, when known
    retire_worker = False  # the worker that saw this failure is suspect and is replaced

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 code: str | None = None) -> None:
        self.file = file
        self.line = line
        self.detail = message
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}", code=code)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "file": self.file, "line": self.line}


class SandboxCompileError(SandboxError):
    """The first wall: the script does not compile under the override rules; `problems` lists each one."""

    code = "override_compile_error"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 problems: list[Problem] | None = None) -> None:
        super().__init__(message, file=file, line=line)
        self.problems = problems or []

    @classmethod
    def from_problems(cls, problems: list[Problem]) -> SandboxCompileError:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(f"{first.code}: {first.message}{more}", file=first.file, line=first.line, problems=problems)


class SandboxViolation(SandboxError):
    """The second wall: the script reached for something it may not (a guarded attribute, a name, a type)."""

    code = "sandbox_violation"


class InvalidDecision(SandboxViolation):
    """The script returned something that is not plain JSON data or not a valid decision for the input."""

    code = "invalid_decision"


class OverrideRuntimeError(SandboxError):
    """The script raised an ordinary exception (a KeyError, a ZeroDivisionError…): a bug in the script."""

    code = "override_runtime_error"


class SandboxTimeout(SandboxError):
    """The third wall: the script did not answer before its deadline; its worker was killed and replaced."""

    code = "sandbox_timeout"


class SandboxLimitError(SandboxError):
    """The third wall: the script broke a resource limit (memory, CPU, output, recursion, result size)."""

    code = "sandbox_limit"


class SandboxUnavailable(SandboxError):
    """No worker process could take the call (the pool is closed, or workers cannot start)."""

    code = "sandbox_unavailable"


# The wire names the worker uses for each class, so the parent can rebuild the exception.
KINDS: dict[str, type[SandboxError]] = {
    "compile": SandboxCompileError,
    "violation": SandboxViolation,
    "invalid": InvalidDecision,
    "runtime": OverrideRuntimeError,
    "timeout": SandboxTimeout,
    "limit": SandboxLimitError,
    "unavailable": SandboxUnavailable,
    "error": SandboxError,
}
KIND_OF: dict[type[SandboxError], str] = {cls: kind for kind, cls in KINDS.items()}
