"""`policyctl lint`: this project's rules for Rego modules (docs/lint.md)."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import emit_json, load_snapshot, repo_option


@click.command()
@repo_option
@click.option("--ref", default=None, help="Lint this commit instead of the working tree.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--strict", is_flag=True, help="Warnings fail the run too.")
@click.option("--disable", multiple=True, metavar="CODE",
              help="Skip a rule, by code or name (L003, untyped-comparison); repeat or separate with commas.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def lint(repo: Path, ref: str | None, as_json: bool, strict: bool, disable: tuple[str, ...],
         paths: tuple[Path, ...]) -> int:
    """Check every Rego module against the project's lint rules (L001-L006).

    Reads the working tree by default, or a commit with --ref. Lists every finding as
    file:line:col: severity: code: message and exits 1 when there is an error (with
    --strict, a warning too). Given PATHS (as pre-commit passes them), only those files'
    findings are reported.
    """
    from policyctl.lint import run_lint

    report = run_lint(load_snapshot(repo, ref, worktree=ref is None), disable=disable)
    if paths:
        wanted = {p.as_posix().removeprefix("./") for p in paths}
        report.problems = [p for p in report.problems if p.file in wanted]
    failed = bool(report.errors) or (strict and bool(report.warnings))
    if as_json:
        emit_json(report.to_dict())
        return 1 if failed else 0
    for problem in report.problems:
        click.echo(f"{problem.where}: {problem.severity}: {problem.code}: {problem.message}", err=failed)
    where = f"at {report.revision[:12]}" if report.revision else "in the working tree"
    summary = (f"{report.modules} modules {where}: {len(report.errors)} errors, "
               f"{len(report.warnings)} warnings")
    click.echo(("FAILED: " if failed else "ok: ") + summary, err=failed)
    return 1 if failed else 0
