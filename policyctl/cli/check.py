"""`policyctl check`: compile and validate everything, list every problem."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import emit_json, engine_flag, load_snapshot, normalized_logs, repo_option
from policyctl.errors import Problem, UsageError
from policyctl.repo import Snapshot


@click.command()
@repo_option
@click.option("--ref", default=None, help="Check this commit instead of the working tree.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Warnings (such as expired overrides) fail the check too.")
@click.option("--differential", is_flag=True,
              help="Also evaluate every fixture (and --logs) on both engines; each disagreement is an error.")
@click.option("--logs", "logs", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --differential: event logs whose inputs are compared too (any format); repeatable.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@engine_flag
def check(repo: Path, ref: str | None, as_json: bool, strict: bool, differential: bool, logs: tuple[Path, ...],
          paths: tuple[Path, ...]) -> int:
    """Compile every policy and validate every fixture and override.

    Checks the working tree by default (where you edit), or a commit with --ref.
    Lists all problems as file:line:col: code: message, not just the first, and
    exits 1 when there is any error. Given PATHS (as pre-commit passes the files
    being committed), the whole set is still compiled, since modules interact, but
    only problems in those files, or in no single file, are reported.
    """
    from policyctl.decide.checks import run_check

    snap = load_snapshot(repo, ref, worktree=ref is None)
    report = run_check(snap)
    if logs and not differential:
        raise UsageError("--logs is for --differential")
    if differential and report.ok:
        report.problems.extend(_disagreements(snap, logs))
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
    summary = (f"{c.get('policies', 0)} policies, {c.get('tests', 0)} tests, {c.get('fixtures', 0)} fixtures, {c.get('overrides', 0)} overrides "
               f"{where}: {len(report.errors)} errors, {len(report.warnings)} warnings")
    click.echo(("FAILED: " if failed else "ok: ") + summary, err=bool(failed))
    return 1 if failed else 0


def _disagreements(snap: Snapshot, logs: tuple[Path, ...]) -> list[Problem]:
    """Each input on which the two engines decide differently, as an error at its fixture or log line."""
    import itertools
    import tempfile

    from policyctl.engine.differential import compare, fixture_inputs, log_inputs

    with tempfile.TemporaryDirectory(prefix="policyctl-differential-") as tmp:
        paths = normalized_logs(logs, Path(tmp)) if logs else []
        shown = dict(zip(paths, (str(p) for p in logs), strict=False)) if len(paths) == len(logs) else None
        report = compare(snap, itertools.chain(fixture_inputs(snap), log_inputs(paths, shown)))
    click.echo(report.summary(), err=True)
    out = []
    for d in report.disagreements:
        file, _, line = d.where.rpartition(":")
        out.append(Problem(file, d.message(), code="engine_disagreement",
                           line=int(line) if line.isdigit() else None))
    if report.total_disagreements > len(report.disagreements):
        out.append(Problem("<policy set>", f"{report.total_disagreements - len(report.disagreements)} more "
                           "disagreements not listed", code="engine_disagreement"))
    return out
