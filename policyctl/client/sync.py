"""`GatewayClient`: ask the gateway before acting and report what happened, from ordinary (blocking) code."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from policyctl.client import wire
from policyctl.client.errors import ClientError, Denied
from policyctl.client.guard import GuardState, denied_outcome
from policyctl.client.retry import NO_RETRY, Attempts, RetryPolicy
from policyctl.client.types import Outcome
from policyctl.model import Decision

logger = logging.getLogger("policyctl.client")


class GatewayClient:
    """A client of `policyctl gateway serve`, fail-closed by default.

    `decide()` never raises unless asked: when the gateway cannot be reached, keeps
    answering 503 past the retries, refuses the request (401, 400, …) or answers something
    that is no decision, it returns a `deny` with source `client_error` and the reason in
    `error` (`fail_open=True` on a call returns an `allow` instead). `raise_errors=True`
    (here or per call) raises the `ClientError` instead.

    Requests time out after `timeout` seconds each; 502/503/504 and connection errors are
    retried under `retry` (Retry-After honoured), all within `retry.deadline`. The token
    (`token=` or `token_file=`) is sent as `Authorization: Bearer` and never logged.
    Use it as a context manager, or call `close()`.
    """

    def __init__(self, url: str = "http://127.0.0.1:8181", *, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None, timeout: float = 2.0,
                 retry: RetryPolicy | None = None, raise_errors: bool = False,
                 http: httpx.Client | None = None, rng: random.Random | None = None) -> None:
        self.url = wire.base_url(url)
        self._token = wire.resolve_token(token, token_file)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.raise_errors = raise_errors
        self._rng = rng or random.Random()
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout, trust_env=False)
        self._headers = wire.headers(self._token)
        self._log_off_said = False

    def __repr__(self) -> str:
        return f"GatewayClient(url={self.url!r}, token={'<set>' if self._token else None})"

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # ------------------------------------------------------------------ requests

    def _send(self, method: str, path: str, body: bytes | None, retry: RetryPolicy) -> httpx.Response:
        """One call: the first answer that is not 502/503/504, or the ClientError of the last try."""
        url = self.url + path
        attempts = Attempts(retry, self._rng, time.monotonic)
        while True:
            timeout = attempts.timeout(self.timeout)
            try:
                response = self._http.request(method, url, content=body, headers=self._headers, timeout=timeout)
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
            time.sleep(wait)

    def decide(self, input: Mapping[str, Any], *, fail_open: bool = False,
               raise_errors: bool | None = None) -> Decision:
        """The gateway's decision on `input` (`POST /v1/decide`); see the class for what happens on errors."""
        try:
            response = self._send("POST", wire.DECIDE, wire.decide_body(input), self.retry)
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

    def report_outcome(self, decision_id: str | None, status: str, *, message: str | None = None,
                       code: str | None = None, duration_ms: float | None = None,
                       raise_errors: bool | None = None) -> bool:
        """Tell the gateway what happened after a decision (`POST /v1/outcome`); True once it is joined.

        `status` is one of ok, denied, crash, deadlock, timeout, error, diverted. A decision
        without an id (made by the client itself) has nothing to join: False. Failures are
        logged and answered False, or raised with `raise_errors`.
        """
        return self.report(decision_id, Outcome(status, message=message, code=code, duration_ms=duration_ms),
                           raise_errors=raise_errors)

    def report(self, decision_id: str | None, outcome: Outcome, *, raise_errors: bool | None = None) -> bool:
        """`report_outcome` with an Outcome record."""
        if not decision_id:
            return False
        try:
            response = self._send("POST", wire.OUTCOME, wire.outcome_body(decision_id, outcome), self.retry)
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

    def status(self) -> dict[str, Any]:
        """`GET /v1/status`: what the gateway serves (raises ClientError when it cannot say)."""
        response = self._send("GET", wire.STATUS, None, NO_RETRY)
        if response.status_code != 200:
            raise wire.error_from_answer(self.url + wire.STATUS, response)
        return wire.json_answer(self.url + wire.STATUS, response)

    def ready(self) -> bool:
        """Whether `GET /readyz` answers 200 (a revision is served and a worker is up)."""
        try:
            return self._send("GET", wire.READY, None, NO_RETRY).status_code == 200
        except ClientError:
            return False

    def guard(self, input: Mapping[str, Any], *, raise_on_deny: bool = True, fail_open: bool = False,
              report: bool = True) -> Guard:
        """A context manager around one action: decide on entry, report the outcome on exit.

        ```
        with client.guard(input) as g:      # raises Denied on deny
            share(**g.input["action"])      # the routed input
        ```
        """
        return Guard(self, input, raise_on_deny=raise_on_deny, fail_open=fail_open, report=report)


class Guard:
    """`with client.guard(input) as g:` decides on entry and reports the block's outcome on exit.

    On a deny, entry raises `Denied` (after reporting `denied`) unless `raise_on_deny=False`,
    in which case the block runs and should look at `g.allowed` / `g.refusal`. The
    exception of a failing block is reported (`error`, or `timeout`) and re-raised.
    """

    def __init__(self, client: GatewayClient, input: Mapping[str, Any], *, raise_on_deny: bool,
                 fail_open: bool, report: bool) -> None:
        self._client = client
        self._input = input
        self._raise_on_deny = raise_on_deny
        self._fail_open = fail_open
        self._report = report
        self.state: GuardState | None = None

    def __enter__(self) -> GuardState:
        decision = self._client.decide(self._input, fail_open=self._fail_open)
        self.state = state = GuardState(self._input, decision)
        if not state.allowed and self._raise_on_deny:
            if self._report:
                state.reported = denied_outcome(decision)
                self._client.report(decision.decision_id, state.reported, raise_errors=False)
            raise Denied(decision)
        state.started()
        return state

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        state = self.state
        if state is None or not self._report:
            return
        outcome = state.final_outcome(exc)
        if outcome is not None:
            state.reported = outcome
            self._client.report(state.decision.decision_id, outcome, raise_errors=False)
