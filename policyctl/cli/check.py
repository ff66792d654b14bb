"""`policyctl check`: compile and validate everything, list every problem."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import emit_json, load_snapshot, repo_option


@click.command()
@repo_option
@click.option("--ref", default=None, help="Check this commit instead of the working tree.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Warnings (such as expired overrides) fail the check too.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def check(repo: Path, ref: str | None, as_json: bool, strict: bool, paths: tuple[Path, ...]) -> int:
    """Compile every policy and validate every fixture and override.

    Checks the working tree by default (where you edit), or a commit with --ref.
    Lists all problems as file:line:col: code: message, not just the first, and
    exits 1 when there is any error. Given PATHS (as pre-commit passes the files
    being committed), the whole set is still compiled, since modules interact, but
    only problems in those files, or in no single file, are reported.
    """
    from policyctl.decide.checks import run_check

    report = run_check(load_snapshot(repo, ref, worktree=ref is None))
    if paths:
        wanted = {p.as_posix().removeprefix("./") for p in paths}
        report.problems = [p for p in report.problems if p.file in wanted or p.file.startswith("<")]
    failed = not report.ok or (strict and bool(report.warnings))
    if as_json:
        emit_json(report.to_dict())
        return 1 if failed else 0
    for problem in report.problems:
        label = "warning" if problem.severity == "warning" else "error"
        click.echo(f"{problem.where}: {label}: {problem.code}: {problem.message}", err=failed)
    c = report.counts
    where = f"at {report.revision[:12]}" if report.revision else "in the working tree"
    summary = (f"{c.get('policies', 0)} policies, {c.get('fixtures', 0)} fixtures, {c.get('overrides', 0)} overrides "
               f"{where}: {len(report.errors)} errors, {len(report.warnings)} warnings")
    click.echo(("FAILED: " if failed else "ok: ") + summary, err=bool(failed))
    return 1 if failed else 0
