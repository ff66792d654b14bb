"""The PolicyctlError tree: stable codes, exit codes, and messages that say where and how to fix."""

from __future__ import annotations


class PolicyctlError(Exception):
    """An expected failure: printed as `Error: <message>` and exit code `exit_code`."""

    code = "policyctl_error"
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class UsageError(PolicyctlError):
    """The command line itself is wrong (exit 2)."""

    code = "usage_error"
    exit_code = 2


class InputError(PolicyctlError):
    """A file or value the user gave cannot be used."""

    code = "input_error"


class ValidationError(InputError):
    """A record does not fit its schema; the message names the field path and the bad value."""

    code = "validation_error"

    def __init__(self, message: str, *, path: str = "", where: str = "") -> None:
        self.path = path
        self.where = where
        prefix = f"{where}: " if where else ""
        field = f"{path}: " if path else ""
        super().__init__(f"{prefix}{field}{message}")
        self.detail = message

    def problem(self, file: str, code: str | None = None) -> Problem:
        """This error as a Problem of `file`, with the line from `where` (`file:line`) when it has one."""
        where_file, _, line = self.where.partition(":")
        return Problem(where_file or file, f"{self.path + ': ' if self.path else ''}{self.detail}",
                       code=code or self.code, line=int(line) if line.isdigit() else None)


class InputLimitError(InputError):
    """An input is too large or too deeply nested to be evaluated safely."""

    code = "input_too_large"


class RepoError(PolicyctlError):
    """A git repository, ref or commit cannot be read."""

    code = "repo_error"


class PolicyCompileError(PolicyctlError):
    """A policy set does not compile; `problems` lists every file:line found."""

    code = "rego_compile_error"

    def __init__(self, message: str, *, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class EvaluationError(PolicyctlError):
    """A policy could not be evaluated for an input (runtime error or undefined decision)."""

    code = "eval_error"


class CheckFailed(PolicyctlError):
    """`policyctl check` found problems; each is listed before this is raised."""

    code = "check_failed"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found")


class Problem:
    """One problem found in a file: where, a stable code, and what is wrong."""

    __slots__ = ("file", "line", "column", "code", "message", "severity")

    def __init__(
        self, file: str, message: str, *, code: str = "invalid", line: int | None = None,
        column: int | None = None, severity: str = "error",
    ) -> None:
        self.severity = severity
        self.file = file
        self.line = line
        self.column = column
        self.code = code
        self.message = message

    @property
    def where(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def __str__(self) -> str:
        return f"{self.where}: {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "column": self.column,
                "code": self.code, "message": self.message, "severity": self.severity}
