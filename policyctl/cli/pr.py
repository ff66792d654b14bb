"""`policyctl pr`: review the local forge's pull requests: list, show, diff, merge (gated by a replay), close."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from policyctl.cli.common import emit_json, engine_flag, repo_option

if TYPE_CHECKING:
    from policyctl.bot.forge import CommitStatus
    from policyctl.bot.local import LocalForge

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _forge(repo: Path) -> LocalForge:
    from policyctl.bot.local import LocalForge

    return LocalForge(repo)


def _head_statuses(forge: LocalForge, record: dict[str, Any]) -> list[CommitStatus]:
    """The latest status per context on an open pull request's head commit."""
    from policyctl.bot.forge import latest_statuses
    from policyctl.repo import branch_tip

    tip = branch_tip(forge.repo, str(record["head"])) if record.get("state") == "open" else None
    return latest_statuses(forge.statuses(tip)) if tip else []


@click.group()
def pr() -> None:
    """Pull requests of the local forge (`policyctl bot run --provider local`).

    Records live under <git dir>/policyctl/pulls/; commit statuses (the bot's replay of
    each draft, context policyctl/shadow) under <git dir>/policyctl/statuses/.
    """


@pr.command("list")
@repo_option
@click.option("--state", type=click.Choice(["open", "closed", "merged", "all"]), default="open", show_default=True)
@json_option
def list_(repo: Path, state: str, as_json: bool) -> int:
    """List pull requests and the checks on their head commits."""
    from policyctl.bot.forge import combined_state

    forge = _forge(repo)
    records = forge.by_state(state)
    if as_json:
        emit_json([{k: v for k, v in r.items() if k not in ("body", "comments")}
                   | {"status": forge.status(r), "checks": [st.to_dict() for st in _head_statuses(forge, r)]}
                   for r in records])
        return 0
    if not records:
        click.echo(f"no {state if state != 'all' else ''} pull requests".replace("  ", " "))
        return 0
    for r in records:
        labels = f"  [{', '.join(r.get('labels') or [])}]" if r.get("labels") else ""
        check = combined_state(_head_statuses(forge, r)) or "-"
        click.echo(f"#{r['number']:<4} {forge.status(r):<7} {check:<8} {r['head']} -> {r['base']}  "
                   f"{r['title']}{labels}")
    return 0


@pr.command("show")
@repo_option
@click.argument("number", type=int)
@click.option("--raw", is_flag=True, help="Print the body's Markdown as is, even on a terminal.")
@json_option
def show(repo: Path, number: int, raw: bool, as_json: bool) -> int:
    """Print a pull request: state, commits, checks, body, comments.

    On a terminal the body and comments are rendered from Markdown; with --raw, or when
    the output is not a terminal (a pipe, a file), they are printed as written.
    """
    from policyctl.repo import branch_commits, branch_tip

    forge = _forge(repo)
    record = forge.record(number)
    statuses = _head_statuses(forge, record)
    if as_json:
        emit_json(record | {"status": forge.status(record), "checks": [st.to_dict() for st in statuses]})
        return 0
    lines = [f"#{record['number']} {record['title']}",
             f"{forge.status(record)}: {record['head']} -> {record['base']}, opened {record.get('created_at', '?')}"]
    if record.get("merged"):
        lines.append(f"merged as {record.get('merge_commit', '?')[:12]} by {record.get('merged_by', '?')}")
        gate = record.get("merge_check") or {}
        if gate:
            forced = f" (forced: {gate.get('reason')})" if gate.get("forced") else ""
            lines.append(f"merge gate: {gate.get('verdict')}{forced}")
    if record.get("close_reason"):
        lines.append(f"closed without merging: {record['close_reason']}")
    tip = branch_tip(repo, record["head"])
    if tip and record.get("state") == "open":
        for c in branch_commits(repo, record["base"], tip):
            lines.append(f"  {c.sha[:12]} {c.summary} ({c.author_name} <{c.author_email}>)")
    for st in statuses:
        lines.append(f"check {st.context}: {st.state}" + (f" - {st.description}" if st.description else "")
                     + (f" ({st.created_at})" if st.created_at else ""))
    parts = [str(record.get("body", "")).rstrip()]
    for c in record.get("comments") or []:
        parts.append(f"--- comment {c.get('created_at', '')}\n\n{str(c.get('body', '')).rstrip()}")
    if raw or not sys.stdout.isatty():
        sys.stdout.write("\n".join(lines) + "\n\n" + "\n\n".join(parts) + "\n")
        return 0
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.rule import Rule

    console = Console()
    console.print("\n".join(lines), markup=False, highlight=False)
    console.print(Markdown(parts[0]))
    for part in parts[1:]:
        heading, _, body = part.partition("\n\n")
        console.print(Rule(heading.strip("- ")))
        console.print(Markdown(body))
    return 0


@pr.command("diff")
@repo_option
@click.argument("number", type=int)
@click.option("--stat", is_flag=True, help="Only the files changed and how much (git diff --stat).")
def diff(repo: Path, number: int, stat: bool) -> int:
    """Print what merging a pull request changes on its base.

    For an open pull request: the base branch's tip against the merge the gate verifies
    (the branch's changes, as they land on today's base). For a merged one: what its
    merge commit changed. Colored when the output is a terminal.
    """
    from policyctl.bot.gate import diff_pull_request

    sys.stdout.write(diff_pull_request(repo, number, stat=stat, color=sys.stdout.isatty(), forge=_forge(repo)))
    return 0


@pr.command("merge")
@repo_option
@click.argument("number", type=int)
@click.option("--author", default=None, metavar="'NAME <EMAIL>'",
              help="Who merges [default: git's user.name and user.email].")
@click.option("--force", is_flag=True, help="Merge even when the replay or the head's status fails (needs --reason).")
@click.option("--reason", default="", metavar="TEXT", help="Why --force: recorded in the merge commit.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Replay worker processes [default: CPUs when there are logs].")
@json_option
@engine_flag
def merge(repo: Path, number: int, author: str | None, force: bool, reason: str, jobs: int | None,
          as_json: bool) -> int:
    """Replay a pull request at the current base, then merge it.

    The candidate is the base branch's tip merged with the pull request's branch (built
    without touching the working tree or any ref). It is replayed against the base tip
    with its fixtures, the log sources of its policyctl.toml and the evidence samples
    under shadow_evidence/, with the collateral budget of its policyctl.toml. A failing
    replay (a fixture fails, collateral over budget) or a failure status on the head
    commit refuses the merge (exit 1). On success the merge commit's message records the
    verdict and the figures, and the gateway, watching the base, serves the merge.

    When the base moved since the bot verified the draft, the gate says so and replays
    at the new base. It does not redraft: if the draft no longer holds, run the bot again
    (`policyctl bot run --logs …` updates the pull request on the new base).

    --force --reason TEXT merges despite a failing check and records both in the merge
    commit. A conflict, or a merge that would not build, is never merged.
    """
    from policyctl.bot import parse_identity
    from policyctl.bot.gate import merge_pull_request

    result = merge_pull_request(repo, number, author=parse_identity(author) if author else None, force=force,
                                reason=reason, jobs=jobs, forge=_forge(repo))
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo("\n".join(result.lines()))
    return result.exit_code


@pr.command("close")
@repo_option
@click.argument("number", type=int)
@click.option("--reason", default="", metavar="TEXT", help="Why: left as a comment and kept in the record.")
@json_option
def close(repo: Path, number: int, reason: str, as_json: bool) -> int:
    """Close without merging; the cluster is ignored until it doubles.

    --reason TEXT is left as a comment and kept in the record.
    """
    record = _forge(repo).close(number, reason=reason)
    if as_json:
        emit_json(record)
        return 0
    ignored = record.get("ignored")
    extra = (f"; the bot ignores cluster {ignored['cluster']} until it reaches {ignored['until_size']} failures"
             if ignored else "")
    why = f" ({record['close_reason']})" if record.get("close_reason") else ""
    click.echo(f"closed #{number} without merging{why}{extra}")
    return 0
