"""The `policyctl` entry point: a lazy command group and the one top-level error handler."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback
from typing import Any

import click

from policyctl import __version__
from policyctl.errors import PolicyctlError

# name -> "module:attribute"; imported only when the command runs, so `--help` stays light.
COMMANDS = {
    "bot": "policyctl.cli.bot:bot",
    "check": "policyctl.cli.check:check",
    "cluster": "policyctl.cli.cluster:cluster",
    "decide": "policyctl.cli.decide:decide",
    "demo": "policyctl.cli.demo:demo",
    "draft": "policyctl.cli.draft:draft",
    "bundle": "policyctl.cli.bundle:bundle",
    "gateway": "policyctl.cli.gateway:gateway",
    "mcp-proxy": "policyctl.cli.mcp_proxy:mcp_proxy",
    "init": "policyctl.cli.init:init",
    "lint": "policyctl.cli.lint:lint",
    "override": "policyctl.cli.override:override",
    "pr": "policyctl.cli.pr:pr",
    "simulate": "policyctl.cli.simulate:simulate",
    "shadow": "policyctl.cli.shadow:shadow",
    "test": "policyctl.cli.test:rego_test",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="policyctl")
def cli() -> None:
    """Git-backed policy as code for multi-agent systems.

    The Rego policies under policies/, the override scripts under overrides/ and
    the regression fixtures under shadow_fixtures/ of a git repository decide what
    agents may do. Commands read them from a commit (--ref) and, where you edit,
    from the working tree.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; expected errors print `Error: …` and exit 1 (2 for usage), the unexpected 3."""
    try:
        result: Any = cli.main(args=argv, prog_name="policyctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        exc.show()
        return 1
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("Interrupted.", err=True)
        return 130
    except PolicyctlError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that catches the unexpected
        fd, path = tempfile.mkstemp(prefix="policyctl-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}\nThis is a bug in policyctl; "
                   f"the traceback is in {path}", err=True)
        return 3
    return int(result or 0)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
