"""Where the simulated agents ask for decisions: the pipeline of a revision, or a live gateway over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from policyctl.decide import Pipeline
from policyctl.errors import InputError, PolicyctlError
from policyctl.model.records import ACTIONS


class GatewayError(PolicyctlError):
    """The gateway cannot be reached or answered something that is not a decision."""

    code = "gateway_error"


class Decider(Protocol):
    """Answers one input with a decision dict (as the gateway's API does)."""

    @property
    def revision(self) -> str | None: ...

    @property
    def label(self) -> str: ...

    def decide(self, input: dict[str, Any], now_ms: int, decision_id: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


class PipelineDecider:
    """The decision pipeline of one revision, with the simulation's clock and decision ids.

    The clock is the event's timestamp, so an override that expires in the middle of the
    simulated span stops applying there, and the same run gives the same decision ids.
    """

    def __init__(self, pipeline: Pipeline, label: str = "") -> None:
        self._now_ms = 0
        self._next_id = ""
        self.pipeline = Pipeline(pipeline.policies, pipeline.overrides, clock=self._clock, new_id=self._new_id)
        self._label = label or (pipeline.revision or "worktree")

    @property
    def revision(self) -> str | None:
        return self.pipeline.revision

    @property
    def label(self) -> str:
        return self._label

    def _clock(self) -> datetime:
        return datetime.fromtimestamp(self._now_ms / 1000, UTC)

    def _new_id(self) -> str:
        return self._next_id

    def decide(self, input: dict[str, Any], now_ms: int, decision_id: str) -> dict[str, Any]:
        self._now_ms = now_ms
        self._next_id = decision_id
        return self.pipeline.decide_dict(input)

    def close(self) -> None:
        pass


class GatewayDecider:
    """A live gateway: POST {"input": …} to <url>/v1/decide and read the decision it answers."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        import httpx

        self._httpx = httpx
        self.url = url.rstrip("/")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        except (ValueError, httpx.InvalidURL) as exc:
            raise InputError(f"--gateway {url!r} is not a URL ({exc})") from exc
        self._revision: str | None = None

    @property
    def revision(self) -> str | None:
        return self._revision

    @property
    def label(self) -> str:
        return self.url

    def decide(self, input: dict[str, Any], now_ms: int, decision_id: str) -> dict[str, Any]:
        endpoint = f"{self.url}/v1/decide"
        try:
            response = self._client.post("/v1/decide", content=orjson.dumps({"input": input}))
        except self._httpx.HTTPError as exc:
            raise GatewayError(f"{endpoint}: {type(exc).__name__}: {exc} (is the gateway running?)") from exc
        try:
            body: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if response.status_code != 200:
            detail = (f"{body.get('code')}: {body.get('message')}" if isinstance(body, dict) and "message" in body
                      else response.text[:200])
            raise GatewayError(f"{endpoint} answered HTTP {response.status_code}: {detail}")
        if isinstance(body, dict) and "action" not in body and isinstance(body.get("result"), dict):
            body = body["result"]  # OPA's data API wraps the value
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise GatewayError(f"{endpoint} answered something that is not a decision: {response.text[:200]!r}")
        self._revision = body.get("revision", self._revision)
        return body

    def close(self) -> None:
        self._client.close()
