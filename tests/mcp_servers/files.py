"""A real MCP server for the tests, on the official SDK: file tools over a root folder, one of them flaky.

`python tests/mcp_servers/files.py ROOT` serves over stdio. Every tool call it receives is
appended to ROOT/calls.jsonl, so a test sees exactly what reached the server.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
FORMATS = ("csv", "json", "parquet", "xlsx", "xls")

server = MCPServer("files", version="1.0", instructions="Files under one root folder.")


def _record(tool: str, **arguments: object) -> None:
    with (ROOT / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


def _path(name: str) -> Path:
    target = (ROOT / name).resolve()
    if not target.is_relative_to(ROOT):
        raise ToolError(f"{name}: outside the root folder")
    return target


@server.tool()
def read_file(path: str) -> str:
    """Read a text file under the root folder."""
    _record("read_file", path=path)
    try:
        return _path(path).read_text()
    except FileNotFoundError:
        raise ToolError(f"{path}: no such file") from None


@server.tool()
def convert(path: str, format: str) -> str:
    """Convert a file to another format (the parquet writer is broken)."""
    _record("convert", path=path, format=format)
    if format not in FORMATS:
        raise ToolError(f"{format}: unknown format (one of {', '.join(FORMATS)})")
    if format == "parquet":
        raise ToolError(f"parquet writer failed on {path}: column 'ts' has mixed types (ArrowTypeError)")
    source = _path(path)
    target = source.with_suffix("." + format)
    target.write_text(source.read_text() if source.exists() else "")
    return f"converted {path} to {target.name}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file under the root folder."""
    _record("delete_file", path=path)
    _path(path).unlink()
    return f"deleted {path}"


@server.tool()
async def slow(seconds: float) -> str:
    """Take `seconds` to answer (without blocking the server's other calls)."""
    _record("slow", seconds=seconds)
    await anyio.sleep(seconds)
    return f"slept {seconds} s"


@server.tool()
def crash() -> str:
    """Exit the server process at once, as a crashing tool server would."""
    _record("crash")
    os._exit(3)


@server.resource("files://index")
def index() -> str:
    """The names of the files under the root folder."""
    return "\n".join(sorted(p.name for p in ROOT.iterdir() if p.is_file()))


@server.prompt()
def summarize(path: str) -> str:
    """Ask for a summary of one file."""
    return f"Summarize the file {path}."


if __name__ == "__main__":
    server.run()
