"""`policyctl pr`: review the local forge's pull requests: list, show, merge (a real git merge), close."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from policyctl.cli.common import emit_json, repo_option

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _forge(repo: Path) -> Any:
    from policyctl.bot.local import LocalForge

    return LocalForge(repo)


@click.group()
def pr() -> None:
    """Pull requests of the local forge (`policyctl bot run --provider local`)."""


@pr.command("list")
@repo_option
@click.option("--state", type=click.Choice(["open", "closed", "merged", "all"]), default="open", show_default=True)
@json_option
def list_(repo: Path, state: str, as_json: bool) -> int:
    """List pull requests."""
    forge = _forge(repo)
    records = forge.by_state(state)
    if as_json:
        emit_json([{k: v for k, v in r.items() if k not in ("body", "comments")} | {"status": forge.status(r)}
                   for r in records])
        return 0
    if not records:
        click.echo(f"no {state if state != 'all' else ''} pull requests".replace("  ", " "))
        return 0
    for r in records:
        labels = f"  [{', '.join(r.get('labels') or [])}]" if r.get("labels") else ""
        click.echo(f"#{r['number']:<4} {forge.status(r):<7} {r['head']} -> {r['base']}  {r['title']}{labels}")
    return 0


@pr.command("show")
@repo_option
@click.argument("number", type=int)
@json_option
def show(repo: Path, number: int, as_json: bool) -> int:
    """Print a pull request: its state, branch and commits, then its body and comments."""
    from policyctl.repo import branch_commits, branch_tip

    forge = _forge(repo)
    record = forge.record(number)
    if as_json:
        emit_json(record | {"status": forge.status(record)})
        return 0
    lines = [f"#{record['number']} {record['title']}",
             f"{forge.status(record)}: {record['head']} -> {record['base']}, opened {record.get('created_at', '?')}"]
    if record.get("merged"):
        lines.append(f"merged as {record.get('merge_commit', '?')[:12]} by {record.get('merged_by', '?')}")
    tip = branch_tip(repo, record["head"])
    if tip and record.get("state") == "open":
        for c in branch_commits(repo, record["base"], tip):
            lines.append(f"  {c.sha[:12]} {c.summary} ({c.author_name} <{c.author_email}>)")
    lines += ["", record.get("body", "").rstrip()]
    for c in record.get("comments") or []:
        lines += ["", f"--- comment {c.get('created_at', '')}", str(c.get("body", "")).rstrip()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


@pr.command("merge")
@repo_option
@click.argument("number", type=int)
@click.option("--author", default=None, metavar="'NAME <EMAIL>'",
              help="Who merges [default: git's user.name and user.email].")
@json_option
def merge(repo: Path, number: int, author: str | None, as_json: bool) -> int:
    """Merge a pull request: a merge commit of its branch on its base branch, which the gateway then serves."""
    from policyctl.bot import parse_identity

    record = _forge(repo).merge(number, author=parse_identity(author) if author else None)
    if as_json:
        emit_json(record)
    else:
        click.echo(f"merged #{number} ({record['head']}) into {record['base']}: {record['merge_commit'][:12]}")
    return 0


@pr.command("close")
@repo_option
@click.argument("number", type=int)
@json_option
def close(repo: Path, number: int, as_json: bool) -> int:
    """Close a pull request without merging: the bot ignores its cluster until it doubles."""
    record = _forge(repo).close(number)
    if as_json:
        emit_json(record)
        return 0
    ignored = record.get("ignored")
    extra = (f"; the bot ignores cluster {ignored['cluster']} until it reaches {ignored['until_size']} failures"
             if ignored else "")
    click.echo(f"closed #{number} without merging{extra}")
    return 0
