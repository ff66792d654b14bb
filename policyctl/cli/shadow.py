"""`policyctl shadow`: replay history through a base and a candidate revision."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from policyctl.cli.common import (
    engine_flag,
    load_snapshot,
    log_format_options,
    normalized_logs,
    repo_option,
)
from policyctl.repo import Snapshot


@click.command()
@repo_option
@click.option("--base", default="main", show_default=True, help="The revision the candidate is compared with.")
@click.option("--candidate", default=None, help="The revision under test [default: HEAD].")
@click.option("--worktree", is_flag=True, help="Use the uncommitted working tree as the candidate.")
@click.option("--logs", "logs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Exported event log (JSONL) to replay; repeat for more. Without it: the sources "
                   "named in policyctl.toml and the bots' evidence samples (shadow_evidence/).")
@click.option("--no-history", is_flag=True, help="Without --logs, replay the fixtures only.")
@log_format_options
@click.option("--no-fixtures", is_flag=True, help="Replay only the logs, not the candidate's fixtures.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown", "junit"]), default="table",
              show_default=True)
@click.option("--max-collateral", "max_collateral", type=click.FloatRange(0, 100), default=None,
              help="Percent of logged ok events whose decision may change before the replay fails "
                   "[default: budgets.max_collateral_pct of the candidate's policyctl.toml, else 0.5].")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Worker processes [default: CPUs].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
@click.option("--differential", is_flag=True,
              help="Also evaluate the candidate on both engines for every replayed input; any disagreement "
                   "is listed (with its input) and fails the replay.")
@engine_flag
def shadow(repo: Path, base: str, candidate: str | None, worktree: bool, logs: tuple[Path, ...], no_history: bool,
           log_fmt: str, maps: tuple[str, ...], mapping_file: Path | None,
           no_fixtures: bool, fmt: str, max_collateral: float | None, jobs: int | None, output: Path | None,
           differential: bool) -> int:
    """Replay fixtures and logged events through BASE and CANDIDATE.

    Both revisions go through the same decision pipeline as production. For each
    record: unchanged or changed; for logged failures, prevented or still exposed;
    for logged successes, collateral when the decision changes. Prints the
    transition matrix per rule and per fixture file and the worst examples.

    A success that changes inside the failure region a drafted rule declares
    (METADATA custom.region) is counted as an in-region change, not collateral:
    the same definition the bot's verification and pull request bodies use.

    Exit 0 when every fixture passes and collateral is within the budget, 1
    otherwise, 2 for usage errors.
    """
    import tempfile

    from policyctl.errors import RepoError
    from policyctl.ingest import ReadSummary
    from policyctl.repo import has_commits, snapshot
    from policyctl.shadow import render, replay
    from policyctl.shadow.replay import default_jobs
    from policyctl.shadow.sources import resolve_history

    cand_snap = load_snapshot(repo, candidate, worktree)
    try:
        base_snap = snapshot(repo, base)
    except RepoError:
        if not (worktree and base == "HEAD" and not has_commits(repo)):
            raise
        # a repository before its first commit (a pre-commit hook right after `policyctl init`):
        # there is no base to compare with, so the working tree is replayed against itself
        click.echo("no commit yet: replaying the fixtures through the working tree only", err=True)
        base_snap = cand_snap
    config = cand_snap.config
    budget = max_collateral if max_collateral is not None else config.budgets.max_collateral_pct
    with tempfile.TemporaryDirectory(prefix="policyctl-history-") as tmp:
        read = ReadSummary()
        paths = normalized_logs(logs, Path(tmp) / "logs", fmt=log_fmt, maps=maps, mapping_file=mapping_file,
                                summary=read)
        if not paths and not no_history and cand_snap is not base_snap:
            history = resolve_history(repo, None if worktree else candidate or "HEAD", config, into=Path(tmp),
                                      evidence_refs=[base], summary=read)
            paths = history.paths
            if config.logs.sources:
                click.echo(f"policyctl.toml logs.sources: {read.line()}", err=True)
            if paths:
                click.echo(f"replaying {len(paths)} log file(s) from policyctl.toml and shadow_evidence/", err=True)
        jobs = jobs or (default_jobs() if paths else 1)
        progress, finish = _progress(tuple(paths))
        try:
            report = replay(base_snap, cand_snap, paths, fixtures=not no_fixtures, jobs=jobs,
                            max_collateral_pct=budget, progress=progress)
        finally:
            finish()
        # what the readers could not use is part of the replay's report, by file:line
        report.add_unread(sum(read.skipped.values()), read.problems)
        shown = {p: str(o) for p, o in zip(paths, logs, strict=True)} if logs and len(paths) == len(logs) else {}
        disagreed = _differential(cand_snap, paths, shown, fixtures=not no_fixtures) if differential else 0
    text = render(report, fmt)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        click.echo(f"{report.verdict}; report written to {output}", err=True)
    else:
        sys.stdout.write(text)
    return max(report.exit_code, 1 if disagreed else 0)


def _differential(cand_snap: Snapshot, paths: list[Path], shown: dict[Path, str], fixtures: bool) -> int:
    """The candidate on both engines over the same inputs; each disagreement on stderr. Their count."""
    import itertools

    from policyctl.engine.differential import compare, fixture_inputs, log_inputs

    inputs = itertools.chain(fixture_inputs(cand_snap) if fixtures else (), log_inputs(paths, shown))
    found = compare(cand_snap, inputs)
    click.echo(found.summary(), err=True)
    for d in found.disagreements:
        click.echo(f"  {d.line()}", err=True)
    return found.total_disagreements


def _progress(logs: tuple[Path, ...]) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not logs or not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = sum(p.stat().st_size for p in logs if p.is_file())
    bar = Progress("replaying", BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("replay", total=total)
    bar.start()
    return (lambda n: bar.advance(task, n)), bar.stop
