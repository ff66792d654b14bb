"""`policyctl cluster`: the systemic failures of exported logs, fingerprinted."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from policyctl.cli.common import embedder_option, format_options


@click.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@format_options
@embedder_option
@click.option("--min-size", type=click.IntRange(1), default=5, show_default=True,
              help="Fewest events a systemic cluster has; smaller groups are rare failures.")
@click.option("--all", "include_all", is_flag=True, help="Cluster every event, not only failures.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write clusters.json here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report: cluster sizes, a timeline per cluster, one-off failures.")
@click.option("--repo", "repo", type=click.Path(file_okay=False, path_type=Path),
              help="The policy repository: mark on each timeline when a rule answering the cluster "
                   "(METADATA custom.cluster) was merged. Without it, no marks.")
@click.option("--json", "as_json", is_flag=True, help="Print clusters.json to standard output.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed line instead of skipping it.")
def cluster(logs: tuple[Path, ...], fmt: str, maps: tuple[str, ...], mapping_file: Path | None, embedder: str,
            min_size: int, include_all: bool, output: Path | None, html_path: Path | None, repo: Path | None,
            as_json: bool, strict: bool) -> int:
    """Cluster the failures in LOGS into systemic failures a policy can answer.

    Reads any log format policyctl knows (see --format), streaming. Masks
    variables and mines templates, embeds each template once, clusters templates
    together with the traffic they fail on, finds deadlock cycles in waits_for,
    and gives each systemic cluster a fingerprint that stays the same when
    tomorrow's logs show the same failure. Malformed lines are counted and
    reported with file:line, never fatal unless --strict.
    """
    from policyctl.cluster import cluster_logs
    from policyctl.cluster.report import dumps, find_merges, render_html, render_table
    from policyctl.errors import UsageError
    from policyctl.ingest import ReadSummary, load_mapping

    if repo is not None and not html_path:
        raise UsageError("--repo marks rule merges on the HTML report's timelines: give --html too")
    merges = find_merges(repo) if repo is not None else {}  # a bad --repo fails before any log is read
    progress, finish = _progress(logs)
    summary = ReadSummary()
    try:
        doc, points = cluster_logs(list(logs), fmt=fmt, embedder=embedder, min_size=min_size,
                                   include_all=include_all, strict=strict, progress=progress,
                                   mapping=load_mapping(maps, mapping_file), summary=summary)
    finally:
        finish()
    click.echo(summary.line(), err=True)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(dumps(doc))
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(doc, points, merges))
    if as_json:
        sys.stdout.write(dumps(doc))
    else:
        sys.stdout.write(render_table(doc))
        for p in doc.warnings[:5]:
            click.echo(f"warning: {p['file']}:{p['line'] or ''}: {p['message']}", err=True)
        if output:
            click.echo(f"clusters written to {output}", err=True)
        if html_path:
            click.echo(f"HTML report written to {html_path}", err=True)
    return 0


def _progress(logs: tuple[Path, ...]) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = sum(p.stat().st_size for p in logs if p.is_file())
    bar = Progress("reading", BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("read", total=total)
    bar.start()
    return (lambda n: bar.advance(task, n)), bar.stop
