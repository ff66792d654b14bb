"""Shared test fixtures: real git policy repositories in tmp_path, with a fixed identity."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent
IDENTITY = ["-c", "user.name=policyctl test", "-c", "user.email=test@policyctl.local",
            "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(repo: Path, *args: str) -> str:
    """Run the real git in `repo` and return its stdout."""
    done = subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def write(repo: Path, path: str, text: str) -> Path:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A factory: a new git repository holding a copy of this project's policy set."""
    counter = {"n": 0}

    def factory(seed: bool = True, name: str | None = None) -> Path:
        counter["n"] += 1
        repo = tmp_path / (name or f"repo{counter['n']}")
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        if seed:
            for top in ("policies", "shadow_fixtures", "overrides", "history"):
                if (PROJECT / top).is_dir():
                    shutil.copytree(PROJECT / top, repo / top)
            shutil.copy(PROJECT / "policyctl.toml", repo / "policyctl.toml")
            commit_all(repo, "seed policy set")
        return repo

    return factory


@pytest.fixture
def policy_repo(make_repo: Callable[..., Path]) -> Path:
    """A git repository whose main branch holds this project's policy set."""
    return make_repo()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `policyctl gateway serve` processes (test_gateway.Served), ready unless told not to;
    any still running at the end is killed. One fixture for every gateway test file."""
    from test_gateway import Served

    started: list[Served] = []

    def start(repo: Path, *args: str, token: str | None = None, ready: bool = True) -> Served:
        gw = Served(repo, tmp_path, *args, token=token)
        started.append(gw)
        if ready:
            gw.ready()
        return gw

    yield start
    for gw in started:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    """Override sets (policyctl.sandbox.OverrideSet) a test built; closed afterwards so the shared pool is given back."""
    sets: list[Any] = []
    yield sets
    for s in sets:
        s.close()
