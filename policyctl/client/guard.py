"""What a guarded block did, as an outcome: shared by the sync and async guards."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from policyctl.client.types import Outcome, describe_denial, routed_input
from policyctl.model import Decision, Reason


class GuardState:
    """One guarded action: the decision, the input to act on, and the outcome to report when it ends.

    `input` is what the agent should do: the requested input with a route's `params`
    deep-merged in (for every other decision, a copy of the request). The outcome is
    `ok` when the block ends normally, `denied` when it ran on a deny decision, `timeout`
    for a TimeoutError, `error` for any other exception (code: its type; message: its
    type and text), unless the block said otherwise with `set_outcome`.
    """

    def __init__(self, requested: Mapping[str, Any], decision: Decision) -> None:
        self.requested = dict(requested)
        self.decision = decision
        self.input = routed_input(requested, decision)
        self._outcome: Outcome | None = None
        self._started = time.monotonic()
        self.reported: Outcome | None = None

    @property
    def action(self) -> str:
        return self.decision.action

    @property
    def allowed(self) -> bool:
        """Whether the agent may go ahead (every decision but `deny`)."""
        return self.decision.action != "deny"

    @property
    def params(self) -> dict[str, Any]:
        return self.decision.params

    @property
    def reasons(self) -> list[Reason]:
        return self.decision.reasons

    @property
    def refusal(self) -> str:
        """Why the action is refused, for a person or a model; empty when it is allowed."""
        return "" if self.allowed else describe_denial(self.decision)

    def set_outcome(self, status: str, *, message: str | None = None, code: str | None = None) -> None:
        """Report this instead of what the block's end would say (e.g. a tool that returned an error)."""
        self._outcome = Outcome(status, message=message, code=code)

    def started(self) -> None:
        self._started = time.monotonic()

    def final_outcome(self, exc: BaseException | None) -> Outcome | None:
        """The outcome of the block that ended with `exc`; None when there is nothing to report.

        Interrupts and cancellations (BaseException that is not an Exception) are not the
        action's outcome: nothing is reported for them.
        """
        duration_ms = (time.monotonic() - self._started) * 1000
        if self._outcome is not None:
            return Outcome(self._outcome.status, message=self._outcome.message, code=self._outcome.code,
                           duration_ms=duration_ms)
        if exc is None:
            if not self.allowed:
                return denied_outcome(self.decision)
            return Outcome("ok", duration_ms=duration_ms)
        if not isinstance(exc, Exception):
            return None
        kind = type(exc).__name__
        text = str(exc)
        message = f"{kind}: {text}" if text else kind
        status = "timeout" if isinstance(exc, TimeoutError) else "error"
        return Outcome(status, message=message, code=kind, duration_ms=duration_ms)


def denied_outcome(decision: Decision) -> Outcome:
    return Outcome("denied", message=describe_denial(decision), code="denied", duration_ms=0.0)
