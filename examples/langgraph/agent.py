"""A LangGraph agent whose tools ask the policyctl gateway before they act: offline, with a scripted model.

    python examples/langgraph/agent.py --gateway http://127.0.0.1:8181 [--token-file F] [--json]

The agent is a real LangGraph graph (a model node, LangGraph's ToolNode, the usual
tools_condition loop); only the chat model is scripted, so it runs without a network or
an API key. Each tool wraps what it does in `client.guard(input)`:

- deny   -> the tool returns the refusal (rule and reason) to the model, and does nothing;
- route  -> the tool acts on the routed input (parquet over SMB goes over SFTP);
- allow  -> the tool acts as asked;

and the guard reports what happened (`ok`, `denied`, or `error` with the exception) as the
decision's outcome, so the gateway's decision log holds the agent's real failures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from policyctl.client import AgentRef, Denied, GatewayClient, action_input

AGENT: AgentRef = {"id": "report-agent-1", "role": "reporting", "priority": 3}
TASK = "Publish the Q3 report to the analytics share, clean up last quarter's copy, and share the CSV extract."

# What the scripted model asks for, one tool call per turn; then it answers from the tool results.
SCRIPT: list[dict[str, Any]] = [
    {"name": "share_file", "args": {"path": "reports/q3.parquet", "protocol": "smb", "share": "fs-2"}},
    {"name": "delete_file", "args": {"path": "reports/q2.parquet", "share": "prod-finance"}},
    {"name": "share_file", "args": {"path": "reports/q3.csv", "protocol": "nfs", "share": "fs-2"}},
]


class ScriptedChatModel(BaseChatModel):
    """A chat model that plays a script of tool calls, then sums up what the tools said. No network.

    Turn n (counted by the model's own earlier messages) asks for `script[n]`; after the
    script it answers with the tools' results, as a model reading them would.
    """

    script: list[dict[str, Any]]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        if turn < len(self.script):
            call = self.script[turn]
            message = AIMessage(content="", tool_calls=[{"name": call["name"], "args": call["args"],
                                                         "id": f"call-{turn}", "type": "tool_call"}])
        else:
            results = [f"- {m.name}: {m.content}" for m in messages if isinstance(m, ToolMessage)]
            message = AIMessage(content="Here is what happened:\n" + "\n".join(results))
        return ChatResult(generations=[ChatGeneration(message=message)])


class ShareUnavailable(OSError):
    """The file share did not take the file (how the NFS export of this demo world behaves)."""


def make_tools(client: GatewayClient, shares: Path) -> list[BaseTool]:
    """The agent's tools; each asks the gateway through `client.guard` and acts on the routed input."""

    def transfer(path: str, protocol: str, share: str) -> str:
        if protocol == "nfs":
            raise ShareUnavailable(f"nfs: stale file handle writing {path} to {share}")
        target = shares / share / protocol / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{path} shared over {protocol}\n")
        return f"shared {path} on {share} over {protocol}"

    @tool
    def share_file(path: str, protocol: str, share: str) -> str:
        """Share a file on a file share over a protocol (smb, sftp or nfs)."""
        input = action_input("file_share", agent=AGENT, protocol=protocol, file_type=Path(path).suffix.lstrip("."),
                             path=path, resource={"kind": "share", "id": share})
        try:
            with client.guard(input) as g:
                used = g.input["action"]["protocol"]  # a route may have changed it
                done = transfer(path, used, share)
                if used != protocol:
                    done += f" (routed from {protocol}: {g.reasons[0].message})"
                return done
        except Denied as denied:
            return f"REFUSED: {denied}"
        except ShareUnavailable as exc:  # the guard has reported it as an `error` outcome
            return f"FAILED: {exc}"

    @tool
    def delete_file(path: str, share: str) -> str:
        """Delete a file from a file share."""
        input = action_input("file_delete", agent=AGENT, path=path, resource={"kind": "share", "id": share})
        try:
            with client.guard(input) as g:
                target = shares / share / g.input["action"]["path"]
                target.unlink(missing_ok=True)
                return f"deleted {path} from {share}"
        except Denied as denied:
            return f"REFUSED: {denied}"

    return [share_file, delete_file]


def build_agent(model: BaseChatModel, tools: list[BaseTool]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The classic tool-calling loop: model -> tools -> model, until the model stops calling tools."""
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile()


def run(client: GatewayClient, shares: Path, script: list[dict[str, Any]] | None = None) -> list[BaseMessage]:
    """Run the agent on TASK and return the conversation."""
    agent = build_agent(ScriptedChatModel(script=script or SCRIPT), make_tools(client, shares))
    state = agent.invoke({"messages": [HumanMessage(TASK)]}, config={"recursion_limit": 20})
    messages: list[BaseMessage] = state["messages"]
    return messages


def _show(messages: list[BaseMessage], emit: Callable[[str], None]) -> None:
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            for call in m.tool_calls:
                emit(f"model  -> {call['name']}({json.dumps(call['args'])})")
        elif isinstance(m, ToolMessage):
            emit(f"tool   <- {m.name}: {m.content}")
        else:
            emit(f"{m.type:6} {m.content}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8181", help="the gateway's base URL")
    parser.add_argument("--token-file", default=None, help="the gateway's token file, when it has one")
    parser.add_argument("--shares", default=None, help="folder standing in for the file shares [a temporary one]")
    parser.add_argument("--json", action="store_true", help="print the conversation as JSON lines")
    args = parser.parse_args(argv)
    shares = Path(args.shares) if args.shares else Path(tempfile.mkdtemp(prefix="policyctl-shares-"))
    with GatewayClient(args.gateway, token_file=args.token_file) as client:
        messages = run(client, shares)
    if args.json:
        for m in messages:
            sys.stdout.write(json.dumps({"type": m.type, "name": getattr(m, "name", None), "content": m.content,
                                         "tool_calls": [{"name": c["name"], "args": c["args"]}
                                                        for c in getattr(m, "tool_calls", [])]}) + "\n")
    else:
        _show(messages, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
