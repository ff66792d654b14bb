"""The gateway's HTTP API (FastAPI on uvicorn): decide, outcome, status, probes and metrics; errors are {code, message}."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from policyctl import __version__
from policyctl.decide import check_input
from policyctl.errors import InputLimitError, ValidationError
from policyctl.gateway.bundles import BUNDLE_PATH, GZIP, BundleService, BundleUnavailable
from policyctl.gateway.security import OPEN_PATHS, bearer_matches
from policyctl.gateway.service import Gateway, GatewayConfig, Unavailable
from policyctl.model.schema import load_schema, schema_errors

JSON = "application/json"
OPENMETRICS = "application/openmetrics-text"


class ApiError(Exception):
    """An error answer: HTTP status and the {code, message} body (plus the field path for bad input)."""

    def __init__(self, status: int, code: str, message: str, *, path: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.headers = headers


def error_body(code: str, message: str, path: str | None = None) -> bytes:
    body: dict[str, str] = {"code": code, "message": message}
    if path is not None:
        body["path"] = path
    return orjson.dumps(body)


# --------------------------------------------------------------------------- OpenAPI documents


def _schema(name: str) -> dict[str, Any]:
    return {k: v for k, v in load_schema(name).items() if k not in ("$schema", "$id")}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "path": {"type": "string", "description": "the field path of bad input"}},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR_SCHEMA}}}


def _outcome_schema() -> dict[str, Any]:
    outcome = load_schema("event")["properties"]["outcome"]
    return {"type": "object", "required": ["decision_id", "outcome"],
            "properties": {"decision_id": {"type": "string", "minLength": 1}, "outcome": outcome}}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {"401": _error("Missing or wrong bearer token (only when the gateway has --token-file).")}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


# --------------------------------------------------------------------------- guard


Answer = tuple[int, bytes, dict[str, str] | None]


class Guard:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware): bearer token, body size, and the hot path.

    POST /v1/decide is answered here, without the framework's routing, request objects and
    dependency solving, which cost more than the IPC to a worker; the FastAPI route of the
    same path documents it in OpenAPI and calls the same `answer_decide`.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body: int, on_refused: Callable[[int, str], None],
                 decide: Callable[[bytes, float, str | None], Awaitable[Answer]] | None = None) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.on_refused = on_refused
        self.decide = decide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.perf_counter()
        auth: str | None = None
        length: str | None = None
        timeout: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name in TIMEOUT_HEADERS:
                timeout = value.decode("latin-1")
        if self.token is not None and scope["path"] not in OPEN_PATHS and not bearer_matches(auth, self.token):
            await self._refuse(send, 401, "unauthorized", "send `Authorization: Bearer <token>` with the token "
                               "of the gateway's --token-file", {"www-authenticate": "Bearer"})
            return
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._refuse(send, 413, "request_too_large", f"the body is {length} bytes; the limit is "
                               f"{self.max_body}")
            return
        if self.decide is not None and scope["path"] == "/v1/decide" and scope["method"] == "POST":
            body = await _receive_body(receive, self.max_body)
            if body is None:
                await self._refuse(send, 413, "request_too_large", f"the body is over {self.max_body} bytes")
            else:
                watch = scope.get(WATCH_KEY)
                answer = (await _watched(self.decide(body, received, timeout), watch) if watch is not None
                          else await _unless_gone(self.decide(body, received, timeout), receive))
                if answer is not None:
                    await _respond(send, *answer)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, code: str, message: str,
                      headers: dict[str, str] | None = None) -> None:
        self.on_refused(status, code)
        await _respond(send, status, error_body(code, message), headers)


WATCH_KEY = "policyctl.connection"


class ConnectionWatch:
    """Put in each request's scope by the gateway's protocol: the task answering it is cancelled the
    moment the connection is lost, without a second task per request waiting on `receive`."""

    __slots__ = ("task", "gone")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.gone = False

    def lost(self) -> None:
        self.gone = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


async def _watched(work: Awaitable[Answer], watch: ConnectionWatch) -> Answer | None:
    """The answer of `work`, or None when the connection is lost first (`work` is then cancelled)."""
    if watch.gone:
        return None
    task = asyncio.current_task()
    watch.task = task
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone and task is not None:
            task.uncancel()
            return None  # the client went away
        raise
    finally:
        watch.task = None


async def _unless_gone(work: Awaitable[Answer], receive: Receive) -> Answer | None:
    """The answer of `work`, or None when the client disconnects first: `work` is then cancelled.

    A client that timed out has acted without the decision; evaluating and logging it
    anyway spends a worker on nobody and feeds the bot a decision that never happened.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, task))
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return None  # the client went away
        raise
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Future[Answer]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


async def _receive_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes `limit` (a chunked body declares no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client went away; whatever is answered goes nowhere
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_JSON_HEADER = (b"content-type", JSON.encode())


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Draining:
    """Outermost ASGI middleware: after SIGTERM every request still arriving is answered 503 `shutting_down`.

    Keep-alive clients hold connections the closed listener no longer sees; a request
    they send during the drain gets an answer that says why and `Connection: close`
    (uvicorn then closes the connection), rather than a reset that looks like a crash.
    """

    def __init__(self, app: ASGIApp, is_draining: Callable[[], bool], on_refused: Callable[[int, str], None]) -> None:
        self.app = app
        self.is_draining = is_draining
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.is_draining():
            self.on_refused(503, "shutting_down")
            await _respond(send, 503, error_body("shutting_down", "the gateway is shutting down (SIGTERM); retry "
                                                 "on another replica or once it is back"),
                           {"connection": "close", "retry-after": "1"})
            return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (chunked bodies declare no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "request_too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "recursion" in text.lower() or "depth" in text.lower():
            raise ApiError(413, "input_too_large", "the body is nested too deeply") from None
        raise ApiError(400, "bad_json", f"the body is not JSON ({text.split(':', 1)[0]})") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "validation_error", f"the body must be a JSON object, got {type(doc).__name__}", path="")
    return doc


TIMEOUT_HEADERS = (b"x-request-timeout", b"request-timeout")


def request_deadline(value: str | None) -> float | None:
    """Seconds from `X-Request-Timeout` (or `Request-Timeout`): how long the client waits for its answer."""
    if value is None:
        return None
    try:
        seconds = float(value.strip().removesuffix("s"))
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ApiError(400, "validation_error", f"X-Request-Timeout: expected seconds > 0 (e.g. 2 or 0.5), got "
                       f"{value[:40]!r}", path="headers.x-request-timeout")
    return seconds


async def answer_decide(gateway: Gateway, body: bytes, received: float, timeout: str | None = None) -> Answer:
    """POST /v1/decide: a body `{"input": …}` to (status, JSON body, headers); errors are counted."""
    try:
        deadline = request_deadline(timeout)
        doc = parse_json_object(body)
        if "input" not in doc:
            raise ApiError(400, "validation_error", "input: required field is missing", path="input")
        try:
            input = check_input(doc["input"])
        except ValidationError as exc:
            raise ApiError(400, exc.code, str(exc), path=exc.path) from None
        except InputLimitError as exc:
            raise ApiError(413, exc.code, exc.message) from None
        try:
            decision = await gateway.decide(input, received, deadline)
        except Unavailable as exc:
            retry = str(max(1, round(exc.retry_after))) if exc.retry_after else "1"
            raise ApiError(503, exc.code, exc.message, headers={"Retry-After": retry}) from None
    except ApiError as exc:
        gateway.metrics.error(exc.status, exc.code)
        return exc.status, error_body(exc.code, exc.message, exc.path), exc.headers
    return 200, orjson.dumps(decision), None


# --------------------------------------------------------------------------- application


def create_app(gateway: Gateway) -> ASGIApp:
    """The ASGI application over one Gateway: the FastAPI application (whose lifespan starts and stops
    the gateway) inside the draining and guard layers."""
    config = gateway.config
    bundles = BundleService(config.repo, signing=config.bundle_signing, timeout=config.build_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        # Everything allocated so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall the event loop for milliseconds.
        gc.freeze()
        try:
            yield
        finally:
            await bundles.close()
            await gateway.stop()

    access = ("Every path but /healthz, /readyz and /openapi.json needs `Authorization: Bearer <token>` (the "
              "`bearer` security scheme)." if config.token is not None else
              "This gateway has no --token-file: it listens on loopback only and no request needs a token.")
    app = FastAPI(title="policyctl gateway", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Decisions from the policies on a git ref, hot-swapped on every merge. {access}")
    async def fast_decide(body: bytes, received: float, timeout: str | None) -> Answer:
        return await answer_decide(gateway, body, received, timeout)

    # Outside FastAPI's own middleware stack (errors, body limit, routing): POST /v1/decide is
    # answered before any of it runs; everything else passes through to the application.
    outer = Draining(Guard(app, token=config.token, max_body=config.max_body_bytes, on_refused=gateway.metrics.error,
                           decide=fast_decide), is_draining=lambda: gateway.draining,
                   on_refused=gateway.metrics.error)

    def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        gateway.metrics.error(exc.status, exc.code)
        return Response(error_body(exc.code, exc.message, exc.path), status_code=exc.status, media_type=JSON,
                        headers=exc.headers)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        gateway.metrics.error(exc.status_code, code)
        return Response(error_body(code, str(exc.detail)), status_code=exc.status_code, media_type=JSON,
                        headers=getattr(exc, "headers", None))

    def validation_error(request: Request, exc: Exception) -> Response:
        gateway.metrics.error("400", "validation_error")
        return Response(error_body("validation_error", str(exc)[:500]), status_code=400, media_type=JSON)

    def internal_error(request: Request, exc: Exception) -> Response:
        gateway.metrics.error("500", "internal_error")
        return Response(error_body("internal_error", f"{type(exc).__name__}: {exc}"[:300]), status_code=500,
                        media_type=JSON)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    decide_responses: dict[int | str, dict[str, Any]] = {
        "200": {"description": "The decision (an evaluation that fails or overruns is a fail-closed deny with "
                               "source `error` and an `error` object).",
                "content": {JSON: {"schema": _schema("decision")}}},
        "400": _error("The body is not JSON or the input does not fit the Input schema (`path` names the field)."),
        **AUTH_ERRORS,
        "413": _error("The body, or the input's depth or size, is over the limit."),
        "503": _error("Not ready (no revision builds yet), overloaded or shutting down; retry later."),
    }

    @app.post("/v1/decide", summary="Decide one input", responses=decide_responses, tags=["decisions"],
              openapi_extra=_body({"type": "object", "required": ["input"], "properties": {"input": _schema("input")},
                                   "description": "As in OPA's data API: the input under `input`."}))
    async def decide(request: Request) -> Response:
        received = time.perf_counter()
        timeout = request.headers.get("x-request-timeout") or request.headers.get("request-timeout")
        status, payload, headers = await answer_decide(gateway, await read_body(request, config.max_body_bytes),
                                                       received, timeout)
        return Response(payload, status_code=status, media_type=JSON, headers=headers)

    @app.post("/v1/outcome", summary="Report what happened after a decision", tags=["decisions"],
              openapi_extra=_body(_outcome_schema()),
              responses={"200": {"description": "Joined to the decision's log record.",
                                 "content": {JSON: {"schema": {"type": "object"}}}},
                         "400": _error("The body is not a valid outcome."), **AUTH_ERRORS,
                         "404": _error("No decision with that id in the recent-decisions window."),
                         "409": _error("The gateway runs without a decision log (--log-dir)."),
                         "413": _error("The body is over the limit.")})
    async def outcome(request: Request) -> Response:
        doc = parse_json_object(await read_body(request, config.max_body_bytes))
        decision_id = doc.get("decision_id")
        if not isinstance(decision_id, str) or not decision_id:
            raise ApiError(400, "validation_error", "decision_id: expected a non-empty string", path="decision_id")
        outcome = doc.get("outcome")
        if not isinstance(outcome, dict):
            raise ApiError(400, "validation_error", "outcome: expected an object", path="outcome")
        problems = schema_errors("event", {"id": decision_id, "input": {"kind": "action", "action": {"type": "x"}},
                                           "outcome": outcome})
        if problems:
            path, message = problems[0]
            raise ApiError(400, "validation_error", f"{path}: {message}", path=path)
        if not gateway.log.enabled:
            raise ApiError(409, "decision_log_off", "this gateway runs without --log-dir: outcomes have no log "
                           "to join")
        if not gateway.outcome(decision_id, outcome):
            raise ApiError(404, "unknown_decision", f"decision {decision_id!r} is not among the last "
                           f"{gateway.log.window_size} decisions of this gateway process")
        return Response(orjson.dumps({"decision_id": decision_id, "joined": True}), media_type=JSON)

    @app.get("/v1/status", summary="Active and head revisions, last error, policies, workers, decision log",
             tags=["operations"], responses={"200": {"description": "The status.",
                                                     "content": {JSON: {"schema": {"type": "object"}}}},
                                             **AUTH_ERRORS})
    async def status() -> Response:
        return Response(orjson.dumps(gateway.status()), media_type=JSON)

    @app.get("/healthz", summary="The process answers", tags=["operations"],
             responses={"200": {"description": "Alive.", "content": {JSON: {"schema": {"type": "object"}}}}})
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz", summary="A revision is served", tags=["operations"],
             responses={"200": {"description": "Ready.", "content": {JSON: {"schema": {"type": "object"}}}},
                        "503": _error("Not ready: still loading, or no commit builds.")})
    async def readyz() -> Response:
        ready, why = gateway.ready()
        if not ready:
            raise ApiError(503, "not_ready", why)
        return Response(b'{"ready":true}', media_type=JSON)

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response,
             responses={"200": {"description": "The Prometheus text format 0.0.4, or OpenMetrics when Accept "
                                               "asks for it (as Prometheus does).",
                                "content": {"text/plain": {"schema": {"type": "string"}},
                                            OPENMETRICS: {"schema": {"type": "string"}}}}, **AUTH_ERRORS})
    async def metrics(request: Request) -> Response:
        body, content_type = gateway.metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get(BUNDLE_PATH, summary="The active revision as an OPA bundle (docs/bundles.md)", tags=["bundles"],
             response_class=Response,
             openapi_extra={"parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                                            "schema": {"type": "string"}}]},
             responses={"200": {"description": "The bundle (`policyctl bundle build` of the revision); ETag is the "
                                               "quoted revision.",
                                "content": {GZIP: {"schema": {"type": "string", "format": "binary"}}}},
                        "304": {"description": "The If-None-Match ETag is the active revision."}, **AUTH_ERRORS,
                        "503": _error("No revision is served yet, or its bundle failed to build.")})
    async def opa_bundle(request: Request) -> Response:
        active = gateway.revisions.active
        try:
            answer = await bundles.answer(active.id if active else None, request.headers.get("if-none-match"))
        except BundleUnavailable as exc:
            raise ApiError(503, exc.code, exc.message, headers={"Retry-After": "5"}) from None
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type, headers=answer.headers)

    if config.token is not None:
        _declare_bearer(app)
    return outer


def _declare_bearer(app: FastAPI) -> None:
    """Say in /openapi.json that every path but the probes needs the bearer token (when one is set)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The token of the gateway's --token-file. A gateway without one listens "
                                          "on loopback only, needs no token and declares no security."}}
            for path, operations in schema.get("paths", {}).items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# --------------------------------------------------------------------------- serving


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on a request's headers and an idle timer from the start.

    uvicorn arms its keep-alive timer only after a response and restarts nothing while
    headers trickle in, so a client sending a byte a second (or nothing at all after
    connecting) held a connection forever. `header_timeout` is set by `protocol_class`.
    """

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()
        self.cycle.scope[WATCH_KEY] = ConnectionWatch()  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            watch = cycle.scope.get(WATCH_KEY)
            if isinstance(watch, ConnectionWatch):
                watch.lost()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        body = error_body("header_timeout", f"the request's headers did not arrive within {self.header_timeout:g} s "
                          "(the gateway's --header-timeout)")
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderDeadlineProtocol]:
    """The protocol uvicorn instantiates per connection (it passes no options of ours), with the deadline set."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout})


class _Server(uvicorn.Server):
    """uvicorn, except that SIGTERM ends in exit status 0 after the drain instead of being re-raised,
    and requests on connections still open after SIGTERM get 503 `shutting_down` instead of a reset."""

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None], linger: float) -> None:
        super().__init__(config)
        self.on_drain = on_drain
        self.linger = linger

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting; for `linger` seconds answer what arrives with 503; then uvicorn's drain.

        uvicorn alone closes idle keep-alive connections at once, so a request a client sent
        just then meets a reset; during the linger it gets an answer that says why.
        """
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        self.on_drain()
        deadline = time.monotonic() + self.linger
        while self.server_state.connections and time.monotonic() < deadline and not self.force_exit:
            await asyncio.sleep(0.05)
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP,
    # and without it Nagle plus delayed ACKs add 40 ms to every keep-alive answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(config: GatewayConfig, announce: Callable[[str], None]) -> int:
    """Run the gateway until SIGTERM or Ctrl-C; the decision log is drained before this returns."""
    from policyctl.errors import UsageError

    try:
        sock = bind(config.host, config.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    host, port = sock.getsockname()[:2]
    gateway = Gateway(config)
    app = create_app(gateway)
    def drain() -> None:
        gateway.draining = True

    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                    http=protocol_class(config.header_timeout), timeout_graceful_shutdown=30,
                                    proxy_headers=False,  # loopback or a token: no proxy's headers are trusted
                                    timeout_keep_alive=config.idle_timeout, server_header=False),
                     on_drain=drain, linger=config.shutdown_linger)
    shown = f"[{host}]" if ":" in host else host
    announce(f"policyctl gateway listening on http://{shown}:{port} (repo {config.repo}, ref {config.ref}, "
             f"{config.workers} workers, decision log {config.log_dir or 'off'})")
    server.run(sockets=[sock])
    return 0

