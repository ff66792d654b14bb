"""The Forge protocol the bot talks to, the PullRequest it sees, and the registry of forges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policyctl.errors import PolicyctlError

BRANCH_PREFIX = "policyctl/"
STATUS_CONTEXT = "policyctl/shadow"  # the check a branch protection rule requires (docs/bot.md)
STATUS_STATES = ("pending", "success", "failure", "error")
MAX_STATUS_DESCRIPTION = 140  # GitHub refuses longer descriptions


class ForgeError(PolicyctlError):
    """A forge refused or could not serve a request; the message says what to fix."""

    code = "forge_error"


@dataclass
class PullRequest:
    """A pull request as the bot needs it, whatever forge holds it."""

    number: int
    title: str
    body: str
    head: str
    base: str
    state: str  # open | closed
    merged: bool = False
    labels: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def closed_unmerged(self) -> bool:
        return self.state == "closed" and not self.merged

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "title": self.title, "head": self.head, "base": self.base,
                "state": self.state, "merged": self.merged, "labels": self.labels, "url": self.url}


@dataclass(frozen=True)
class CommitStatus:
    """One commit status: a check's state on a commit, as GitHub's commit statuses API has it."""

    state: str  # pending | success | failure | error
    context: str = STATUS_CONTEXT
    description: str = ""
    target_url: str = ""
    created_at: str = ""

    @property
    def failing(self) -> bool:
        return self.state in ("failure", "error")

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "context": self.context, "description": self.description,
                "target_url": self.target_url, "created_at": self.created_at}


def check_status(state: str, description: str) -> str:
    """The description as a forge takes it (at most 140 characters); ForgeError for a state no forge knows."""
    if state not in STATUS_STATES:
        raise ForgeError(f"commit status state {state!r}: expected one of {', '.join(STATUS_STATES)}")
    description = " ".join(description.split())
    if len(description) > MAX_STATUS_DESCRIPTION:
        description = description[: MAX_STATUS_DESCRIPTION - 1].rstrip() + "…"
    return description


def latest_statuses(statuses: list[CommitStatus]) -> list[CommitStatus]:
    """The newest status of each context (`statuses` newest first), as GitHub shows them on a commit."""
    seen: dict[str, CommitStatus] = {}
    for status in statuses:
        seen.setdefault(status.context, status)
    return sorted(seen.values(), key=lambda st: st.context)


def combined_state(statuses: list[CommitStatus]) -> str | None:
    """GitHub's combined state of a commit: failure when a context's latest is failure or error, pending
    when one is pending, success when all are; None with no status at all."""
    latest = latest_statuses(statuses)
    if not latest:
        return None
    if any(st.failing for st in latest):
        return "failure"
    if any(st.state == "pending" for st in latest):
        return "pending"
    return "success"


class Forge(Protocol):
    """Where branches live and pull requests are reviewed: `local` (this repository) or `github`."""

    name: str

    def base_ref(self, base: str) -> str:
        """A ref in the local repository holding the forge's current `base` branch."""
        ...

    def branch_tip(self, branch: str) -> str | None:
        """The forge's commit for `branch` (present in the local object store), or None."""
        ...

    def push_branch(self, branch: str, sha: str, expected: str | None) -> None:
        """Point the forge's `branch` at `sha`, only if it is still at `expected` (None: absent)."""
        ...

    def find_pr(self, head: str) -> PullRequest | None:
        """The pull request for head branch `head`: the open one, else the newest closed one."""
        ...

    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        ...

    def update_pr(self, number: int, *, title: str | None = None, body: str | None = None) -> PullRequest:
        ...

    def add_labels(self, number: int, labels: list[str]) -> None:
        ...

    def comment(self, number: int, body: str) -> None:
        ...

    def comments(self, number: int) -> list[str]:
        """The bodies of a pull request's comments, oldest first."""
        ...

    def open_bot_prs(self, prefix: str = BRANCH_PREFIX) -> list[PullRequest]:
        """Open pull requests whose head branch starts with `prefix`."""
        ...

    def set_status(self, sha: str, *, state: str, description: str, context: str = STATUS_CONTEXT,
                   target_url: str = "") -> None:
        """Record a commit status on `sha` (pending, success, failure or error; the description is cut to
        140 characters): the required check a bot pull request carries whichever token opened it."""
        ...


@dataclass
class ForgeConfig:
    """What the command line says about the forge; each forge reads the fields it needs."""

    remote: str = "origin"
    github_repo: str | None = None
    api_url: str | None = None
    token: str | None = None


def _local(repo: Path, config: ForgeConfig) -> Forge:
    from policyctl.bot.local import LocalForge

    return LocalForge(repo)


def _github(repo: Path, config: ForgeConfig) -> Forge:
    from policyctl.bot.github import GitHubForge

    return GitHubForge.from_config(repo, config)


FORGES: dict[str, Callable[[Path, ForgeConfig], Forge]] = {"local": _local, "github": _github}


def make_forge(name: str, repo: Path, config: ForgeConfig | None = None) -> Forge:
    """The forge registered as `name`, for the repository at `repo`."""
    try:
        factory = FORGES[name]
    except KeyError:
        raise ForgeError(f"unknown forge {name!r}; choose one of {', '.join(sorted(FORGES))}") from None
    return factory(repo, config or ForgeConfig())
