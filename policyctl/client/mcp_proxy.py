"""An MCP server over stdio in front of another one: every tools/call is decided by the gateway first.

The server behind it is spawned as a child over stdio. Each `tools/call` becomes the input

    {"kind": "action", "agents": [{"id": AGENT, "role": ROLE}],
     "action": {"type": "tool_call", "tool": NAME, "arguments": {...}},
     "resource": {"kind": "mcp_server", "id": SERVER}}

A `deny` (a policy's, or the client's own when the gateway gives no decision: fail closed)
answers the call with an error result carrying the reasons, and the server behind is
never called; a `route` calls the routed `action.tool` with the routed `action.arguments`;
every other decision passes the call through. What the call did is reported as the
decision's outcome (`ok`; `error` with the tool's error text; `timeout`; `crash` when the
server behind failed or died), so the gateway's decision log holds the real failures of
real tool calls. tools/list, resources and prompts pass through undecided.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from policyctl.client.aio import AsyncGatewayClient
from policyctl.client.guard import denied_outcome
from policyctl.client.retry import RetryPolicy
from policyctl.client.types import Outcome, describe_denial, routed_input
from policyctl.errors import PolicyctlError
from policyctl.model import Decision

logger = logging.getLogger("policyctl.mcp_proxy")

# JSON-RPC error codes of the server behind, as outcome codes a person reads.
MCP_ERROR_CODES = {types.CONNECTION_CLOSED: "mcp_connection_closed", types.REQUEST_TIMEOUT: "mcp_request_timeout",
                   types.INVALID_REQUEST: "mcp_invalid_request", types.METHOD_NOT_FOUND: "mcp_method_not_found",
                   types.INVALID_PARAMS: "mcp_invalid_params", types.INTERNAL_ERROR: "mcp_internal_error"}


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What `policyctl mcp-proxy` was asked to do."""

    gateway: str
    command: tuple[str, ...]
    agent_id: str = "mcp-agent"
    role: str | None = None
    token_file: Path | None = None
    server_id: str | None = None  # resource.id; default: the name the server gives in initialize
    call_timeout: float | None = None  # seconds one upstream tools/call may take (None: no limit)
    gateway_timeout: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cwd: Path | None = None


def tool_call_input(tool: str, arguments: Mapping[str, Any] | None, *, agent_id: str, role: str | None,
                    server_id: str) -> dict[str, Any]:
    """The gateway input of one MCP tools/call."""
    agent: dict[str, Any] = {"id": agent_id}
    if role is not None:
        agent["role"] = role
    return {"kind": "action", "agents": [agent],
            "action": {"type": "tool_call", "tool": tool, "arguments": dict(arguments or {})},
            "resource": {"kind": "mcp_server", "id": server_id}}


def result_text(result: types.CallToolResult) -> str:
    """The text blocks of a tool result, joined: what a failing tool said."""
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def refusal(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class ToolGate:
    """Decides every tool call on the gateway, calls the server behind as decided, reports the outcome.

    Outcomes are posted in the background (`reports`), so a slow or unreachable gateway never
    holds a tool result back; the task group waits for them before the proxy exits.
    """

    def __init__(self, client: AsyncGatewayClient, upstream: ClientSession, reports: anyio.abc.TaskGroup, *,
                 agent_id: str, role: str | None, server_id: str, call_timeout: float | None) -> None:
        self.client = client
        self.upstream = upstream
        self.reports = reports
        self.agent_id = agent_id
        self.role = role
        self.server_id = server_id
        self.call_timeout = call_timeout
        self.gone = ""  # why the server behind can no longer answer, once it cannot

    async def call_tool(self, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        if self.gone:
            # Nothing can happen any more: no decision to ask for, no outcome to log.
            return refusal(f"policyctl mcp-proxy: the MCP server {self.server_id!r} is gone: {self.gone}; "
                           "restart the proxy")
        input = tool_call_input(name, arguments, agent_id=self.agent_id, role=self.role, server_id=self.server_id)
        decision = await self.client.decide(input)
        if decision.action == "deny":
            self._report(decision, denied_outcome(decision))
            return refusal(f"policyctl refused tools/call {name!r} on {self.server_id!r}: "
                           f"{describe_denial(decision)}")
        action = routed_input(input, decision).get("action")
        action = action if isinstance(action, dict) else {}
        routed_tool, routed_args = action.get("tool"), action.get("arguments")
        tool: str = routed_tool if isinstance(routed_tool, str) else name
        args: dict[str, Any] = routed_args if isinstance(routed_args, dict) else dict(arguments or {})
        if decision.action == "route":
            logger.info("tools/call %s routed to %s by %s", name, tool,
                        ", ".join(r.rule for r in decision.reasons) or decision.source)
        started = time.monotonic()
        try:
            result = await self.upstream.call_tool(tool, args, read_timeout_seconds=self.call_timeout)
        except MCPError as exc:
            ms = (time.monotonic() - started) * 1000
            code = MCP_ERROR_CODES.get(exc.code, f"mcp_error_{exc.code}")
            if exc.code == types.CONNECTION_CLOSED:
                self.gone = f"it closed the connection during tools/call {tool!r} ({exc.message})"
                self._report(decision, Outcome("crash", message=f"the MCP server {self.server_id!r} {self.gone}",
                                               code=code, duration_ms=ms))
                return refusal(f"policyctl mcp-proxy: the MCP server {self.server_id!r} is gone: {self.gone}")
            if exc.code == types.REQUEST_TIMEOUT:
                limit = f"within {self.call_timeout:g} s (--call-timeout)" if self.call_timeout else "in time"
                why = f"tools/call {tool!r} did not finish {limit}"
                self._report(decision, Outcome("timeout", message=why, code=code, duration_ms=ms))
                return refusal(f"policyctl mcp-proxy: {why}")
            self._report(decision, Outcome("crash", message=exc.message, code=code, duration_ms=ms))
            raise  # a protocol error of the server behind reaches the caller as it was
        except Exception as exc:  # noqa: BLE001 - whatever the server behind did, the call crashed
            ms = (time.monotonic() - started) * 1000
            kind = type(exc).__name__
            self._report(decision, Outcome("crash", message=f"{kind}: {exc}", code=kind, duration_ms=ms))
            return refusal(f"policyctl mcp-proxy: tools/call {tool!r} on {self.server_id!r} failed: {kind}: {exc}")
        ms = (time.monotonic() - started) * 1000
        if result.is_error:
            self._report(decision, Outcome("error", message=result_text(result) or "the tool returned an error",
                                           code="tool_error", duration_ms=ms))
        else:
            self._report(decision, Outcome("ok", duration_ms=ms))
        return result

    def _report(self, decision: Decision, outcome: Outcome) -> None:
        if decision.decision_id:
            self.reports.start_soon(self._post, decision.decision_id, outcome)

    async def _post(self, decision_id: str, outcome: Outcome) -> None:
        try:
            await self.client.report(decision_id, outcome, raise_errors=False)
        except Exception:  # noqa: BLE001 - a lost outcome must not take the proxy down
            logger.exception("outcome of decision %s not recorded", decision_id)


def build_server(gate: ToolGate, upstream: ClientSession, init: types.InitializeResult) -> Server[Any]:
    """The proxy's MCP server: the upstream's identity and capabilities, tool calls through `gate`."""
    caps = init.capabilities
    handlers: dict[str, Any] = {}

    if caps.tools is not None:
        async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                             ) -> types.ListToolsResult:
            return await upstream.list_tools(params=params)

        async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                            ) -> types.CallToolResult:
            return await gate.call_tool(params.name, params.arguments)

        handlers.update(on_list_tools=list_tools, on_call_tool=call_tool)

    if caps.resources is not None:
        async def list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                                 ) -> types.ListResourcesResult:
            return await upstream.list_resources(params=params)

        async def list_templates(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                                 ) -> types.ListResourceTemplatesResult:
            return await upstream.list_resource_templates(params=params)

        async def read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
                                ) -> types.ReadResourceResult:
            return await upstream.read_resource(str(params.uri))

        handlers.update(on_list_resources=list_resources, on_list_resource_templates=list_templates,
                        on_read_resource=read_resource)

    if caps.prompts is not None:
        async def list_prompts(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                               ) -> types.ListPromptsResult:
            return await upstream.list_prompts(params=params)

        async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
                             ) -> types.GetPromptResult:
            return await upstream.get_prompt(params.name, params.arguments)

        handlers.update(on_list_prompts=list_prompts, on_get_prompt=get_prompt)

    info = init.server_info
    return Server(info.name or gate.server_id, version=info.version, title=info.title,
                  instructions=init.instructions, **handlers)


async def run_proxy(config: ProxyConfig) -> int:
    """Serve MCP on this process's stdin/stdout until the client hangs up; 0 then."""
    if not config.command:
        raise PolicyctlError("no MCP server command: give it after `--`, e.g. "
                             "`policyctl mcp-proxy --gateway URL -- python server.py`", code="usage_error")
    async with AsyncGatewayClient(config.gateway, token_file=config.token_file, timeout=config.gateway_timeout,
                                  retry=config.retry) as client:
        if not await client.ready():
            logger.warning("the gateway at %s is not ready: tool calls are refused until it is (fail closed)",
                           client.url)
        params = StdioServerParameters(command=config.command[0], args=list(config.command[1:]),
                                       env=dict(os.environ), cwd=config.cwd)
        shown = " ".join(config.command)
        async with contextlib.AsyncExitStack() as stack:
            try:
                up_read, up_write = await stack.enter_async_context(stdio_client(params, errlog=sys.stderr))
            except OSError as exc:
                raise PolicyctlError(f"cannot start the MCP server `{shown}`: {exc.strerror or exc}",
                                     code="mcp_server_failed") from exc
            upstream = await stack.enter_async_context(ClientSession(up_read, up_write))
            try:
                with anyio.fail_after(30):
                    init = await upstream.initialize()
            except (MCPError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise PolicyctlError(f"the MCP server `{shown}` did not initialize: {exc or type(exc).__name__}",
                                     code="mcp_server_failed") from exc
            server_id = config.server_id or init.server_info.name or Path(config.command[0]).name
            async with anyio.create_task_group() as reports:
                gate = ToolGate(client, upstream, reports, agent_id=config.agent_id, role=config.role,
                                server_id=server_id, call_timeout=config.call_timeout)
                server = build_server(gate, upstream, init)
                logger.info("proxying MCP server %r (%s) for agent %s through %s", server_id, shown,
                            config.agent_id, client.url)
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())
    return 0


def serve(config: ProxyConfig) -> int:
    """Run the proxy (blocking) and return its exit code."""
    return anyio.run(run_proxy, config)
