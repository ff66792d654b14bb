"""`policyctl demo`: the whole loop on a generated swarm."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from policyctl.cli.common import embedder_option, engine_flag


@click.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A new directory for the demo's repository, logs and reports [default: a fresh temporary one].")
@click.option("--events", type=click.IntRange(500, 1_000_000), default=10_000, show_default=True,
              help="Interactions simulated per day.")
@embedder_option
@click.option("--keep-running", is_flag=True, help="Leave the gateway running at the end.")
@engine_flag
def demo(out: Path | None, events: int, embedder: str, keep_running: bool) -> int:
    """Run the whole loop on a generated swarm.

    In a new directory: a policy repository from this project's policies, the
    gateway serving it, a day of the demo world through the gateway, the bot's
    pull requests (local forge), their merge, the gateway's hot swap, the next
    day through the merged policies, and per fault the failure rate before and
    after and the successful traffic newly denied.
    """
    from policyctl.demo import run_demo

    target = out or Path(tempfile.mkdtemp(prefix="policyctl-demo-"))
    result = run_demo(target, events=events, embedder=embedder, keep_running=keep_running, say=click.echo)
    return 0 if result["reduction_pct"] >= 90 else 1
