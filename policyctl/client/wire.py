"""The gateway's wire format for both clients: bodies, answers to decisions or errors, fail-closed decisions.

No I/O here: the sync and async clients send what this module builds and hand back
what they receive, so both behave the same to the byte.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from policyctl import __version__
from policyctl.client.errors import ClientError, GatewayUnavailable, Unauthorized
from policyctl.client.retry import parse_retry_after
from policyctl.client.types import Outcome
from policyctl.errors import InputError, UsageError, ValidationError
from policyctl.model import Decision

DECIDE = "/v1/decide"
OUTCOME = "/v1/outcome"
STATUS = "/v1/status"
READY = "/readyz"
# Statuses that say "not now" rather than "no": the gateway sheds with 503, proxies answer 502/504.
RETRY_STATUSES = frozenset({502, 503, 504})
USER_AGENT = f"policyctl-client/{__version__}"
CLIENT_ERROR_SOURCE = "client_error"


def base_url(url: str) -> str:
    """The gateway's base URL without a trailing slash; refuse what is not http(s)://host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"gateway URL {url!r} must look like http://127.0.0.1:8181")
    return url.rstrip("/")


def resolve_token(token: str | None, token_file: str | os.PathLike[str] | None) -> str | None:
    """The bearer token: given, or read from a file (one line; whitespace around it ignored)."""
    if token is not None and token_file is not None:
        raise UsageError("pass either token or token_file, not both")
    if token_file is None:
        return token
    path = Path(token_file)
    try:
        text = path.read_text("utf-8").strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the token file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the token file is not UTF-8 text") from exc
    if not text or any(c.isspace() for c in text):
        raise InputError(f"{path}: the token file must hold the token on one line")
    return text


def headers(token: str | None) -> dict[str, str]:
    out = {"content-type": "application/json", "accept": "application/json", "user-agent": USER_AGENT}
    if token is not None:
        out["authorization"] = f"Bearer {token}"
    return out


def decide_body(input: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps({"input": input})
    except TypeError as exc:
        raise ClientError(f"the input is not JSON data ({exc})", code="bad_input") from exc


def outcome_body(decision_id: str, outcome: Outcome) -> bytes:
    return orjson.dumps({"decision_id": decision_id, "outcome": outcome.to_dict()})


def transport_error(url: str, exc: httpx.TransportError) -> ClientError:
    """A ClientError for a request that got no answer; only UnsupportedProtocol is not worth a retry."""
    kind = type(exc).__name__
    detail = str(exc) or kind
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ClientError(f"{url}: {detail}", code="bad_url")
    if isinstance(exc, httpx.TimeoutException):
        return GatewayUnavailable(f"{url}: no answer in time ({kind})", code="timeout")
    return GatewayUnavailable(f"{url}: cannot reach the gateway ({kind}: {detail}); is `policyctl gateway serve` "
                              "running there?")


def retryable(error: ClientError) -> bool:
    return isinstance(error, GatewayUnavailable)


def error_from_answer(url: str, response: httpx.Response) -> ClientError:
    """A ClientError for a non-200 answer, with the gateway's `{"code", "message"}` when it sent one."""
    status = response.status_code
    code, message = f"http_{status}", response.text[:300]
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), str):
        code, message = doc["code"], str(doc.get("message", ""))
    if status == 401:
        return Unauthorized(f"{url}: 401 {code}: the gateway refused the token; pass the token of its "
                            "--token-file (token= or token_file=)", code=code, status=status)
    if status in RETRY_STATUSES:
        return GatewayUnavailable(f"{url}: {status} {code}: {message}", code=code, status=status)
    return ClientError(f"{url}: {status} {code}: {message}", code=code, status=status)


def retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


def decision_from_answer(url: str, response: httpx.Response) -> Decision:
    """The Decision of a 200 answer; anything that is not a valid decision is a ClientError."""
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise ClientError(f"{url}: the answer is not JSON ({exc})", code="bad_answer",
                          status=response.status_code) from exc
    if not isinstance(doc, dict):
        raise ClientError(f"{url}: the answer is not a decision object", code="bad_answer",
                          status=response.status_code)
    try:
        return Decision.from_dict(doc)
    except ValidationError as exc:
        raise ClientError(f"{url}: the answer is not a valid decision ({exc})", code="bad_answer",
                          status=response.status_code) from exc


def fallback(error: ClientError, *, fail_open: bool) -> Decision:
    """The decision a client makes itself when the gateway gave none: deny, or allow when asked to fail open."""
    return Decision(action="allow" if fail_open else "deny", source=CLIENT_ERROR_SOURCE,
                    error={"code": error.code, "message": error.message})


def json_answer(url: str, response: httpx.Response) -> dict[str, Any]:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise ClientError(f"{url}: the answer is not JSON ({exc})", code="bad_answer",
                          status=response.status_code) from exc
    if not isinstance(doc, dict):
        raise ClientError(f"{url}: the answer is not a JSON object", code="bad_answer", status=response.status_code)
    return doc
