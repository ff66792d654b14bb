"""`policyctl draft`: a verified Rego rule and regression fixtures for each failure cluster."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from policyctl.cli.common import engine_flag, format_options, normalized_logs, repo_option


@click.command()
@repo_option
@click.option("--clusters", "clusters_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="clusters.json written by `policyctl cluster`.")
@click.option("--logs", "logs", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The exported logs the clusters came from; repeat for more.")
@click.option("--cluster", "only", multiple=True, help="Draft only this fingerprint; repeat for more.")
@click.option("--drafter", type=click.Choice(["induce", "anthropic"]), default="induce", show_default=True,
              help="induce: offline, deterministic; anthropic: Claude (ANTHROPIC_API_KEY).")
@click.option("--model", envvar="POLICYCTL_ANTHROPIC_MODEL", default=None,
              help="Claude model for --drafter anthropic [env: POLICYCTL_ANTHROPIC_MODEL].")
@click.option("--base", default="HEAD", show_default=True, help="The policy revision the drafts are verified against.")
@click.option("--write", is_flag=True, help="Write verified drafts into the repository's working tree.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write verified drafts, draft.json and DRAFTS.md under this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print draft.json.")
@format_options
@engine_flag
def draft(repo: Path, clusters_file: Path, logs: tuple[Path, ...], only: tuple[str, ...], drafter: str,
          model: str | None, base: str, write: bool, out_dir: Path | None, as_json: bool, fmt: str,
          maps: tuple[str, ...], mapping_file: Path | None) -> int:
    """Draft a Rego rule module and fixtures for each systemic cluster, and verify it.

    A draft is kept only when it compiles with the policy set at --base, every
    fixture passes, it prevents at least 95% of the cluster's held-out failures
    (the latest 20% by time), and it changes at most 0.5% of successful traffic.
    Rejected drafts are reported with their reasons and never written. Exit 1
    when no draft was verified.
    """
    from policyctl.draft import run_drafts, write_drafts
    from policyctl.draft.report import run_markdown, table_rows
    from policyctl.errors import InputError
    from policyctl.model.cluster import ClusterReport
    from policyctl.repo import snapshot

    try:
        raw = json.loads(clusters_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{clusters_file}: cannot read clusters ({exc})") from exc
    clusters = ClusterReport.from_dict(raw, where=str(clusters_file))
    impl: Any = drafter
    if drafter == "anthropic":
        from policyctl.draft.llm import AnthropicDrafter

        impl = AnthropicDrafter(model=model)
    with tempfile.TemporaryDirectory(prefix="policyctl-logs-") as tmp:
        paths = normalized_logs(logs, Path(tmp), fmt=fmt, maps=maps, mapping_file=mapping_file)
        run = run_drafts(clusters, paths, snapshot(repo, base), drafter=impl, only=list(only) or None,
                         progress=(lambda fp: click.echo(f"drafting {fp} …", err=True)) if sys.stderr.isatty()
                         else None)
    doc = run.to_dict()
    if write:
        for path in write_drafts(run.verified, repo):
            click.echo(f"wrote {path}", err=True)
    if out_dir:
        write_drafts(run.verified, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "draft.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (out_dir / "DRAFTS.md").write_text(run_markdown(run))
        click.echo(f"wrote {out_dir}/draft.json and {out_dir}/DRAFTS.md", err=True)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{len(run.verified)} verified drafts")
        for col in ("rule", "remedy", "verified", "held-out prevented", "collateral", "why not"):
            table.add_column(col)
        for row in table_rows(run):
            table.add_row(*[str(c) for c in row])
        Console(width=140).print(table)
        for d in run.drafts:
            if d.verified:
                click.echo(f"  {d.name}: {' or '.join(d.conditions_in_words())} -> {d.remedy.action} {d.remedy.params or ''}")
    return 0 if run.verified else 1
