"""What every engine module shares: the entrypoint, the Program and Engine protocols."""

from __future__ import annotations

from typing import Any, Protocol

from policyctl.engine.modules import RegoModule
from policyctl.errors import Problem

ENTRYPOINT = "agentgov/main/decision"
QUERY = "x = data.agentgov.main.decision"


class Program(Protocol):
    """A compiled policy set that answers `agentgov/main/decision` for an input."""

    def evaluate(self, input: dict[str, Any]) -> dict[str, Any]: ...


class Engine(Protocol):
    """A Rego implementation: compile modules and data into a Program."""

    name: str

    def compile(self, modules: list[RegoModule], data: dict[str, Any]) -> Program: ...


def summary(problems: list[Problem]) -> str:
    head = str(problems[0])
    return head if len(problems) == 1 else f"{head} (and {len(problems) - 1} more)"
