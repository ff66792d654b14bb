"""`policyctl bundle build`: an OPA bundle of a commit's policy set."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import repo_option


@click.group()
def bundle() -> None:
    """OPA bundles, for fleets of OPA servers serving the same policy set."""


@bundle.command("build")
@repo_option
@click.option("--ref", default="HEAD", show_default=True, help="The commit to bundle.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle (.tar.gz).")
def build(repo: Path, ref: str, output: Path) -> int:
    """Write an OPA bundle: .manifest (revision = commit id, roots [agentgov]), the .rego files, data.json.

    The policy set is compiled first: a commit that does not compile gets no bundle.
    """
    from policyctl.engine.bundle import write_bundle
    from policyctl.repo import snapshot

    manifest = write_bundle(snapshot(repo, ref), output)
    click.echo(f"wrote {output} (revision {manifest['revision']}, {manifest['files']} files)")
    return 0
