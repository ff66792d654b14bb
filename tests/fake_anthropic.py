"""A Messages API server on 127.0.0.1 for tests: scripted replies, recorded requests, the real wire format.

Point the real anthropic SDK at it with `base_url=server.url` (or ANTHROPIC_BASE_URL). Each
POST /v1/messages takes the next step of the script: a text reply, an API error with the
API's error JSON and headers, or a stall longer than the client's timeout. Requests that do
not look like what the SDK sends (no API key, no version header, no model or messages) get the
400 the API would give.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


@dataclass
class Step:
    """One scripted answer: text (200), an error status, or a stall of `stall_s` seconds first."""

    text: str | None = None
    status: int = 200
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0
    stop_reason: str = "end_turn"
    input_tokens: int | None = None
    output_tokens: int | None = None


def reply(text: str, **kw: Any) -> Step:
    return Step(text=text, **kw)


def error(status: int, message: str = "", **kw: Any) -> Step:
    """An API error; 429 and 5xx say retry-after-ms: 10 (as the API's retry-after does), so retries are quick."""
    headers = {"retry-after-ms": "10", "retry-after": "0"} if status == 429 or status >= 500 else {}
    return Step(status=status, message=message or ERROR_TYPES.get(status, "error"), headers=headers, **kw)


def stall(seconds: float) -> Step:
    return Step(text="(too late)", stall_s=seconds)


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        """The key as sent: `x-api-key`, or `Authorization: Bearer` (what SDK 2.x sends)."""
        auth = self.headers.get("authorization", "")
        return self.headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def text(self) -> str:
        """System prompt and every message's text, for assertions."""
        parts = [self.body.get("system") if isinstance(self.body.get("system"), str) else json.dumps(self.body.get("system"))]
        for m in self.messages:
            content = m.get("content")
            parts.append(content if isinstance(content, str) else json.dumps(content))
        return "\n".join(p for p in parts if p)


class FakeAnthropic:
    """The server. Use as a context manager; `requests` lists what arrived, `stalled_through` the stalls
    that ran to their end (a client that timed out left before)."""

    def __init__(self, script: list[Step]) -> None:
        self.script = list(script)
        self.requests: list[Seen] = []
        self.stalled_through = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-anthropic", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release.set()  # wake stalled handlers so nothing outlives the test
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, seen: Seen) -> Step:
        with self._lock:
            self.requests.append(seen)
            if not self.script:
                return Step(status=400, message="fake server: no scripted reply left", headers={"x-should-retry": "false"})
            return self.script.pop(0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.split("?")[0] != "/v1/messages":
                    self._error(404, f"no route {self.path}", {})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._error(400, "body is not JSON", {})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.path, headers, body)
                step = server._next(seen)
                if not seen.api_key:
                    self._error(401, "x-api-key header (or Authorization: Bearer) is required", {})
                    return
                missing = [k for k in ("model", "max_tokens", "messages") if k not in body]
                if not headers.get("anthropic-version") or missing:
                    self._error(400, f"anthropic-version header and {', '.join(missing) or 'body'} are required", {})
                    return
                if step.stall_s:
                    if server._release.wait(step.stall_s):
                        return  # released at shutdown: the client is long gone
                    server.stalled_through += 1
                if step.status != 200:
                    self._error(step.status, step.message, step.headers)
                    return
                text = step.text or ""
                usage = {"input_tokens": step.input_tokens if step.input_tokens is not None else max(1, len(json.dumps(body)) // 4),
                         "output_tokens": step.output_tokens if step.output_tokens is not None else max(1, len(text) // 4)}
                self._send(200, {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                                 "content": [{"type": "text", "text": text}], "model": body["model"],
                                 "stop_reason": step.stop_reason, "stop_sequence": None, "usage": usage}, step.headers)

            def _error(self, status: int, message: str, headers: dict[str, str]) -> None:
                self._send(status, {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                                               "message": message}}, headers)

            def _send(self, status: int, doc: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        return Handler
