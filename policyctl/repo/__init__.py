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
from policyctl.model.config import CONFIG_FILE, RepoConfig, parse_config

ROOTS = ("policies", "overrides", "shadow_fixtures")
TOP_FILES = (CONFIG_FILE,)  # read with the policy files: the vocabulary and budgets are part of a revision
WORKTREE = "worktree"


@dataclass(frozen=True)
class Snapshot:
    """The files of policies/, overrides/, shadow_fixtures/ and policyctl.toml at one revision.

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

    @property
    def config(self) -> RepoConfig:
        """This revision's `policyctl.toml` (defaults when it has none); raises ValidationError when it is bad."""
        return parse_config(self.files.get(CONFIG_FILE), where=CONFIG_FILE)

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
        for name in TOP_FILES:
            try:
                blob = commit.tree / name
            except KeyError:
                continue
            if isinstance(blob, git.Blob) and blob.mode != 0o120000:
                files[name] = blob.data_stream.read()
                blobs[name] = blob.hexsha
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
    for name in TOP_FILES:
        full = base / name
        if full.is_file() and not full.is_symlink():
            files[name] = full.read_bytes()
            blobs[name] = _blob_id(files[name])
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


# --------------------------------------------------------------------------- writing: branches, commits, merges
# Used by the bot and the local forge. None of these touch the working tree or the index
# of the repository, except merge_branch when the base branch is checked out (then it is
# a plain `git merge` there, so the working tree follows the branch, as a user expects).


@dataclass(frozen=True)
class CommitInfo:
    """One commit: id, author, committer email and first line of the message."""

    sha: str
    author_name: str
    author_email: str
    committer_email: str
    summary: str


def _git_error(what: str, exc: git.GitCommandError) -> RepoError:
    detail = (exc.stderr or exc.stdout or "").strip().replace("stderr: ", "").strip("'\n ")
    return RepoError(f"{what}: {detail or exc}")


def has_commits(repo_path: str | Path) -> bool:
    """Whether the repository's HEAD names a commit (False right after `git init`)."""
    with open_repo(repo_path) as repo:
        return _ref_sha(repo, "HEAD") is not None


def git_dir(repo_path: str | Path) -> Path:
    """The repository's common git directory (shared by all its worktrees): where tools keep state."""
    with open_repo(repo_path) as repo:
        return Path(repo.common_dir).resolve()


def branch_tip(repo_path: str | Path, branch: str) -> str | None:
    """The commit `refs/heads/<branch>` points to, or None when there is no such branch."""
    with open_repo(repo_path) as repo:
        return _ref_sha(repo, f"refs/heads/{branch}")


def _ref_sha(repo: git.Repo, ref: str) -> str | None:
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")) or None
    except git.GitCommandError:
        return None


def commit_files(repo_path: str | Path, base_ref: str, files: Mapping[str, bytes], message: str, *,
                 author: tuple[str, str]) -> str:
    """A new commit whose parent is `base_ref` and whose tree is base's with `files` written in.

    `author` is (name, email); it is the committer too. No ref moves: use update_branch.
    The work happens in a private index file, never the repository's index or working tree.
    """
    import tempfile

    name, email = author
    with open_repo(repo_path) as repo:
        base = _commit(repo, base_ref)
        with tempfile.TemporaryDirectory(prefix="policyctl-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"),
                   "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                   "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
            try:
                repo.git.read_tree(base.hexsha, env=env)
                for path, data in sorted(files.items()):
                    blob = _store_blob(repo, data)
                    repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
                tree = repo.git.write_tree(env=env)
                return str(repo.git.commit_tree(tree, "-p", base.hexsha, "-m", message, env=env))
            except git.GitCommandError as exc:
                raise _git_error(f"cannot commit {', '.join(sorted(files))} onto {base_ref}", exc) from exc


def _store_blob(repo: git.Repo, data: bytes) -> str:
    from io import BytesIO

    from gitdb import IStream

    stream = repo.odb.store(IStream("blob", len(data), BytesIO(data)))
    hexsha = stream.hexsha
    return hexsha.decode() if isinstance(hexsha, bytes) else str(hexsha)


def update_branch(repo_path: str | Path, branch: str, sha: str, expected: str | None) -> None:
    """Point `refs/heads/<branch>` at `sha` if it still points at `expected` (None: must not exist).

    Compare-and-swap, so a push by someone else between reading and writing is never lost.
    A branch checked out in the working tree is refused: moving it would desynchronise the tree.
    """
    ref = f"refs/heads/{branch}"
    with open_repo(repo_path) as repo:
        if not repo.bare:
            try:
                current = repo.git.symbolic_ref("-q", "HEAD")
            except git.GitCommandError:
                current = ""
            if current == ref:
                raise RepoError(f"{branch} is checked out in {repo.working_dir}; switch to another branch "
                                "so the bot can update it")
        try:
            repo.git.update_ref("-m", "policyctl bot", ref, sha, expected or "0" * 40)
        except git.GitCommandError as exc:
            raise _git_error(f"cannot move {branch} (did someone push to it meanwhile?)", exc) from exc


def branch_commits(repo_path: str | Path, base_ref: str, tip: str) -> list[CommitInfo]:
    """Commits reachable from `tip` but not from `base_ref`, newest first."""
    with open_repo(repo_path) as repo:
        base = _commit(repo, base_ref)
        head = _commit(repo, tip)
        out = []
        for c in repo.iter_commits(f"{base.hexsha}..{head.hexsha}"):
            out.append(CommitInfo(sha=c.hexsha, author_name=str(c.author.name or ""),
                                  author_email=str(c.author.email or ""),
                                  committer_email=str(c.committer.email or ""), summary=str(c.summary)))
        return out


def commit_changes(repo_path: str | Path, rev: str) -> dict[str, bytes | None]:
    """The files `rev` changes against its first parent: new contents, or None for a deletion."""
    with open_repo(repo_path) as repo:
        commit = _commit(repo, rev)
        parent = commit.parents[0] if commit.parents else None
        out: dict[str, bytes | None] = {}
        if parent is None:
            for item in commit.tree.traverse():
                if isinstance(item, git.Blob):
                    out[str(item.path)] = item.data_stream.read()
            return out
        for diff in parent.diff(commit):
            if diff.deleted_file:
                out[str(diff.a_path)] = None
                continue
            if diff.renamed_file and diff.a_path:
                out[str(diff.a_path)] = None
            blob = diff.b_blob
            if blob is not None:
                out[str(diff.b_path)] = blob.data_stream.read()
        return out


def tree_paths(repo_path: str | Path, rev: str) -> list[str]:
    """Every file path of the commit `rev` (blobs only, symlinks skipped), sorted."""
    with open_repo(repo_path) as repo:
        commit = _commit(repo, rev)
        return sorted(str(item.path) for item in commit.tree.traverse()
                      if isinstance(item, git.Blob) and item.mode != 0o120000)


def read_files(repo_path: str | Path, rev: str, paths: list[str]) -> dict[str, bytes]:
    """The contents of `paths` at `rev`; paths that are not files there are left out."""
    out: dict[str, bytes] = {}
    with open_repo(repo_path) as repo:
        commit = _commit(repo, rev)
        for path in paths:
            try:
                item = commit.tree / path
            except KeyError:
                continue
            if isinstance(item, git.Blob):
                out[path] = item.data_stream.read()
    return out


def read_file(repo_path: str | Path, rev: str, path: str) -> bytes | None:
    """The contents of `path` at `rev`, or None when it does not exist there."""
    with open_repo(repo_path) as repo:
        commit = _commit(repo, rev)
        try:
            item = commit.tree / path
        except KeyError:
            return None
        return item.data_stream.read() if isinstance(item, git.Blob) else None


def fetch_branch(repo_path: str | Path, remote: str, branch: str, *, into: str,
                 env: Mapping[str, str] | None = None) -> str | None:
    """Fetch `branch` from `remote` (a name or URL) into the ref `into`; its commit, or None if absent.

    When the remote has no such branch, `into` is deleted so a stale copy is never used.
    """
    with open_repo(repo_path) as repo:
        try:
            listed = str(repo.git.ls_remote("--heads", remote, f"refs/heads/{branch}", env=dict(env or {})))
        except git.GitCommandError as exc:
            raise _git_error(f"cannot list branches of {_redact(remote)}", exc) from exc
        if not listed.strip():
            if _ref_sha(repo, into):
                repo.git.update_ref("-d", into)
            return None
        try:
            repo.git.fetch("--quiet", "--no-tags", remote, f"+refs/heads/{branch}:{into}", env=dict(env or {}))
        except git.GitCommandError as exc:
            raise _git_error(f"cannot fetch {branch} from {_redact(remote)}", exc) from exc
        return _ref_sha(repo, into)


def push_branch(repo_path: str | Path, remote: str, sha: str, branch: str, *, expected: str | None,
                env: Mapping[str, str] | None = None) -> None:
    """Push `sha` to `refs/heads/<branch>` on `remote`, only if the remote branch is still at `expected`.

    `--force-with-lease` with an explicit expected value: the bot replaces its own commit,
    but never a commit someone pushed after the bot looked.
    """
    ref = f"refs/heads/{branch}"
    lease = f"--force-with-lease={ref}:{expected or ''}"
    with open_repo(repo_path) as repo:
        try:
            repo.git.push("--quiet", "--porcelain", lease, remote, f"{sha}:{ref}", env=dict(env or {}))
        except git.GitCommandError as exc:
            raise _git_error(f"cannot push {branch} to {_redact(remote)}", exc) from exc


def _redact(remote: str) -> str:
    import re

    return re.sub(r"//[^/@]+@", "//***@", remote)


def merge_branch(repo_path: str | Path, base: str, branch: str, message: str, *, author: tuple[str, str],
                 expected: str | None = None) -> str:
    """Merge `branch` into the branch `base` with a merge commit; the new commit id of `base`.

    When `base` is checked out in the working tree this is `git merge --no-ff` there, so
    the tree follows; otherwise the merge is computed without a working tree
    (`git merge-tree --write-tree`) and `base` is moved by compare-and-swap. A conflict
    moves nothing and names the conflicting files. With `expected`, `base` must still be
    at that commit (what a gate checked), or nothing moves.
    """
    name, email = author
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
           "GIT_COMMITTER_EMAIL": email}
    ref = f"refs/heads/{base}"
    with open_repo(repo_path) as repo:
        base_sha = _ref_sha(repo, ref)
        head_sha = _ref_sha(repo, f"refs/heads/{branch}")
        if base_sha is None:
            raise RepoError(f"no branch {base!r} in {repo.working_dir or repo.git_dir}")
        if head_sha is None:
            raise RepoError(f"no branch {branch!r} in {repo.working_dir or repo.git_dir}")
        if expected is not None and base_sha != expected:
            raise RepoError(f"cannot merge {branch} into {base}: {base} moved to {base_sha[:12]} while it was "
                            f"being checked (expected {expected[:12]}); run the merge again")
        checked_out = ""
        if not repo.bare:
            try:
                checked_out = repo.git.symbolic_ref("-q", "HEAD")
            except git.GitCommandError:
                checked_out = ""
        if checked_out == ref:
            try:
                repo.git.merge("--no-ff", "--no-edit", "-m", message, head_sha, env=env)
            except git.GitCommandError as exc:
                from contextlib import suppress

                with suppress(git.GitCommandError):
                    repo.git.merge("--abort")
                raise _git_error(f"cannot merge {branch} into {base} in {repo.working_dir}", exc) from exc
            return str(_ref_sha(repo, ref))
        sha = _merge_commit(repo, base_sha, head_sha, message, env, what=f"{branch} into {base}")
        try:
            repo.git.update_ref("-m", f"merge {branch}", ref, sha, base_sha)
        except git.GitCommandError as exc:
            raise _git_error(f"cannot merge {branch} into {base}", exc) from exc
        return sha


class MergeConflict(RepoError):
    """Two commits do not merge cleanly; `files` are the conflicting paths."""

    code = "merge_conflict"

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


def _merge_commit(repo: git.Repo, base_sha: str, head_sha: str, message: str, env: dict[str, str], *,
                  what: str) -> str:
    try:
        tree = repo.git.merge_tree("--write-tree", "--name-only", base_sha, head_sha).splitlines()[0]
    except git.GitCommandError as exc:
        lines = (exc.stdout or "").strip("'\n ").replace("stdout: ", "").splitlines()
        files = sorted({ln for ln in lines[1:] if ln and not ln.startswith(("Auto-merging", "CONFLICT"))})
        raise MergeConflict(f"cannot merge {what}: conflicts in {', '.join(files) or 'some files'}; "
                            "update the branch first", files) from exc
    try:
        return str(repo.git.commit_tree(tree, "-p", base_sha, "-p", head_sha, "-m", message, env=env))
    except git.GitCommandError as exc:
        raise _git_error(f"cannot merge {what}", exc) from exc


def preview_merge(repo_path: str | Path, base_sha: str, head_sha: str, message: str, *,
                  author: tuple[str, str]) -> str:
    """The merge commit of `head_sha` into `base_sha`, written to the object store with no ref moved:
    what the base would become. Raises MergeConflict naming the files."""
    name, email = author
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
           "GIT_COMMITTER_EMAIL": email}
    with open_repo(repo_path) as repo:
        return _merge_commit(repo, base_sha, head_sha, message, env, what=f"{head_sha[:12]} into {base_sha[:12]}")


def diff(repo_path: str | Path, old: str, new: str | None = None, *, stat: bool = False, color: bool = False) -> str:
    """`git diff OLD [NEW]` (OLD may be `a...b`), as text."""
    args = ["--color=always" if color else "--no-color"] + (["--stat"] if stat else []) + [old]
    if new:
        args.append(new)
    with open_repo(repo_path) as repo:
        try:
            return str(repo.git.diff(*args, "--"))
        except git.GitCommandError as exc:
            raise _git_error(f"cannot diff {old} {new or ''}".strip(), exc) from exc


def user_identity(repo_path: str | Path) -> tuple[str, str] | None:
    """(user.name, user.email) from git's configuration for this repository, or None if either is unset."""
    with open_repo(repo_path) as repo:
        try:
            name = repo.git.config("--get", "user.name")
            email = repo.git.config("--get", "user.email")
        except git.GitCommandError:
            return None
        return (name, email) if name and email else None
