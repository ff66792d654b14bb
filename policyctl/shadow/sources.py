"""The history a replay reads when no `--logs` is given: configured sources and the bots' evidence samples.

`policyctl.toml` names log sources: paths or globs in the repository (read from the
commit, so a replay of a ref is reproducible), absolute paths on this machine, or
https:// URLs fetched with a bearer token from the environment. Each source goes through
the same readers as `--logs` (`policyctl.ingest`: an OTLP export or an OPA decision log
is replayed as the events it holds, not rejected line by line), and sources in which
nothing is readable are an error. Every bot pull request commits a masked evidence
sample under `shadow_evidence/`; those are replayed too, so CI and `policyctl pr merge`
see the failures a rule was drafted for and the ok traffic it must not disturb, without
access to the raw logs. Evidence is policyctl's own Event lines, written by the bot, and
is replayed as committed, so a report's file:line is a line of the committed file.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from policyctl import repo as gitrepo
from policyctl.errors import InputError
from policyctl.ingest import ReadSummary, normalize_file
from policyctl.model.config import RepoConfig

EVIDENCE_DIR = "shadow_evidence/"
MAX_FETCH_BYTES = 512 * 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})  # where a token over plain http stays on this machine


@dataclass
class History:
    """Log files to replay, and where each came from (for the report)."""

    paths: list[Path] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # local path -> what the user wrote
    read: ReadSummary = field(default_factory=ReadSummary)  # what the readers made of the configured sources

    def add(self, path: Path, origin: str) -> None:
        self.paths.append(path)
        self.origins[str(path)] = origin


def evidence_paths(repo_path: str | Path, ref: str) -> list[str]:
    return [p for p in gitrepo.tree_paths(repo_path, ref) if p.startswith(EVIDENCE_DIR) and p.endswith(".jsonl")]


def resolve_history(repo_path: str | Path, ref: str | None, config: RepoConfig, *, into: Path,
                    evidence_refs: list[str] | None = None, summary: ReadSummary | None = None) -> History:
    """Materialise the configured sources and evidence samples of `ref` as Event files under `into`.

    `ref` None reads the working tree (a `--worktree` replay: what is about to be committed).
    `evidence_refs` adds the evidence of other commits too (a replay of a candidate reads the
    candidate's evidence and the base's). Every source is read by its format's reader into
    policyctl Event lines; what could not be read is counted in `History.read` (and added to
    `summary` when given), by reason and by the file's name in the repository or its URL.
    A configured source that matches nothing, or sources in which nothing is readable, are
    an error naming them: a silently empty replay would PASS on no history.
    """
    into.mkdir(parents=True, exist_ok=True)
    history = History()
    files = _Files(Path(repo_path), ref)
    raw = into / "raw"  # the sources as found, before their readers; never replayed
    for source in config.logs.sources:
        if source.startswith(("https://", "http://")):
            fetched = _fetch(source, config.logs.token_env, raw / "fetched")
            _read_source(fetched, source, into / "fetched" / fetched.name, source, history)
        elif os.path.isabs(source):
            found = sorted(glob.glob(source))
            if not found:
                raise InputError(f"policyctl.toml: logs.sources: {source!r} matches no file on this machine")
            for f in found:
                target = into / "local" / f"{len(history.paths):03d}" / Path(f).name
                _read_source(Path(f), f, target, source, history)
        else:
            matches = files.match(source)
            if not matches:
                where = f"at {ref} (sources are read from the commit: commit the log, or give an absolute path)" \
                    if ref else f"in {repo_path}"
                raise InputError(f"policyctl.toml: logs.sources: {source!r} matches no file {where}")
            for path, found_at in files.materialise(matches, raw / "sources"):
                # under into/sources/ by its path in the repository: the name a report shows
                _read_source(found_at, path, into / "sources" / path, source, history)
    if config.logs.sources:
        try:
            history.read.require_some()
        except InputError as exc:
            raise InputError(f"policyctl.toml: logs.sources: {exc.message}") from None
    if summary is not None:
        summary.merge(history.read)
    if config.logs.evidence:
        mine = files.evidence()
        for path, found_at in files.materialise(mine, into / "evidence"):
            history.add(found_at, path)
        seen = set(mine)
        for rev in evidence_refs or []:
            names = [p for p in evidence_paths(repo_path, rev) if p not in seen]
            seen.update(names)
            for path, found_at in _materialise(repo_path, rev, names, into / "evidence"):
                history.add(found_at, path)
    return history


def _read_source(found_at: Path, name: str, target: Path, origin: str, history: History) -> None:
    """One source file through its reader into Event lines at `target`; problems name it `name`."""
    read = ReadSummary()
    normalize_file(found_at, target, summary=read)
    history.read.merge(read, names={str(found_at): name})
    history.add(target, origin)


class _Files:
    """The repository's files at `ref` (read from git objects), or in the working tree when ref is None."""

    def __init__(self, root: Path, ref: str | None) -> None:
        self.root, self.ref = root, ref
        self.tree = gitrepo.tree_paths(root, ref) if ref is not None else None

    def match(self, pattern: str) -> list[str]:
        if self.tree is not None:
            return [p for p in self.tree if fnmatch.fnmatchcase(p, pattern)]
        return sorted(Path(f).relative_to(self.root).as_posix()
                      for f in glob.glob(str(self.root / pattern), recursive=True) if Path(f).is_file())

    def materialise(self, paths: list[str], into: Path) -> list[tuple[str, Path]]:
        """Each path with the file holding its content: read from the commit into `into`, or in place."""
        if self.ref is None:  # the working tree's files are read where they are
            return [(path, self.root / path) for path in paths]
        return _materialise(self.root, self.ref, paths, into)

    def evidence(self) -> list[str]:
        if self.tree is not None:
            return [p for p in self.tree if p.startswith(EVIDENCE_DIR) and p.endswith(".jsonl")]
        return sorted(p.relative_to(self.root).as_posix() for p in (self.root / EVIDENCE_DIR).glob("**/*.jsonl"))


def _materialise(repo_path: str | Path, ref: str, paths: list[str], into: Path) -> list[tuple[str, Path]]:
    """The files `paths` of commit `ref`, written under `into`: each path with its copy."""
    found = []
    for path, data in gitrepo.read_files(repo_path, ref, paths).items():
        out = into / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        found.append((path, out))
    return found


def _fetch(url: str, token_env: str | None, into: Path) -> Path:
    import httpx

    headers = {"Accept": "application/x-ndjson, application/json, text/plain"}
    if token_env:
        parts = urlsplit(url)
        if parts.scheme != "https" and (parts.hostname or "").lower() not in LOOPBACK:
            raise InputError(f"policyctl.toml: logs.sources: {url!r} is not https://, and logs.token_env is set: "
                             f"the bearer token ${token_env} would be sent in clear text; use https://")
        token = os.environ.get(token_env)
        if not token:
            raise InputError(f"policyctl.toml: logs.token_env names {token_env}, which is not set; "
                             f"export it to fetch {url}")
        headers["Authorization"] = f"Bearer {token}"
    # the URL's file name is kept after a digest of the URL: a reader knows .csv or .pb by it
    name = Path(urlsplit(url).path).name or "log"
    out = into / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
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
