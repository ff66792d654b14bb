"""`policyctl init`: set up a policy repository in any git repository."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import emit_json


@click.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--list", "list_only", is_flag=True, help="Print the files init would write, and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def init(path: Path, list_only: bool, as_json: bool) -> int:
    """Make the git repository at PATH a policy repository.

    Writes policies/main.rego (the decision entrypoint) and an example rule with its
    fixtures, overrides/ and shadow_fixtures/, a policyctl.toml with every default
    (log sources, budgets, the action vocabulary: docs/config.md), a
    .pre-commit-config.yaml using policyctl's hooks, and .github/workflows/ci.yml and
    bot.yml (actions pinned by commit, least permissions). It never overwrites: when
    any of these files exists it lists them and writes nothing (exit 1). Afterwards
    `policyctl check` and `pytest shadow_fixtures` pass on the result.
    """
    from policyctl.scaffold import init_repository

    result = init_repository(path, dry_run=list_only)
    if as_json:
        emit_json(result.to_dict())
        return 1 if list_only and result.existing else 0
    verb = "would write" if list_only else "wrote"
    for name in result.written:
        click.echo(f"{verb} {name}")
    for name in result.existing:
        click.echo(f"exists {name}")
    if not list_only:
        click.echo(f"\n{result.root} is a policy repository. Next: edit policyctl.toml (which fields agents may be "
                   "routed over), `policyctl check`, `pytest shadow_fixtures`, commit, then "
                   "`policyctl gateway serve --repo .`.")
    return 1 if list_only and result.existing else 0
