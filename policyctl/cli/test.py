"""`policyctl test`: run the Rego unit tests (`test_*` rules of `*_test.rego`), as `opa test` does."""

from __future__ import annotations

from pathlib import Path

import click

from policyctl.cli.common import emit_json, engine_option, load_snapshot, repo_option


@click.command("test")
@repo_option
@click.option("--ref", default=None, help="Test this commit instead of the working tree.")
@click.option("-v", "--verbose", is_flag=True, help="List every test, not only the failures and errors.")
@click.option("--run", "pattern", metavar="REGEX", default=None,
              help="Run only the tests whose data.<package>.<rule> matches REGEX (searched, not anchored).")
@click.option("--format", "fmt", type=click.Choice(["pretty", "json", "junit"]), default="pretty", show_default=True,
              help="junit: JUnit XML for CI test reports.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file instead of standard output (the summary still goes to stderr).")
@engine_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def rego_test(repo: Path, ref: str | None, verbose: bool, pattern: str | None, fmt: str, as_json: bool,
              output: Path | None, engine_name: str | None, paths: tuple[Path, ...]) -> int:
    """Run the test rules of policies/**/*_test.rego against the policy set.

    A test module has any package (conventionally the tested one plus `_test`) and no
    METADATA; its `test_*` rules may use `with input as …` and `with data.agentgov.… as …`.
    A test passes when its rule is true, fails when it is false or undefined, and errors
    when it cannot be evaluated; `todo_test_*` rules are skipped. Tests are compiled with
    the set but never served or bundled. Given PATHS (files or directories), only the
    tests in them run. Exits 1 when any test fails or errors, or when none is found.
    """
    from policyctl.testing import junit, pretty, run_tests

    report = run_tests(load_snapshot(repo, ref, worktree=ref is None), engine_name=engine_name,
                       paths=[_in_repo(p, repo) for p in paths], pattern=pattern)
    fmt = "json" if as_json else fmt
    if fmt == "json" and output is None:
        emit_json(report.to_dict())
        return 0 if report.ok else 1
    if fmt == "json":
        import json

        text = json.dumps(report.to_dict(), indent=2) + "\n"
    else:
        text = junit(report) if fmt == "junit" else pretty(report, verbose=verbose)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        click.echo(f"wrote {output}: PASS: {report.count('PASS')}/{len(report.results)}", err=True)
    return 0 if report.ok else 1


def _in_repo(path: Path, repo: Path) -> str:
    """PATH as the repository-relative path the snapshot uses (PATHS are given from the current directory)."""
    try:
        return (Path.cwd() / path).resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return path.as_posix().removeprefix("./")
