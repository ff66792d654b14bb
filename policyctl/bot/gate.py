"""The merge gate of the local forge: replay what the base would become, at the current base, before merging.

`policyctl pr merge N` builds the candidate (the base branch's tip merged with the
pull request's branch, as a commit no ref points to: nothing in the working tree or
the refs moves), replays it against the base tip with the candidate's fixtures, the
log sources of its `policyctl.toml` and the evidence samples committed under
`shadow_evidence/`, and merges only when the replay passes and the head commit's
latest statuses do not fail. The bot records in the body's marker the base it verified
against; when the base has moved since, the gate says so and verifies at the new
base. It does not redraft: a draft that no longer holds on the new base is refused,
and `policyctl bot run` redrafts it (updating the same pull request).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyctl import repo as gitrepo
from policyctl.bot.forge import CommitStatus, ForgeError, latest_statuses
from policyctl.bot.local import MERGER, LocalForge
from policyctl.bot.state import read_marker
from policyctl.errors import PolicyctlError, UsageError

if TYPE_CHECKING:
    from policyctl.shadow import ShadowReport

REDRAFT = "`policyctl bot run --logs …` redrafts it on the new base and updates this pull request"
FORCE = "--force --reason TEXT merges it anyway"


class GateError(PolicyctlError):
    """The gate cannot even verify a pull request (a conflict, a candidate that does not build)."""

    code = "merge_gate_error"


@dataclass
class Verification:
    """What the gate found for one pull request: the replay of its merge at the current base."""

    number: int
    head: str
    base: str
    head_sha: str
    base_sha: str  # the base tip the replay ran against
    verified_base: str  # the base the bot verified against (from the body's marker), "" when unknown
    candidate_sha: str  # the would-be merge commit; no ref points to it
    report: ShadowReport | None  # None when the base itself does not build
    history: list[str] = field(default_factory=list)  # where the replayed logs came from
    statuses: list[CommitStatus] = field(default_factory=list)  # the head commit's latest, per context
    base_error: str = ""
    shown_as: dict[str, str] = field(default_factory=dict)  # replayed file -> the name a reader knows it by

    @property
    def moved(self) -> bool:
        """The base tip is not the commit the bot verified against."""
        return bool(self.verified_base) and not self.base_sha.startswith(self.verified_base)

    @property
    def failing_statuses(self) -> list[CommitStatus]:
        return [st for st in self.statuses if st.failing]

    @property
    def replay_passed(self) -> bool:
        return self.report is not None and self.report.exit_code == 0

    @property
    def passed(self) -> bool:
        return self.replay_passed and not self.failing_statuses

    @property
    def verdict(self) -> str:
        if self.report is None:
            return f"ERROR: {self.base_error}"
        return self.report.verdict

    def reasons(self) -> list[str]:
        """Why the gate refuses, one line each (empty when it passes)."""
        out: list[str] = []
        if self.report is None:
            out.append(self.base_error)
        else:
            for fx in self.report.to_dict().get("fixtures", []):
                if not fx.get("passed"):
                    problem = (fx.get("problems") or ["fails"])[0]
                    out.append(f"fixture {fx.get('id')} ({fx.get('file')}:{fx.get('line')}) fails: {problem}")
            if self.report.over_budget:
                t = self.report.t
                out.append(f"collateral {t['collateral']} of {t['successes']} logged successes "
                           f"({self.report.collateral_pct:.2f}%) is over the budget of "
                           f"{self.report.max_collateral_pct:g}% (policyctl.toml budgets.max_collateral_pct)")
                out += [f"  {self._where(e.where)} {e.ref}: {'; '.join(e.detail)}"
                        for e in self.report.examples("collateral")]
        for st in self.failing_statuses:
            article = "an" if st.state == "error" else "a"
            out.append(f"the head commit {self.head_sha[:12]} has {article} {st.state} status {st.context}"
                       + (f": {st.description}" if st.description else ""))
        return out

    def _where(self, where: str) -> str:
        """`file:line` with the replay's temporary copy of a file named as the repository names it."""
        file, _, line = where.rpartition(":")
        return f"{self.shown_as.get(file, file)}:{line}" if file else where

    def figures(self) -> str:
        """The replay's figures on one line: prevented, collateral, fixtures."""
        if self.report is None:
            return "no replay"
        r, t = self.report, self.report.t
        return (f"prevented {t['prevented']} of {t['failures']} logged failures ({r.prevented_pct:.1f}%), "
                f"collateral {t['collateral']} of {t['successes']} logged successes ({r.collateral_pct:.2f}%, "
                f"budget {r.max_collateral_pct:g}%), fixtures {t['fixtures_passed']} passed, "
                f"{t['fixtures_failed']} failed")

    def moved_line(self) -> str:
        return (f"{self.base} moved since verification ({self.verified_base[:12]} → {self.base_sha[:12]}): "
                "re-verifying")

    def summary(self) -> str:
        logs = f"{len(self.history)} log file(s)" if self.history else "no logs"
        return (f"replay of #{self.number} merged into {self.base} {self.base_sha[:12]} "
                f"(fixtures, {logs}): {self.verdict}; {self.figures()}")

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        t = r.t if r is not None else None
        return {
            "verdict": self.verdict, "passed": self.passed, "replay_passed": self.replay_passed,
            "base": self.base, "base_sha": self.base_sha, "verified_base": self.verified_base or None,
            "moved": self.moved, "head": self.head, "head_sha": self.head_sha, "candidate": self.candidate_sha,
            "prevented": t["prevented"] if t is not None else None,
            "failures": t["failures"] if t is not None else None,
            "prevented_pct": round(r.prevented_pct, 3) if r is not None else None,
            "collateral": t["collateral"] if t is not None else None,
            "successes": t["successes"] if t is not None else None,
            "collateral_pct": round(r.collateral_pct, 3) if r is not None else None,
            "max_collateral_pct": r.max_collateral_pct if r is not None else None,
            "fixtures": t["fixtures"] if t is not None else None,
            "fixtures_failed": t["fixtures_failed"] if t is not None else None,
            "history": self.history, "statuses": [st.to_dict() for st in self.statuses],
            "reasons": self.reasons(),
        }


@dataclass
class GateResult:
    """What `policyctl pr merge` did: the verification, and the merge when it happened."""

    verification: Verification
    record: dict[str, Any]
    merged: bool
    forced: bool = False
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return 0 if self.merged else 1

    def lines(self) -> list[str]:
        v = self.verification
        out = [v.moved_line()] if v.moved else []
        out.append(v.summary())
        for status in v.statuses:
            out.append(f"status {status.context} on {v.head_sha[:12]}: {status.state}"
                       + (f" ({status.description})" if status.description else ""))
        if self.merged:
            how = f" despite the failing check (--force: {self.reason})" if self.forced else ""
            out.append(f"merged #{v.number} ({v.head}) into {v.base}: {str(self.record['merge_commit'])[:12]}{how}")
            return out
        out.append(f"not merged: #{v.number} fails the merge gate")
        out += [f"  {line}" for line in v.reasons()]
        if v.moved and not v.replay_passed:
            out.append(f"{v.base} moved since the bot verified this draft, and it does not hold at the new base: "
                       f"{REDRAFT}; or {FORCE}")
        else:
            out.append(f"fix the branch (or run the bot again: {REDRAFT}); or {FORCE}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.record | {"merged": self.merged, "gate": self.verification.to_dict() |
                              {"forced": self.forced, "reason": self.reason or None}}


# ---------------------------------------------------------------------- verify and merge

def verify(repo: Path, number: int, *, forge: LocalForge | None = None, jobs: int | None = None) -> Verification:
    """Replay pull request `number` merged into its base's current tip; refuses nothing, reports all."""
    from policyctl.shadow import CandidateError, replay
    from policyctl.shadow.replay import build_pipeline, default_jobs
    from policyctl.shadow.sources import resolve_history

    forge = forge or LocalForge(repo)
    record = forge.record(number)
    if record.get("state") != "open":
        raise ForgeError(f"pull request #{number} is {forge.status(record)}; only an open one can be merged")
    head, base = str(record["head"]), str(record["base"])
    head_sha, base_sha = _tip(repo, head, number), _tip(repo, base, number)
    marker = read_marker(str(record.get("body", "")))
    candidate_sha = preview_merge(repo, base_sha, head_sha, what=f"#{number} ({head}) into {base}")
    base_snap, cand_snap = gitrepo.snapshot(repo, base_sha), gitrepo.snapshot(repo, candidate_sha)
    config = cand_snap.config
    statuses = latest_statuses(forge.statuses(head_sha))
    found = Verification(number=number, head=head, base=base, head_sha=head_sha, base_sha=base_sha,
                         verified_base=marker.base if marker else "", candidate_sha=candidate_sha, report=None,
                         statuses=statuses)
    with tempfile.TemporaryDirectory(prefix="policyctl-gate-") as tmp:
        history = resolve_history(repo, candidate_sha, config, into=Path(tmp), evidence_refs=[head_sha])
        found.history = [history.origins.get(str(p), str(p)) for p in history.paths]
        found.shown_as = {str(p): _shown_as(p, Path(tmp), history.origins) for p in history.paths}
        try:
            found.report = replay(base_snap, cand_snap, history.paths, fixtures=True,
                                  jobs=jobs or (default_jobs() if history.paths else 1),
                                  max_collateral_pct=config.budgets.max_collateral_pct)
            # what the readers could not use in the sources is part of the report, as in `policyctl shadow`
            found.report.add_unread(sum(history.read.skipped.values()), history.read.problems)
        except CandidateError as exc:
            try:  # which side: a broken base must not keep its own fix out, a broken merge must not get in
                build_pipeline(cand_snap, "candidate")
            except CandidateError as broken:
                raise GateError(f"#{number} merged into {base} would not build, so it cannot be merged "
                                f"(not even with --force): {broken.message}") from broken
            found.base_error = (f"{base} ({base_sha[:12]}) itself does not build, so there is nothing to compare "
                                f"with: {exc.message}")
    return found


def merge_pull_request(repo: Path, number: int, *, author: tuple[str, str] | None = None, force: bool = False,
                       reason: str = "", jobs: int | None = None, forge: LocalForge | None = None) -> GateResult:
    """Verify pull request `number` at the current base and merge it when it passes (or when forced).

    `force` needs a `reason`; both, and the failing verdict, go into the merge commit's message.
    """
    reason = " ".join(reason.split())
    if force and not reason:
        raise UsageError("--force needs --reason TEXT: say why the pull request is merged despite its check")
    if reason and not force:
        raise UsageError("--reason goes with --force (to close with a reason: `policyctl pr close N --reason`)")
    forge = forge or LocalForge(repo)
    found = verify(repo, number, forge=forge, jobs=jobs)
    record = forge.record(number)
    if not found.passed and not force:
        return GateResult(found, record, merged=False)
    # nothing may move between the replay and the merge: what was verified is what is merged
    if _tip(repo, found.base, number) != found.base_sha or _tip(repo, found.head, number) != found.head_sha:
        raise GateError(f"{found.base} or {found.head} moved while #{number} was being verified; run "
                        f"`policyctl pr merge {number}` again")
    who = author or gitrepo.user_identity(repo) or MERGER
    notes = merge_notes(found, forced=force and not found.passed, reason=reason, who=who)
    check = found.to_dict() | {"forced": force and not found.passed, "reason": reason or None}
    merged = forge.merge(number, author=who, notes=notes, check=check, expected=found.base_sha)
    return GateResult(found, merged, merged=True, forced=force and not found.passed, reason=reason)


def merge_notes(found: Verification, *, forced: bool, reason: str, who: tuple[str, str]) -> str:
    """The lines the merge commit's message records about the gate."""
    lines = [f"policyctl shadow at {found.base} {found.base_sha[:12]}: {found.verdict}"]
    if found.report is not None:
        r, t = found.report, found.report.t
        lines += [f"prevented: {t['prevented']} of {t['failures']} logged failures ({r.prevented_pct:.1f}%)",
                  f"collateral: {t['collateral']} of {t['successes']} logged successes ({r.collateral_pct:.2f}%, "
                  f"budget {r.max_collateral_pct:g}%)",
                  f"fixtures: {t['fixtures_passed']} passed, {t['fixtures_failed']} failed"]
    lines.append("history: " + (", ".join(sorted(set(found.history))) or "none (fixtures only)"))
    if found.moved:
        lines.append(f"verified by the bot at {found.verified_base[:12]}; {found.base} moved to "
                     f"{found.base_sha[:12]} and the merge was verified there again")
    if forced:
        lines.append(f"forced by {who[0]} <{who[1]}> despite the failing check: {reason}")
        lines += [f"  {line.strip()}" for line in found.reasons()]
    elif reason:
        lines.append(f"forced by {who[0]} <{who[1]}> (the check passed): {reason}")
    return "\n".join(lines)


def _shown_as(path: Path, tmp: Path, origins: dict[str, str]) -> str:
    """A file read from the commit is shown by its path in the repository, a fetched one by its URL."""
    for part in ("evidence", "sources"):
        if path.is_relative_to(tmp / part):
            return str(path.relative_to(tmp / part))
    return origins.get(str(path), str(path))


def _tip(repo: Path, branch: str, number: int) -> str:
    sha = gitrepo.branch_tip(repo, branch)
    if sha is None:
        raise ForgeError(f"pull request #{number}: no branch {branch!r} in {repo}; restore it or close the "
                         "pull request")
    return sha


# ---------------------------------------------------------------------- diff

def diff_pull_request(repo: Path, number: int, *, stat: bool = False, color: bool = False,
                      forge: LocalForge | None = None) -> str:
    """The diff a pull request makes to its base: for an open one, the base tip against the merge the
    gate would verify; for a merged one, its merge commit against the base before it; for a closed
    one, its branch since it left the base."""
    forge = forge or LocalForge(repo)
    record = forge.record(number)
    head, base = str(record["head"]), str(record["base"])
    if record.get("merged") and record.get("merge_commit"):
        merge = str(record["merge_commit"])
        old, new = f"{merge}^1", merge
    else:
        head_sha = _tip(repo, head, number)
        base_sha = _tip(repo, base, number)
        old, new = base_sha, head_sha
        if record.get("state") == "open":
            try:
                new = preview_merge(repo, base_sha, head_sha, what=f"#{number} ({head}) into {base}")
            except GateError:
                old = f"{base_sha}...{head_sha}"  # a conflict: show the branch's own changes
                new = ""
        else:
            old, new = f"{base_sha}...{head_sha}", ""
    return gitrepo.diff(repo, old, new or None, stat=stat, color=color)


def preview_merge(repo: Path, base_sha: str, head_sha: str, *, what: str) -> str:
    """A merge commit of `head_sha` into `base_sha` that no ref points to: what the base would become."""
    try:
        return gitrepo.preview_merge(repo, base_sha, head_sha, f"policyctl merge gate: {what} (candidate, on no branch)",
                                     author=MERGER)
    except gitrepo.MergeConflict as exc:
        raise GateError(f"cannot merge {what}: conflicts in {', '.join(exc.files) or 'some files'}; update the "
                        f"branch (`policyctl bot run` redrafts a bot branch on the current base)") from exc
