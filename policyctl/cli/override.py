"""`policyctl override`: scaffold an emergency override script, and try one in the real sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import click

from policyctl.bounds import MAX_PRIORITY, MIN_PRIORITY
from policyctl.cli.common import emit_json, repo_option

PRIORITY_RANGE = (MIN_PRIORITY, MAX_PRIORITY)  # from policyctl.bounds: `--help` does not import the model


@click.group()
def override() -> None:
    """Emergency override scripts (overrides/<name>.py), sandboxed.

    An override decides ahead of the policies for the inputs its OVERRIDE["match"]
    selects, until OVERRIDE["expires"]. See docs/overrides.md.
    """


@override.command("new")
@repo_option
@click.argument("name")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 30),
              help="Days until the override expires.")
@click.option("--priority", default=100, show_default=True, type=click.IntRange(*PRIORITY_RANGE),
              help="Higher runs first when several overrides match.")
@click.option("--force", is_flag=True, help="Overwrite an existing script and fixture file.")
@click.option("--json", "as_json", is_flag=True, help="Print the created paths as JSON.")
def new(repo: Path, name: str, days: int, priority: int, force: bool, as_json: bool) -> int:
    """Scaffold overrides/NAME.py and shadow_fixtures/overrides/NAME.jsonl.

    The scaffold expires DAYS days from now and selects no real traffic until you edit its
    match; `policyctl check` refuses it until its TODO docstring says why it exists.
    """
    from policyctl.decide import utcnow
    from policyctl.sandbox.authoring import scaffold_override

    paths = scaffold_override(repo, name, now=utcnow(), days=days, priority=priority, force=force)
    shown = [_relative(p, repo) for p in paths]
    if as_json:
        emit_json({"script": shown[0], "fixtures": shown[1]})
        return 0
    click.echo(f"created {shown[0]}\ncreated {shown[1]}")
    click.echo("next: edit the docstring, OVERRIDE['match'] and decide(); put real cases in the fixture "
               f"file; then `policyctl override test {shown[0]} --input INPUT.json` and `policyctl check`.")
    return 0


@override.command("test")
@repo_option
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "input_file", required=True, type=click.File("rb"),
              help="A JSON input file, or - for standard input. A bare input, {\"input\": …} or an Event line.")
@click.option("--timeout-ms", type=click.IntRange(1, 2000), default=None,
              help="Deadline for this run [default: the script's timeout_ms, else 250; at most 2000].")
@click.option("--force", is_flag=True, help="Run decide() even when OVERRIDE['match'] does not select the input.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole trial as JSON.")
def test(repo: Path, script: Path, input_file: IO[bytes], timeout_ms: int | None, force: bool,
         as_json: bool) -> int:
    """Run one override SCRIPT on one input through the real sandbox.

    Checks the script like `policyctl check` and says whether it has expired. When its match
    does not select the input it says so and exits 1 without running it, as the pipeline
    would skip it (--force runs it anyway). Otherwise prints its decision (or None: no
    opinion) or the sandbox error with file:line. Exits 1 when the script is invalid or fails.
    """
    from policyctl.decide import parse_input_document, utcnow
    from policyctl.errors import InputError
    from policyctl.sandbox.authoring import try_override

    path = script if script.exists() or script.is_absolute() else repo / script
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{script}: cannot be read ({exc})") from exc
    name = "<stdin>" if input_file.name in ("-", "<stdin>") else str(input_file.name)
    input = parse_input_document(input_file.read(), where=name)
    file, now = _relative(path, repo), utcnow()
    trial = try_override(source, input, file=file, now=now, timeout_ms=timeout_ms, run_unselected=force)
    if as_json:
        emit_json(trial.to_dict())
        return 0 if trial.ok and trial.ran else 1
    for problem in trial.problems:
        click.echo(f"{problem.where}: error: {problem.code}: {problem.message}", err=True)
    if trial.problems:
        click.echo(f"FAILED: {trial.file} is not a valid override", err=True)
        return 1
    if trial.selects is False and not trial.ran:
        click.echo(f"Error: {trial.file}:{trial.header.line if trial.header else 1}: OVERRIDE['match'] does not "
                   "select this input, so the pipeline would skip this override and decide() was not run; "
                   "pass --force to run it anyway", err=True)
        return 1
    if trial.selects is False:
        click.echo("note: OVERRIDE['match'] does not select this input; the pipeline would skip this override")
    if trial.expired:
        click.echo("note: this override has expired; the pipeline would skip it (extend OVERRIDE['expires'])")
    for line in trial.printed.splitlines():
        click.echo(f"  print: {line}")
    if trial.error is not None:
        click.echo(f"Error: {trial.error.message} ({trial.error.code})", err=True)
        return 1
    if trial.decision is None:
        click.echo(f"None: no opinion; the policies decide  ({trial.elapsed_ms:.1f} ms)")
        return 0
    import json

    params = json.dumps(trial.decision.get("params") or {}, sort_keys=True)
    click.echo(f"{trial.decision['action']}  params: {params}  ({trial.elapsed_ms:.1f} ms)")
    return 0


def _relative(path: Path, repo: Path) -> str:
    """`overrides/x.py` when the path is inside the repository, so errors read like `policyctl check`."""
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
