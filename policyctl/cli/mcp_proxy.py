"""`policyctl mcp-proxy`: put the gateway in front of an MCP server, one decision per tool call."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--gateway", required=True, metavar="URL", help="The gateway's base URL, e.g. http://127.0.0.1:8181.")
@click.option("--agent-id", default="mcp-agent", show_default=True,
              help="The agent id every tool call is decided for (input.agents[0].id).")
@click.option("--role", default=None, help="The agent's role (input.agents[0].role), when policies read one.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The gateway's token file, when it runs with one.")
@click.option("--server-id", default=None,
              help="resource.id of the calls [default: the name the MCP server gives in initialize].")
@click.option("--call-timeout", type=click.FloatRange(min=0.01), default=None, metavar="SECONDS",
              help="Longest a tool call may take on the MCP server; an overrun is a timeout outcome [no limit].")
@click.option("--gateway-timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              metavar="SECONDS", help="Timeout of one request to the gateway (503s and connection errors are "
                                      "retried within 5 s).")
@click.option("-v", "--verbose", is_flag=True, help="Log every routed call and retry to standard error.")
@click.argument("server_command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- SERVER_CMD...")
def mcp_proxy(gateway: str, agent_id: str, role: str | None, token_file: Path | None, server_id: str | None,
              call_timeout: float | None, gateway_timeout: float, verbose: bool,
              server_command: tuple[str, ...]) -> int:
    """Serve MCP over stdio in front of SERVER_CMD, asking the gateway before every tool call.

    SERVER_CMD (after `--`) is an MCP server spawned as a child over stdio.
    Each tools/call becomes the input {"kind": "action", "agents": [{"id":
    AGENT_ID, "role": ROLE}], "action": {"type": "tool_call", "tool": NAME,
    "arguments": {...}}, "resource": {"kind": "mcp_server", "id": SERVER_ID}}.

    \b
    deny      the call is answered with an error result carrying the reasons;
              SERVER_CMD is not called
    route     the routed action.tool is called with the routed action.arguments
    others    the call passes through
    no answer the gateway is down or refuses the request: the call is refused
              (fail closed)

    What the call did becomes the decision's outcome in the gateway's decision
    log: ok, error (the tool's error text), timeout, or crash (the server
    failed or died). tools/list, resources and prompts pass through. In an MCP
    client's configuration:

    \b
      {"command": "policyctl", "args": ["mcp-proxy", "--gateway",
       "http://127.0.0.1:8181", "--agent-id", "a1", "--", "python", "server.py"]}
    """
    from policyctl.client.mcp_proxy import ProxyConfig, serve

    # Standard output is the MCP channel: everything this process says goes to standard error.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="policyctl mcp-proxy: %(levelname)s %(message)s")
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    config = ProxyConfig(gateway=gateway, command=tuple(server_command), agent_id=agent_id, role=role,
                         token_file=token_file, server_id=server_id, call_timeout=call_timeout,
                         gateway_timeout=gateway_timeout)
    return serve(config)
