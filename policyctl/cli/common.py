"""Options and helpers the commands share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from policyctl.errors import UsageError
from policyctl.repo import Snapshot, snapshot, worktree_snapshot

repo_option = click.option("--repo", "repo", default=".", show_default=True,
                           type=click.Path(file_okay=False, path_type=Path),
                           help="The policy repository (a git working tree).")


def load_snapshot(repo: Path, ref: str | None, worktree: bool) -> Snapshot:
    if ref and worktree:
        raise UsageError("--ref and --worktree exclude each other")
    if worktree:
        return worktree_snapshot(repo)
    return snapshot(repo, ref or "HEAD")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
