"""The client's errors: the gateway gave no decision (`ClientError`), or it said no (`Denied`)."""

from __future__ import annotations

from policyctl.client.types import describe_denial
from policyctl.errors import PolicyctlError
from policyctl.model import Decision, Reason


class ClientError(PolicyctlError):
    """The gateway gave no decision: unreachable, overloaded past the deadline, a refused request, a bad answer.

    `code` is the gateway's error code when it answered one (`unauthorized`, `overloaded`,
    `validation_error`, …), else the client's (`gateway_unreachable`, `timeout`, `bad_answer`);
    `status` is the HTTP status when there was one; `attempts` how many requests were sent.
    """

    code = "client_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.attempts = attempts


class GatewayUnavailable(ClientError):
    """No answer in time: connection refused or reset, a timeout, or 503 past the retries and the deadline."""

    code = "gateway_unreachable"


class Unauthorized(ClientError):
    """401: the gateway runs with --token-file and the request carried no token or the wrong one."""

    code = "unauthorized"


class Denied(PolicyctlError):
    """The decision is `deny`; `decision` and `reasons` say by which rule and why."""

    code = "denied"

    def __init__(self, decision: Decision) -> None:
        super().__init__(describe_denial(decision))
        self.decision = decision

    @property
    def reasons(self) -> list[Reason]:
        return self.decision.reasons
