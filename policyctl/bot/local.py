"""The local forge: real branches in the repository, pull requests as JSON files under its git directory.

`<git dir>/policyctl/pulls/<n>.json` holds one pull request: title, body, head and base
branch, state, labels, comments, and once merged the merge commit and the replay that
gated it. `<git dir>/policyctl/statuses/<commit>.json` holds the commit statuses set on
a commit (the bot's own replay of each draft), oldest first. `policyctl pr` lists,
shows, diffs, merges (a real `git merge` into the base branch, after a replay at the
current base: `policyctl.bot.gate`) and closes them, so a team without GitHub reviews
the bot's drafts the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policyctl import repo as gitrepo
from policyctl.bot.forge import (
    BRANCH_PREFIX,
    STATUS_CONTEXT,
    CommitStatus,
    ForgeError,
    PullRequest,
    check_status,
)
from policyctl.bot.state import read_marker
from policyctl.errors import RepoError

Clock = Callable[[], datetime]
MERGER = ("policyctl", "policyctl@localhost")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalForge:
    """Pull requests recorded in the repository itself; the branches are the repository's own."""

    name = "local"

    def __init__(self, repo: Path, *, clock: Clock = _utcnow) -> None:
        self.repo = Path(repo)
        self.clock = clock
        state = gitrepo.git_dir(self.repo) / "policyctl"
        self.pulls = state / "pulls"
        self.statuses_dir = state / "statuses"

    # ------------------------------------------------------------------ records

    def _path(self, number: int) -> Path:
        return self.pulls / f"{number}.json"

    def records(self) -> list[dict[str, Any]]:
        """Every pull request record, by number."""
        if not self.pulls.is_dir():
            return []
        out = []
        for path in self.pulls.glob("*.json"):
            if path.stem.isdigit():
                out.append(self._read(path))
        return sorted(out, key=lambda r: int(r["number"]))

    def record(self, number: int) -> dict[str, Any]:
        path = self._path(number)
        if not path.is_file():
            known = ", ".join(f"#{r['number']}" for r in self.records()[-10:]) or "none yet"
            raise ForgeError(f"no pull request #{number} in {self.pulls} (known: {known})")
        return self._read(path)

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ForgeError(f"{path}: unreadable pull request record ({exc}); fix or delete the file") from exc
        if not isinstance(data, dict) or not isinstance(data.get("number"), int):
            raise ForgeError(f"{path}: not a pull request record (no number)")
        return data

    def _write(self, record: dict[str, Any], *, new: bool = False) -> None:
        self.pulls.mkdir(parents=True, exist_ok=True)
        path = self._path(int(record["number"]))
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        if new:
            with open(path, "x") as f:  # two runs racing for one number: the second fails, never overwrites
                f.write(text)
            return
        _replace(path, text)

    @staticmethod
    def _pr(record: dict[str, Any]) -> PullRequest:
        return PullRequest(number=int(record["number"]), title=str(record.get("title", "")),
                           body=str(record.get("body", "")), head=str(record.get("head", "")),
                           base=str(record.get("base", "")), state=str(record.get("state", "open")),
                           merged=bool(record.get("merged")), labels=list(record.get("labels") or []),
                           url=f"local:#{record['number']}")

    # ------------------------------------------------------------------ the Forge protocol

    def base_ref(self, base: str) -> str:
        return f"refs/heads/{base}"

    def branch_tip(self, branch: str) -> str | None:
        return gitrepo.branch_tip(self.repo, branch)

    def push_branch(self, branch: str, sha: str, expected: str | None) -> None:
        gitrepo.update_branch(self.repo, branch, sha, expected)

    def find_pr(self, head: str) -> PullRequest | None:
        mine = [r for r in self.records() if r.get("head") == head]
        if not mine:
            return None
        open_ = [r for r in mine if r.get("state") == "open"]
        return self._pr(max(open_ or mine, key=lambda r: int(r["number"])))

    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        if gitrepo.branch_tip(self.repo, head) is None:
            raise ForgeError(f"cannot open a pull request from {head}: no such branch in {self.repo}")
        if any(r.get("head") == head and r.get("state") == "open" for r in self.records()):
            raise ForgeError(f"a pull request from {head} is already open")
        now = _iso(self.clock())
        number = max((int(r["number"]) for r in self.records()), default=0) + 1
        record = {"number": number, "title": title, "body": body, "head": head, "base": base, "state": "open",
                  "merged": False, "labels": [], "comments": [], "created_at": now, "updated_at": now}
        self._write(record, new=True)
        return self._pr(record)

    def update_pr(self, number: int, *, title: str | None = None, body: str | None = None) -> PullRequest:
        record = self.record(number)
        if title is not None:
            record["title"] = title
        if body is not None:
            record["body"] = body
        record["updated_at"] = _iso(self.clock())
        self._write(record)
        return self._pr(record)

    def add_labels(self, number: int, labels: list[str]) -> None:
        record = self.record(number)
        record["labels"] = sorted(set(record.get("labels") or []) | set(labels))
        self._write(record)

    def comment(self, number: int, body: str) -> None:
        record = self.record(number)
        record.setdefault("comments", []).append({"body": body, "created_at": _iso(self.clock())})
        record["updated_at"] = _iso(self.clock())
        self._write(record)

    def comments(self, number: int) -> list[str]:
        return [str(c.get("body", "")) for c in self.record(number).get("comments") or []]

    def open_bot_prs(self, prefix: str = BRANCH_PREFIX) -> list[PullRequest]:
        return [self._pr(r) for r in self.records()
                if r.get("state") == "open" and str(r.get("head", "")).startswith(prefix)]

    def set_status(self, sha: str, *, state: str, description: str, context: str = STATUS_CONTEXT,
                   target_url: str = "") -> None:
        description = check_status(state, description)
        try:
            full = gitrepo.resolve(self.repo, sha)
        except RepoError as exc:
            raise ForgeError(f"cannot set a status on {sha}: {exc.message}") from exc
        path = self.statuses_dir / f"{full}.json"
        entries = self._status_entries(path)
        entries.append({"state": state, "context": context, "description": description,
                        "target_url": target_url, "created_at": _iso(self.clock())})
        self.statuses_dir.mkdir(parents=True, exist_ok=True)
        _replace(path, json.dumps(entries, indent=2) + "\n")

    # ------------------------------------------------------------------ commit statuses

    def statuses(self, sha: str) -> list[CommitStatus]:
        """The statuses set on commit `sha`, newest first (as GitHub lists them)."""
        try:
            full = gitrepo.resolve(self.repo, sha)
        except RepoError:
            return []
        entries = self._status_entries(self.statuses_dir / f"{full}.json")
        return [CommitStatus(state=str(e.get("state", "")), context=str(e.get("context", STATUS_CONTEXT)),
                             description=str(e.get("description", "")), target_url=str(e.get("target_url", "")),
                             created_at=str(e.get("created_at", "")))
                for e in reversed(entries) if isinstance(e, dict)]

    @staticmethod
    def _status_entries(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ForgeError(f"{path}: unreadable commit statuses ({exc}); fix or delete the file") from exc
        if not isinstance(data, list):
            raise ForgeError(f"{path}: not a list of commit statuses; fix or delete the file")
        return data

    # ------------------------------------------------------------------ review: `policyctl pr`

    def by_state(self, state: str = "open") -> list[dict[str, Any]]:
        """Records in `state`: open, closed (unmerged), merged or all."""
        out = []
        for r in self.records():
            status = self.status(r)
            if state == "all" or status == state:
                out.append(r)
        return out

    @staticmethod
    def status(record: dict[str, Any]) -> str:
        if record.get("merged"):
            return "merged"
        return "open" if record.get("state") == "open" else "closed"

    def merge(self, number: int, *, author: tuple[str, str] | None = None, notes: str = "", expected: str | None = None,
              check: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge the pull request's branch into its base with a real merge commit; the updated record.

        No replay happens here: `policyctl pr merge` goes through `policyctl.bot.gate`, which
        replays first and passes what it found as `notes` (appended to the merge commit's
        message) and `check` (kept in the record as `merge_check`).
        """
        record = self.record(number)
        if record.get("state") != "open":
            raise ForgeError(f"pull request #{number} is {self.status(record)}; only an open one can be merged")
        head, base = str(record["head"]), str(record["base"])
        who = author or gitrepo.user_identity(self.repo) or MERGER
        message = f"Merge pull request #{number} from {head}\n\n{record.get('title', '')}"
        if notes.strip():
            message += "\n\n" + notes.strip()
        sha = gitrepo.merge_branch(self.repo, base, head, message, author=who, expected=expected)
        now = _iso(self.clock())
        record.update({"state": "closed", "merged": True, "merged_at": now, "merge_commit": sha,
                       "merged_by": f"{who[0]} <{who[1]}>", "updated_at": now})
        if check is not None:
            record["merge_check"] = check
        self._write(record)
        return record

    def close(self, number: int, *, reason: str = "") -> dict[str, Any]:
        """Close without merging: the bot then ignores the cluster until it at least doubles.

        A `reason` is left as a comment and kept in the record as `close_reason`.
        """
        record = self.record(number)
        if record.get("state") != "open":
            raise ForgeError(f"pull request #{number} is already {self.status(record)}")
        now = _iso(self.clock())
        record.update({"state": "closed", "merged": False, "closed_at": now, "updated_at": now})
        reason = reason.strip()
        if reason:
            record["close_reason"] = reason
            record.setdefault("comments", []).append({"body": f"Closed without merging: {reason}", "created_at": now})
        marker = read_marker(str(record.get("body", "")))
        if marker is not None:
            record["ignored"] = {"cluster": marker.fingerprint, "size": marker.size,
                                 "until_size": 2 * marker.size}
        self._write(record)
        return record


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
