"""`AsyncGatewayClient`: the same client as `GatewayClient`, for asyncio (or trio) code."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import httpx

from policyctl.client import wire
from policyctl.client.errors import ClientError, Denied
from policyctl.client.guard import GuardState, denied_outcome
from policyctl.client.retry import NO_RETRY, Attempts, RetryPolicy
from policyctl.client.types import Outcome
from policyctl.model import Decision

logger = logging.getLogger("policyctl.client")


class AsyncGatewayClient:
    """A client of `policyctl gateway serve` for async code, fail-closed by default.

    Everything `GatewayClient` says holds here: `await decide()` returns a deny with source
    `client_error` when the gateway gives no decision (an allow with `fail_open=True`, a
    raised `ClientError` with `raise_errors=True`); 502/503/504 and connection errors are
    retried with backoff and jitter within `retry.deadline`; the token is never logged.
    Use it as `async with`, or `await aclose()`.
    """

    def __init__(self, url: str = "http://127.0.0.1:8181", *, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None, timeout: float = 2.0,
                 retry: RetryPolicy | None = None, raise_errors: bool = False,
                 http: httpx.AsyncClient | None = None, rng: random.Random | None = None) -> None:
        self.url = wire.base_url(url)
        self._token = wire.resolve_token(token, token_file)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.raise_errors = raise_errors
        self._rng = rng or random.Random()
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._headers = wire.headers(self._token)
        self._log_off_said = False

    def __repr__(self) -> str:
        return f"AsyncGatewayClient(url={self.url!r}, token={'<set>' if self._token else None})"

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def _send(self, method: str, path: str, body: bytes | None, retry: RetryPolicy) -> httpx.Response:
        url = self.url + path
        attempts = Attempts(retry, self._rng, time.monotonic)
        while True:
            timeout = attempts.timeout(self.timeout)
            try:
                response = await self._http.request(method, url, content=body, headers=self._headers,
                                                    timeout=timeout)
            except httpx.TransportError as exc:
                error, after = wire.transport_error(url, exc), None
            else:
                if response.status_code not in wire.RETRY_STATUSES:
                    return response
                error, after = wire.error_from_answer(url, response), wire.retry_after(response)
            wait = attempts.next_wait(after) if wire.retryable(error) else None
            if wait is None:
                error.attempts = attempts.sent
                raise error
            logger.info("%s %s: %s; retrying in %.2f s (attempt %d of %d)", method, url, error.code, wait,
                        attempts.sent + 1, retry.attempts)
            await anyio.sleep(wait)

    async def decide(self, input: Mapping[str, Any], *, fail_open: bool = False,
                     raise_errors: bool | None = None) -> Decision:
        """The gateway's decision on `input`; a client_error deny (or allow, or a raise) when it gives none."""
        try:
            response = await self._send("POST", wire.DECIDE, wire.decide_body(input), self.retry)
            if response.status_code != 200:
                raise wire.error_from_answer(self.url + wire.DECIDE, response)
            return wire.decision_from_answer(self.url + wire.DECIDE, response)
        except ClientError as error:
            if self.raise_errors if raise_errors is None else raise_errors:
                raise
            logger.warning("no decision from the gateway (%s, after %d attempt%s): failing %s", error,
                           error.attempts, "" if error.attempts == 1 else "s", "open (allow)" if fail_open
                           else "closed (deny)")
            return wire.fallback(error, fail_open=fail_open)

    async def report_outcome(self, decision_id: str | None, status: str, *, message: str | None = None,
                             code: str | None = None, duration_ms: float | None = None,
                             raise_errors: bool | None = None) -> bool:
        """Tell the gateway what happened after a decision; True once it is joined (see GatewayClient)."""
        return await self.report(decision_id, Outcome(status, message=message, code=code, duration_ms=duration_ms),
                                 raise_errors=raise_errors)

    async def report(self, decision_id: str | None, outcome: Outcome, *, raise_errors: bool | None = None) -> bool:
        """`report_outcome` with an Outcome record."""
        if not decision_id:
            return False
        try:
            response = await self._send("POST", wire.OUTCOME, wire.outcome_body(decision_id, outcome), self.retry)
            if response.status_code != 200:
                raise wire.error_from_answer(self.url + wire.OUTCOME, response)
        except ClientError as error:
            if self.raise_errors if raise_errors is None else raise_errors:
                raise
            if error.code != "decision_log_off":
                logger.warning("outcome of decision %s not recorded: %s", decision_id, error)
            elif not self._log_off_said:  # the same for every outcome: say it once
                self._log_off_said = True
                logger.warning("outcomes are not recorded: %s", error)
            return False
        return True

    async def status(self) -> dict[str, Any]:
        """`GET /v1/status` (raises ClientError when the gateway cannot say)."""
        response = await self._send("GET", wire.STATUS, None, NO_RETRY)
        if response.status_code != 200:
            raise wire.error_from_answer(self.url + wire.STATUS, response)
        return wire.json_answer(self.url + wire.STATUS, response)

    async def ready(self) -> bool:
        """Whether `GET /readyz` answers 200."""
        try:
            return (await self._send("GET", wire.READY, None, NO_RETRY)).status_code == 200
        except ClientError:
            return False

    def guard(self, input: Mapping[str, Any], *, raise_on_deny: bool = True, fail_open: bool = False,
              report: bool = True) -> AsyncGuard:
        """`async with client.guard(input) as g:` decides on entry and reports the outcome on exit."""
        return AsyncGuard(self, input, raise_on_deny=raise_on_deny, fail_open=fail_open, report=report)


class AsyncGuard:
    """The async `Guard`: `Denied` on entry for a deny (unless `raise_on_deny=False`), the outcome on exit.

    A cancelled block reports nothing: cancellation is not the action's outcome.
    """

    def __init__(self, client: AsyncGatewayClient, input: Mapping[str, Any], *, raise_on_deny: bool,
                 fail_open: bool, report: bool) -> None:
        self._client = client
        self._input = input
        self._raise_on_deny = raise_on_deny
        self._fail_open = fail_open
        self._report = report
        self.state: GuardState | None = None

    async def __aenter__(self) -> GuardState:
        decision = await self._client.decide(self._input, fail_open=self._fail_open)
        self.state = state = GuardState(self._input, decision)
        if not state.allowed and self._raise_on_deny:
            if self._report:
                state.reported = denied_outcome(decision)
                await self._client.report(decision.decision_id, state.reported, raise_errors=False)
            raise Denied(decision)
        state.started()
        return state

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        state = self.state
        if state is None or not self._report:
            return
        outcome = state.final_outcome(exc)
        if outcome is not None:
            state.reported = outcome
            await self._client.report(state.decision.decision_id, outcome, raise_errors=False)
