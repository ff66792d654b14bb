"""Options and helpers the commands share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from policyctl.errors import UsageError
from policyctl.repo import Snapshot, snapshot, worktree_snapshot

repo_option = click.option("--repo", "repo", default=".", show_default=True,
                           type=click.Path(file_okay=False, path_type=Path),
                           help="The policy repository (a git working tree).")


embedder_option = click.option(
    "--embedder", type=click.Choice(["minilm", "tfidf"]), default="minilm", show_default=True,
    help="How failure messages are compared. minilm: what they mean (all-MiniLM-L6-v2, offline; "
         "needs torch) beside how they are worded (character n-grams); tfidf: the n-grams alone, "
         "no torch.")


def load_snapshot(repo: Path, ref: str | None, worktree: bool) -> Snapshot:
    if ref and worktree:
        raise UsageError("--ref and --worktree exclude each other")
    if worktree:
        return worktree_snapshot(repo)
    return snapshot(repo, ref or "HEAD")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def format_options(func: Any, flag: str = "--format") -> Any:
    """--format, --map and --mapping: how to read logs of any format (policyctl.ingest's registry).

    The format lands in the parameter `fmt` (or `log_fmt` when the flag is `--log-format`)."""
    from policyctl.ingest import FORMATS

    func = click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="A mapping file: a JSON object {target: source} or target=source lines.")(func)
    func = click.option("--map", "maps", multiple=True, metavar="TARGET=SOURCE",
                        help="Where an Event field is in other JSON records, e.g. outcome.message=error.detail; "
                             "repeat for more.")(func)
    dest = "fmt" if flag == "--format" else "log_fmt"
    return click.option(flag, dest, type=click.Choice(FORMATS), default="auto", show_default=True,
                        help="Log format; auto chooses by content: events (policyctl's), otlp-json, otlp-proto, "
                             "opa (decision logs), json (documents, transcripts), csv, text, mapped.")(func)


def log_format_options(func: Any) -> Any:
    """format_options for commands whose --format is their output's: --log-format."""
    return format_options(func, flag="--log-format")


def normalized_logs(logs: tuple[Path, ...] | list[Path], into: Path, *, fmt: str = "auto", maps: tuple[str, ...] = (),
                    mapping_file: Path | None = None, summary: Any = None) -> list[Path]:
    """The logs as policyctl Event lines under `into`, with a one-line summary on stderr; exit 1 when
    nothing in them is readable."""
    from policyctl.ingest import ReadSummary, load_mapping, normalize

    if not logs:
        return []
    summary = summary if summary is not None else ReadSummary()
    paths = normalize(list(logs), into, fmt=fmt, mapping=load_mapping(maps, mapping_file), summary=summary)
    click.echo(summary.line(), err=True)
    for problem in summary.problems[:5]:
        click.echo(f"  {problem}", err=True)
    summary.require_some()
    return paths


def _use_engine(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Make the chosen engine this process's default, and its worker processes' (they inherit the
    environment), so every evaluation of the command runs on it."""
    import os

    from policyctl.engine import ENGINE_ENV

    if value:
        os.environ[ENGINE_ENV] = value
    return value


def engine_option(func: Any, expose: bool = True) -> Any:
    """--engine: the Rego engine every evaluation of this command runs on (default: the default
    engine), into the parameter `engine_name`."""
    from policyctl.engine import DEFAULT_ENGINE, ENGINES

    return click.option("--engine", "engine_name", type=click.Choice(sorted(ENGINES)), default=None,
                        callback=_use_engine, expose_value=expose, is_eager=True,
                        help=f"Rego engine to evaluate on (default {DEFAULT_ENGINE}, or $POLICYCTL_ENGINE); "
                             "see docs/engines.md.")(func)


def engine_flag(func: Any) -> Any:
    """engine_option for commands that only need the choice made (every evaluation reads it)."""
    return engine_option(func, expose=False)
