"""Read a commit's policy files, refs, history, branches and merges: the only importer of GitPython."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import git
from gitdb.exc import BadName, BadObject

from policyctl.errors import RepoError

ROOTS = ("policies", "overrides", "shadow_fixtures")
WORKTREE = "worktree"


@dataclass(frozen=True)
class Snapshot:
    """The files of policies/, overrides/ and shadow_fixtures/ at one revision.

    `revision` is the commit id, or None for a working tree. `blob_ids` are git blob ids
    (for a working tree, the ids git would give the current contents).
    """

    revision: str | None
    files: Mapping[str, bytes]
    blob_ids: Mapping[str, str] = field(default_factory=dict)
    committed_at: datetime | None = None
    root: str = ""

    @property
    def label(self) -> str:
        return self.revision or WORKTREE

    def paths(self, prefix: str = "", suffix: str = "") -> list[str]:
        return sorted(p for p in self.files if p.startswith(prefix) and p.endswith(suffix))

    def text(self, path: str) -> str:
        try:
            return self.files[path].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RepoError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


@contextmanager
def open_repo(path: str | Path) -> Iterator[git.Repo]:
    """Open the git repository at `path`, translating GitPython's errors into RepoError."""
    try:
        repo = git.Repo(path)
    except git.NoSuchPathError as exc:
        raise RepoError(f"{path}: no such directory") from exc
    except git.InvalidGitRepositoryError as exc:
        raise RepoError(f"{path}: not a git repository (run `git init` or pass --repo)") from exc
    try:
        yield repo
    finally:
        repo.close()


def _commit(repo: git.Repo, ref: str) -> git.Commit:
    try:
        repo.head.commit  # noqa: B018 - raises on an empty repository
    except ValueError:
        if not repo.refs:
            raise RepoError(f"{repo.working_dir or repo.git_dir}: the repository has no commits yet; "
                            "commit policies/ first") from None
    try:
        obj = repo.rev_parse(ref)
    except (BadName, BadObject, ValueError, IndexError) as exc:
        names = ", ".join(sorted(h.name for h in repo.heads)[:10]) or "none"
        raise RepoError(f"ref {ref!r} not found in {repo.working_dir or repo.git_dir} (branches: {names})") from exc
    if isinstance(obj, git.TagObject):
        obj = obj.object
    if not isinstance(obj, git.Commit):
        raise RepoError(f"ref {ref!r} names a {obj.type}, not a commit")
    return obj


def resolve(repo_path: str | Path, ref: str) -> str:
    """The commit id that `ref` names."""
    with open_repo(repo_path) as repo:
        return str(_commit(repo, ref).hexsha)


def snapshot(repo_path: str | Path, ref: str = "HEAD") -> Snapshot:
    """The policy files at `ref`, read from git objects (never from the working tree)."""
    with open_repo(repo_path) as repo:
        commit = _commit(repo, ref)
        files: dict[str, bytes] = {}
        blobs: dict[str, str] = {}
        for root in ROOTS:
            try:
                tree = commit.tree / root
            except KeyError:
                continue
            for item in tree.traverse():
                if isinstance(item, git.Blob) and item.mode != 0o120000:  # skip symlinks
                    files[str(item.path)] = item.data_stream.read()
                    blobs[str(item.path)] = item.hexsha
        return Snapshot(revision=commit.hexsha, files=files, blob_ids=blobs,
                        committed_at=commit.committed_datetime, root=str(repo.working_dir or repo.git_dir))


def worktree_snapshot(root: str | Path) -> Snapshot:
    """The policy files as they are on disk under `root`, for local editing (`--worktree`)."""
    base = Path(root)
    if not base.is_dir():
        raise RepoError(f"{root}: no such directory")
    files: dict[str, bytes] = {}
    blobs: dict[str, str] = {}
    for name in ROOTS:
        top = base / name
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                if full.is_symlink() or not full.is_file():
                    continue
                rel = full.relative_to(base).as_posix()
                data = full.read_bytes()
                files[rel] = data
                blobs[rel] = git.Object.NULL_HEX_SHA if not data else _blob_id(data)
    return Snapshot(revision=None, files=files, blob_ids=blobs, root=str(base))


def _blob_id(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def first_parent_history(repo_path: str | Path, ref: str, limit: int = 50) -> list[str]:
    """Commit ids on `ref`'s first-parent line, newest first."""
    with open_repo(repo_path) as repo:
        commit: git.Commit | None = _commit(repo, ref)
        out: list[str] = []
        while commit is not None and len(out) < limit:
            out.append(commit.hexsha)
            commit = commit.parents[0] if commit.parents else None
        return out


def commit_summary(repo_path: str | Path, rev: str) -> str:
    with open_repo(repo_path) as repo:
        return str(_commit(repo, rev).summary)
