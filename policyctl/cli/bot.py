"""`policyctl bot run`: one branch and pull request per systemic failure, deduplicated."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

from policyctl.cli.common import (
    embedder_option,
    emit_json,
    engine_flag,
    format_options,
    normalized_logs,
    repo_option,
)


@click.group()
def bot() -> None:
    """The bot that turns exported logs into pull requests."""


@bot.command("run")
@repo_option
@click.option("--logs", "logs", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Exported event log (JSONL); repeat for more.")
@click.option("--provider", type=click.Choice(["local", "github"]), default="local", show_default=True,
              help="local: branches and pull request records in the repository (review with `policyctl pr`); "
                   "github: GitHub's REST API (GITHUB_TOKEN) and a git remote.")
@click.option("--base", default="main", show_default=True, help="The branch pull requests target.")
@click.option("--max-prs", type=click.IntRange(0), default=None,
              help="At most this many bot pull requests open at once; larger clusters go first.")
@click.option("--dry-run", is_flag=True, help="Print what would be opened or updated; change nothing.")
@embedder_option
@click.option("--drafter", type=click.Choice(["induce", "anthropic"]), default="induce", show_default=True)
@click.option("--author", default=None, metavar="'NAME <EMAIL>'",
              help="The bot's git identity; commits by anyone else on its branches are never overwritten "
                   "[default: policyctl-bot <bot@policyctl.local>].")
@click.option("--label", "labels", multiple=True, default=("policyctl",), show_default=True,
              help="Label for new pull requests; repeat for more.")
@click.option("--remote", default="origin", show_default=True, metavar="NAME|URL",
              help="github: the git remote the branches are pushed to.")
@click.option("--github-repo", default=None, metavar="OWNER/NAME",
              help="github: the repository [default: $GITHUB_REPOSITORY]. API: $GITHUB_API_URL.")
@click.option("--min-size", type=click.IntRange(1), default=5, show_default=True,
              help="Fewest failures a systemic cluster has.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes for the shadow replay [default: 1; the CPUs for logs over 32 MB].")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the clusters it found here: clusters.json and an HTML report.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@format_options
@engine_flag
def run(repo: Path, logs: tuple[Path, ...], provider: str, base: str, max_prs: int | None, dry_run: bool,
        embedder: str, drafter: str, author: str | None, labels: tuple[str, ...], remote: str,
        github_repo: str | None, min_size: int, jobs: int | None, report: Path | None, as_json: bool,
        quiet: bool, fmt: str, maps: tuple[str, ...], mapping_file: Path | None) -> int:
    """Cluster LOGS and keep one pull request per systemic failure cluster.

    Skips clusters the base branch already prevents (95% of their failures decided
    differently at --base) and clusters whose pull request was closed without merging
    (until they double). Drafts and verifies a rule for the rest; each verified draft
    goes on branch policyctl/<fingerprint> as one commit on --base by --author, with
    one pull request. Re-running with the same logs pushes and edits nothing; newer
    logs update the pull request; a branch someone else pushed to is left alone.
    """
    from policyctl.bot import DEFAULT_AUTHOR, ForgeConfig, make_forge, run_bot
    from policyctl.shadow.replay import default_jobs

    forge = make_forge(provider, repo, ForgeConfig(remote=remote, github_repo=github_repo))
    started = time.monotonic()

    def say(msg: str) -> None:  # one line per stage on stderr, with the time since the start
        click.echo(f"[{time.monotonic() - started:6.1f}s] {msg}", err=True)

    with tempfile.TemporaryDirectory(prefix="policyctl-logs-") as tmp:
        paths = normalized_logs(logs, Path(tmp), fmt=fmt, maps=maps, mapping_file=mapping_file)
        result = run_bot(repo, paths, forge=forge, base=base, author=author or DEFAULT_AUTHOR, max_prs=max_prs,
                         dry_run=dry_run, embedder=embedder, drafter=drafter, labels=labels,
                         jobs=jobs or _jobs(logs, default_jobs()), min_size=min_size,
                         progress=None if quiet or as_json else say, report_dir=report)
    if as_json:
        emit_json(result.to_dict())
    else:
        sys.stdout.write(result.render())
    return 0


def _jobs(logs: tuple[Path, ...], cpus: int) -> int:
    """Worker processes pay off on big logs only: each one starts and compiles both revisions."""
    size = sum(p.stat().st_size for p in logs if p.is_file())
    return cpus if size > 32 * 1024 * 1024 else 1
