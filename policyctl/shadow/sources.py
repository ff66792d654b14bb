"""The history a replay reads when no `--logs` is given: configured sources and the bots' evidence samples.

`policyctl.toml` names log sources: paths or globs in the repository (read from the
commit, so a replay of a ref is reproducible), absolute paths on this machine, or
https:// URLs fetched with a bearer token from the environment. Every bot pull request
commits a masked evidence sample under `shadow_evidence/`; those are replayed too, so
CI and `policyctl pr merge` see the failures a rule was drafted for and the ok traffic
it must not disturb, without access to the raw logs.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from policyctl import repo as gitrepo
from policyctl.errors import InputError
from policyctl.model.config import RepoConfig

EVIDENCE_DIR = "shadow_evidence/"
MAX_FETCH_BYTES = 512 * 1024 * 1024


@dataclass
class History:
    """Log files to replay, and where each came from (for the report)."""

    paths: list[Path] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # local path -> what the user wrote

    def add(self, path: Path, origin: str) -> None:
        self.paths.append(path)
        self.origins[str(path)] = origin


def evidence_paths(repo_path: str | Path, ref: str) -> list[str]:
    return [p for p in gitrepo.tree_paths(repo_path, ref) if p.startswith(EVIDENCE_DIR) and p.endswith(".jsonl")]


def resolve_history(repo_path: str | Path, ref: str | None, config: RepoConfig, *, into: Path,
                    evidence_refs: list[str] | None = None) -> History:
    """Materialise the configured sources and evidence samples of `ref` as files under `into`.

    `ref` None reads the working tree (a `--worktree` replay: what is about to be committed).
    `evidence_refs` adds the evidence of other commits too (a replay of a candidate reads the
    candidate's evidence and the base's). A configured source that matches nothing is an
    error naming it: a silently empty replay would PASS on no history.
    """
    into.mkdir(parents=True, exist_ok=True)
    history = History()
    files = _Files(Path(repo_path), ref, into)
    for source in config.logs.sources:
        if source.startswith(("https://", "http://")):
            history.add(_fetch(source, config.logs.token_env, into), source)
        elif os.path.isabs(source):
            found = sorted(glob.glob(source))
            if not found:
                raise InputError(f"policyctl.toml: logs.sources: {source!r} matches no file on this machine")
            for f in found:
                history.add(Path(f), source)
        else:
            matches = files.match(source)
            if not matches:
                where = f"at {ref} (sources are read from the commit: commit the log, or give an absolute path)" \
                    if ref else f"in {repo_path}"
                raise InputError(f"policyctl.toml: logs.sources: {source!r} matches no file {where}")
            files.add(matches, "sources", history, source)
    if config.logs.evidence:
        mine = files.evidence()
        files.add(mine, "evidence", history, None)
        seen = set(mine)
        for rev in evidence_refs or []:
            names = [p for p in evidence_paths(repo_path, rev) if p not in seen]
            seen.update(names)
            _materialise(repo_path, rev, names, into / "evidence", history, None)
    return history


class _Files:
    """The repository's files at `ref` (read from git objects), or in the working tree when ref is None."""

    def __init__(self, root: Path, ref: str | None, into: Path) -> None:
        self.root, self.ref, self.into = root, ref, into
        self.tree = gitrepo.tree_paths(root, ref) if ref is not None else None

    def match(self, pattern: str) -> list[str]:
        if self.tree is not None:
            return [p for p in self.tree if fnmatch.fnmatchcase(p, pattern)]
        return sorted(Path(f).relative_to(self.root).as_posix()
                      for f in glob.glob(str(self.root / pattern), recursive=True) if Path(f).is_file())

    def evidence(self) -> list[str]:
        if self.tree is not None:
            return [p for p in self.tree if p.startswith(EVIDENCE_DIR) and p.endswith(".jsonl")]
        return sorted(p.relative_to(self.root).as_posix() for p in (self.root / EVIDENCE_DIR).glob("**/*.jsonl"))

    def add(self, paths: list[str], kind: str, history: History, origin: str | None) -> None:
        if self.ref is not None:
            _materialise(self.root, self.ref, paths, self.into / kind, history, origin)
            return
        for path in paths:  # the working tree's files are read where they are
            history.add(self.root / path, origin or path)


def _materialise(repo_path: str | Path, ref: str, paths: list[str], into: Path, history: History,
                 origin: str | None) -> None:
    for path, data in gitrepo.read_files(repo_path, ref, paths).items():
        out = into / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        history.add(out, origin or path)


def _fetch(url: str, token_env: str | None, into: Path) -> Path:
    import httpx

    headers = {"Accept": "application/x-ndjson, application/json, text/plain"}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise InputError(f"policyctl.toml: logs.token_env names {token_env}, which is not set; "
                             f"export it to fetch {url}")
        headers["Authorization"] = f"Bearer {token}"
    out = into / "fetched" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with httpx.stream("GET", url, headers=headers, timeout=60.0, follow_redirects=False) as resp:
            if resp.status_code != 200:
                raise InputError(f"policyctl.toml: logs.sources: GET {url} answered {resp.status_code}")
            written = 0
            with out.open("wb") as sink:
                for chunk in resp.iter_bytes():
                    written += len(chunk)
                    if written > MAX_FETCH_BYTES:
                        raise InputError(f"policyctl.toml: logs.sources: {url} is larger than "
                                         f"{MAX_FETCH_BYTES // 2**20} MiB; split it")
                    sink.write(chunk)
    except httpx.HTTPError as exc:
        raise InputError(f"policyctl.toml: logs.sources: cannot fetch {url} ({exc.__class__.__name__}: {exc})") from exc
    return out
