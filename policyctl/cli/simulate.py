"""`policyctl simulate`: a swarm of agents in a world with hidden faults, written as an exported log."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from policyctl.cli.common import engine_flag
from policyctl.errors import UsageError


@click.command()
@click.option("--world", "world_spec", default="demo", show_default=True, metavar="FILE|NAME",
              help="A world YAML file (docs/worlds.md) or a shipped world's name.")
@click.option("--events", type=click.IntRange(min=0), default=1000, show_default=True, help="How many events.")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same log.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The policy repository whose decisions the agents get [default: .].")
@click.option("--ref", default=None, help="Decide with the policies of this commit [default: HEAD].")
@click.option("--gateway", default=None, metavar="URL",
              help="Ask a running gateway instead (POST URL/v1/decide); excludes --repo and --ref.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A file holding the gateway's bearer token.")
@click.option("--start", default=None, metavar="TIME", help="First moment of the span, RFC 3339 [default: the world's].")
@click.option("--span", default=None, metavar="DURATION", help="How long the events spread over, e.g. 36h, 7d "
              "[default: the world's]; bursts stretch with it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("events.jsonl"),
              show_default=True, help="The event log to write (JSON Lines).")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the ground truth goes [default: beside the output, *.truth.jsonl].")
@click.option("--list-worlds", is_flag=True, help="List the shipped worlds and their faults, and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@engine_flag
def simulate(world_spec: str, events: int, seed: int, repo: Path | None, ref: str | None, gateway: str | None,
             token_file: Path | None, start: str | None, span: str | None, output: Path, truth: Path | None,
             list_worlds: bool, as_json: bool, quiet: bool) -> int:
    """Run simulated agents through the decision pipeline and write their events.

    Each agent's request is decided by the policies of a commit (--repo, --ref) or
    by a live gateway (--gateway). A request that is denied is `denied`; a routed
    one is attempted with the route's params; then the world's hidden faults
    decide whether it crashes, deadlocks, times out or fails. The log has one
    Event per line; the sidecar *.truth.jsonl says which fault (or noise) caused
    each failure and is for evaluation only.
    """
    from policyctl import simulate as sim

    if list_worlds:
        _list_worlds()
        return 0
    if gateway and (repo is not None or ref is not None):
        raise UsageError("--gateway excludes --repo and --ref: the gateway decides with its own revision")
    start_ms, span_s = _time_options(start, span)
    world = sim.load_world(world_spec)
    decider = _decider(gateway, token_file, repo or Path("."), ref)
    try:
        with _progress(events, quiet or as_json) as progress:
            summary = sim.run_to_files(world, decider, events=events, seed=seed, output=output, truth=truth,
                                       start_ms=start_ms, span=span_s, progress=progress)
    finally:
        decider.close()
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2) + "\n")
    elif not quiet:
        click.echo(summary.render())
    return 0


def _time_options(start: str | None, span: str | None) -> tuple[int | None, float | None]:
    from policyctl.simulate import parse_duration, parse_time

    start_ms = span_s = None
    if start is not None:
        try:
            start_ms = int(parse_time(start).timestamp() * 1000)
        except ValueError as exc:
            raise UsageError(f"--start {start!r} is not an RFC 3339 time such as 2026-03-30T00:00:00Z ({exc})") from exc
    if span is not None:
        try:
            span_s = parse_duration(span)
        except ValueError as exc:
            raise UsageError(f"--span: {exc}") from exc
        if span_s <= 0:
            raise UsageError("--span must be longer than 0")
    return start_ms, span_s


def _decider(gateway: str | None, token_file: Path | None, repo: Path, ref: str | None) -> Any:
    from policyctl.simulate import GatewayDecider, PipelineDecider

    if gateway:
        token = token_file.read_text("utf-8").strip() if token_file else None
        return GatewayDecider(gateway, token=token)
    from policyctl.decide import build_revision
    from policyctl.repo import snapshot

    snap = snapshot(repo, ref or "HEAD")
    revision = build_revision(snap, verify=False)
    return PipelineDecider(revision.pipeline, label=f"{repo} @ {ref or 'HEAD'}")


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    if quiet or not sys.stderr.isatty() or total == 0:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("simulating", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("events", total=total)
        yield lambda done: bar.update(task, completed=done)


def _list_worlds() -> None:
    from policyctl.simulate import describe_fault, load_world, shipped_worlds

    for name in shipped_worlds():
        world = load_world(name)
        click.echo(f"{name}: {len(world.agents)} agents, {len(world.traffic)} kinds of traffic, "
                   f"{len(world.faults)} faults")
        for fault in world.faults:
            avoided = f" (avoided by {', '.join(sorted(fault.avoided_by))})" if fault.avoided_by else ""
            click.echo(f"  {fault.name}: {fault.status} p={fault.probability:g} when {describe_fault(fault)}{avoided}")
