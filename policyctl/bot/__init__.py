"""The bot: from exported logs to one reviewable pull request per systemic failure, deduplicated.

`run_bot` clusters the logs, skips the clusters the base branch already prevents and
those a reviewer closed (until they double), drafts and verifies a rule for the rest,
then per cluster keeps exactly one branch `policyctl/<fingerprint>` (the base plus one
commit by the bot identity) and one pull request on a Forge. It is idempotent: the
drafted files are compared with the branch tip's, so the same logs push nothing and
edit nothing; newer logs replace the bot's commit and refresh the body. A branch with
a commit by anyone else is never overwritten: the bot says so in a comment, once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyctl import repo as gitrepo
from policyctl.bot.forge import (
    BRANCH_PREFIX,
    FORGES,
    Forge,
    ForgeConfig,
    ForgeError,
    PullRequest,
    make_forge,
)
from policyctl.draft import Drafter
from policyctl.errors import UsageError
from policyctl.model.cluster import Cluster

if TYPE_CHECKING:
    from policyctl.model.shadow import ShadowReport

__all__ = ["BRANCH_PREFIX", "DEFAULT_AUTHOR", "FORGES", "BotRun", "ClusterAction", "Forge", "ForgeConfig",
           "ForgeError", "PullRequest", "make_forge", "parse_identity", "run_bot"]

DEFAULT_AUTHOR = "policyctl-bot <bot@policyctl.local>"
PREVENTED_SHARE = 0.95  # base already decides differently for this share of a cluster's failures: nothing to do
Progress = Callable[[str], None]

# what happened to one cluster; `dry_run` turns the first four into "would …"
CHANGING = ("opened", "updated", "refreshed", "commented")
OUTCOMES = (*CHANGING, "unchanged", "person-pushed", "capped", "ignored", "already-prevented", "not-drafted",
            "not-verified")


@dataclass
class ClusterAction:
    """What the bot did (or, dry, would do) for one systemic cluster, and why."""

    fingerprint: str
    title: str
    size: int
    outcome: str
    detail: str = ""
    branch: str | None = None
    pr: int | None = None
    url: str = ""
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "title": self.title, "size": self.size, "outcome": self.outcome,
                "detail": self.detail, "branch": self.branch, "pr": self.pr, "url": self.url, "commit": self.commit}


@dataclass
class BotRun:
    """One run of the bot: an action per systemic cluster."""

    provider: str
    base: str
    base_sha: str
    dry_run: bool
    actions: list[ClusterAction] = field(default_factory=list)
    failures: int = 0

    @property
    def counts(self) -> Counter[str]:
        return Counter(a.outcome for a in self.actions)

    @property
    def changed(self) -> bool:
        return any(a.outcome in CHANGING for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "base": self.base, "base_sha": self.base_sha, "dry_run": self.dry_run,
                "failures": self.failures, "systemic_clusters": len(self.actions),
                "counts": dict(sorted(self.counts.items())), "actions": [a.to_dict() for a in self.actions]}

    def render(self) -> str:
        verb = {"opened": "would open", "updated": "would update", "refreshed": "would refresh",
                "commented": "would comment"} if self.dry_run else {}
        lines = []
        for a in self.actions:
            where = f" #{a.pr}" if a.pr else ""
            branch = f" {a.branch}" if a.branch and a.outcome in (*CHANGING, "unchanged", "person-pushed") else ""
            lines.append(f"{verb.get(a.outcome, a.outcome):>17}{where}{branch}  {a.title} ({a.size} failures)"
                         + (f"\n{'':>19}{a.detail}" if a.detail else ""))
        counts = ", ".join(f"{n} {(verb.get(k, k))}" for k, n in sorted(self.counts.items()))
        head = (f"{'dry run: ' if self.dry_run else ''}{len(self.actions)} systemic clusters in {self.failures} "
                f"failures; base {self.base} {self.base_sha[:12]} on the {self.provider} forge"
                + (f": {counts}" if counts else ""))
        return "\n".join([head, *lines]) + "\n"


def parse_identity(text: str) -> tuple[str, str]:
    """("Name", "email") from `Name <email>`."""
    m = re.fullmatch(r"\s*([^<>]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*", text or "")
    if not m:
        raise UsageError(f"--author {text!r}: expected `Name <email>`, e.g. {DEFAULT_AUTHOR!r}")
    return m.group(1), m.group(2)


def _cluster_events(clusters: list[Cluster], logs: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Each cluster's member events, read once from the logs."""
    from policyctl.model.jsonl import ReadStats, read_jsonl

    owner = {m: c.fingerprint for c in clusters for m in c.members}
    out: dict[str, list[dict[str, Any]]] = {c.fingerprint: [] for c in clusters}
    stats = ReadStats()
    for path in logs:
        for _, record in read_jsonl(path, stats=stats):
            if isinstance(record, dict) and isinstance(record.get("input"), dict):
                fp = owner.get(str(record.get("id")))
                if fp is not None:
                    out[fp].append(record)
    return out


def _already_prevented(pipeline: Any, events: list[dict[str, Any]]) -> tuple[int, int]:
    """(failures base now decides differently from the logged decision, failures with a logged decision)."""
    from policyctl.shadow.replay import decide, signature

    differ = total = 0
    for e in events:
        logged = e.get("decision")
        if not isinstance(logged, dict):
            continue
        with_params = "params" in logged
        total += 1
        differ += signature(decide(pipeline, e["input"]), with_params) != signature(logged, with_params)
    return differ, total


def _fixture_bytes(d: Any) -> bytes:
    return "".join(json.dumps(f, sort_keys=True) + "\n" for f in d.fixtures).encode()


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n"))


def _commit_message(d: Any, cluster: Cluster, base: str, base_sha: str, evidence: str) -> str:
    from policyctl.bot.body import commit_subject, plain_words
    from policyctl.redact import redact_text

    params = f" {json.dumps(d.remedy.params, sort_keys=True)}" if d.remedy.params else ""
    return redact_text(
        f"{commit_subject(d)}\n\n{plain_words(d)}\n{d.remedy.action}{params}: {d.remedy.why}\n\n"
        f"Cluster {d.fingerprint}: {cluster.size} failures. Adds {d.module_path}, "
        f"{d.fixtures_path} ({len(d.fixtures)} fixtures) and the masked evidence sample {evidence}.\n"
        f"Drafted by the policyctl bot ({d.drafter}), verified against {base} {base_sha[:12]}.\n")


def run_bot(repo: Path, logs: Sequence[Path], *, forge: Forge, base: str = "main", author: str = DEFAULT_AUTHOR,
            max_prs: int | None = None, dry_run: bool = False, embedder: str = "minilm", drafter: str | Drafter = "induce",
            labels: Sequence[str] = ("policyctl",), jobs: int = 1, min_size: int = 5,
            progress: Progress | None = None, report_dir: Path | None = None) -> BotRun:
    """Cluster `logs`, draft and verify, and keep one branch and pull request per systemic cluster on `forge`.

    With `report_dir`, the clusters it computed are written there too (clusters.json and
    clusters.html), so a caller who wants the report does not cluster the logs again.
    """
    from policyctl.bot.body import BodyContext, pick_samples, render_body, title_for
    from policyctl.bot.evidence import evidence_path, sample_evidence
    from policyctl.bot.state import commented_on, human_marker, ignored_because, inputs_digest
    from policyctl.cluster import cluster_logs
    from policyctl.draft import DraftRun, run_drafts
    from policyctl.draft.verify import candidate_snapshot
    from policyctl.shadow import replay
    from policyctl.shadow.replay import build_pipeline

    say = progress or (lambda _: None)
    identity = parse_identity(author)
    logs = [Path(p) for p in logs]
    if max_prs is not None and max_prs < 0:
        raise UsageError("--max-prs must be 0 or more")
    base_ref = forge.base_ref(base)
    base_snap = gitrepo.snapshot(repo, base_ref)
    base_sha = str(base_snap.revision)
    say(f"[1/4] clustering {len(logs)} log file(s) ({embedder})")
    clusters, points = cluster_logs(logs, embedder=embedder, min_size=min_size)
    if report_dir is not None:
        from policyctl.cluster.report import dumps, find_merges, render_html

        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "clusters.json").write_text(dumps(clusters))
        # the rules on the base that answer a cluster are marked on its timeline when they were merged
        (report_dir / "clusters.html").write_text(render_html(clusters, points, find_merges(repo, base_ref, base_snap)))
    result = BotRun(provider=forge.name, base=base, base_sha=base_sha, dry_run=dry_run,
                    failures=clusters.totals.failures)
    systemic = sorted(clusters.systemic, key=lambda c: (-c.size, c.fingerprint))
    if not systemic:
        return result
    events = _cluster_events(systemic, logs)
    base_pipeline = build_pipeline(base_snap, "base")
    digest = inputs_digest(logs, base_sha=base_sha, options={
        "embedder": embedder, "drafter": getattr(drafter, "name", drafter), "min_size": min_size, "author": identity, "provider": forge.name})

    actions: dict[str, ClusterAction] = {}
    prs: dict[str, PullRequest | None] = {}
    to_draft: list[str] = []
    for c in systemic:
        fp, branch = c.fingerprint, f"{BRANCH_PREFIX}{c.fingerprint}"
        act = actions[fp] = ClusterAction(fp, c.title or fp, c.size, "", branch=branch)
        differ, total = _already_prevented(base_pipeline, events[fp])
        if total and differ / total >= PREVENTED_SHARE:
            act.outcome = "already-prevented"
            act.detail = f"{base} already decides differently for {differ} of {total} of these failures"
            continue
        pr = prs[fp] = forge.find_pr(branch)
        if pr is not None:
            act.pr, act.url = pr.number, pr.url
        reason = ignored_because(pr, act.size)
        if reason:
            act.outcome, act.detail = "ignored", reason
            continue
        settled = _settled(repo, forge, pr, branch, base_ref, identity[1], digest) if pr and pr.is_open else None
        if settled:
            act.outcome, act.detail = settled
            continue
        to_draft.append(fp)

    run = DraftRun()
    if to_draft:
        say(f"[2/4] {len(systemic)} systemic clusters, {len(systemic) - len(to_draft)} settled; "
            f"drafting {len(to_draft)}")
        run = run_drafts(clusters, logs, base_snap, drafter=drafter, only=to_draft,
                         progress=lambda fp: say(f"      drafting {fp}"))
    for s in run.skipped:
        actions[s["fingerprint"]].outcome = "not-drafted"
        actions[s["fingerprint"]].detail = str(s.get("reason", ""))
    drafts = {d.fingerprint: d for d in run.drafts}
    open_count = len(forge.open_bot_prs()) if to_draft else 0

    for c in systemic:
        fp = c.fingerprint
        act = actions[fp]
        d = drafts.get(fp)
        if act.outcome or d is None:
            if not act.outcome:
                act.outcome, act.detail = "not-drafted", "no draft"
            continue
        branch = str(act.branch)
        pr = prs.get(fp)
        existing = pr if pr is not None and pr.is_open else None
        if not d.verified:
            act.outcome, act.detail = "not-verified", "; ".join(d.reasons)
            if existing is not None:
                act.detail += _mark_if_failing(repo, forge, existing, branch, base, base_ref, base_snap, dry_run)
            continue
        if existing is None and max_prs is not None and open_count >= max_prs:
            act.outcome = "capped"
            act.detail = f"{open_count} bot pull requests are open already (--max-prs {max_prs})"
            continue
        ev = run.evidence.get(fp)
        evidence_file = evidence_path(fp)
        files = {d.module_path: d.module_text.encode(), d.fixtures_path: _fixture_bytes(d),
                 evidence_file: sample_evidence(d, events[fp], ev.ok if ev else [])}
        tip = forge.branch_tip(branch)
        same = False
        if tip is not None:
            commits = gitrepo.branch_commits(repo, base_ref, tip)
            others = [ci for ci in commits if ci.author_email.lower() != identity[1].lower()]
            if others:
                act.outcome = "person-pushed"
                who = ", ".join(sorted({f"{ci.author_name} <{ci.author_email}>" for ci in others}))
                act.detail = f"{branch} has {len(others)} commit(s) by {who}; not overwriting them"
                differs = [p for p, data in files.items() if gitrepo.read_file(repo, tip, p) != data]
                if differs and existing is not None and not commented_on(forge.comments(existing.number), tip):
                    act.outcome = "commented"
                    if not dry_run:
                        forge.comment(existing.number, _person_comment(others, tip, branch, act.size, differs,
                                                                       human_marker(tip)))
                continue
            # the bot's own branch: one commit on a base; same files there means nothing to push
            same = len(commits) == 1 and gitrepo.commit_changes(repo, tip) == files
        # The candidate is the base plus these files: replayed as `policyctl shadow --base BASE
        # --candidate BRANCH` will replay the branch (its evidence is the base's plus this one).
        candidate = candidate_snapshot(base_snap, [d])
        budget = base_snap.config.budgets.max_collateral_pct
        say(f"[3/4] replaying {fp}: the whole input logs through {base} and the draft")
        full = replay(base_snap, candidate, logs, jobs=jobs, max_collateral_pct=budget)
        say(f"[3/4] replaying {fp}: fixtures, configured sources and evidence, as CI will")
        report = ci_replay(repo, base_ref, base_snap, candidate, evidence_file, files[evidence_file])
        if full.exit_code or report.exit_code:
            which = full if full.exit_code else report
            act.outcome = "not-verified"
            act.detail = (f"its replay fails ({'the input logs' if which is full else 'fixtures and evidence'}): "
                          f"{which.verdict}; not opened")
            if existing is not None:
                act.detail += _mark_if_failing(repo, forge, existing, branch, base, base_ref, base_snap, dry_run)
            continue
        ctx = BodyContext(size=act.size, failures_in_logs=result.failures, samples=pick_samples(events[fp]),
                          report=report, base=base, base_sha=base_sha, branch=branch, logs=[str(p) for p in logs],
                          embedder=embedder, provider=forge.name, inputs=digest,
                          full_verdict=full.verdict, full_events=full.t["events"], evidence_path=evidence_file,
                          contrast=clusters.contrast)
        body, title = render_body(d, ctx), title_for(d)
        if same:
            act.commit = tip
        elif not dry_run:
            act.commit = gitrepo.commit_files(repo, base_ref, files,
                                              _commit_message(d, c, base, base_sha, evidence_file), author=identity)
            forge.push_branch(branch, act.commit, expected=tip)
        if act.commit and not dry_run:
            forge.set_status(act.commit, state="success", description=f"policyctl shadow: {report.verdict}; "
                             f"{report.t['prevented']} prevented, collateral {report.collateral_pct:.2f}%"[:140])
        if existing is not None:
            edited = _norm(existing.body) != _norm(body) or existing.title != title
            if edited and not dry_run:
                forge.update_pr(existing.number, title=title, body=body)
            act.outcome = "updated" if not same else "refreshed" if edited else "unchanged"
            act.detail = {"updated": "new commit and body", "refreshed": "same files; body refreshed",
                          "unchanged": "same files and body"}[act.outcome]
            continue
        if not dry_run:
            new = forge.create_pr(head=branch, base=base, title=title, body=body)
            if labels:
                forge.add_labels(new.number, list(labels))
            act.pr, act.url = new.number, new.url
        act.outcome = "opened"
        act.detail = (f"after #{pr.number}, {'merged' if pr.merged else 'closed'}" if pr is not None else
                      f"{d.remedy.action}: {' or '.join(d.conditions_in_words())}")[:300]
        open_count += 1
    result.actions = [actions[c.fingerprint] for c in systemic]
    say(f"[4/4] done: {', '.join(f'{n} {k}' for k, n in sorted(result.counts.items()))}")
    return result


def ci_replay(repo: Path, base_ref: str, base_snap: gitrepo.Snapshot, candidate: gitrepo.Snapshot,
              evidence_file: str, evidence: bytes) -> ShadowReport:
    """The replay CI runs on a bot branch: its fixtures, the configured log sources and the evidence
    samples of the base, this branch's evidence in place of any older copy of it."""
    import tempfile

    from policyctl.shadow import replay
    from policyctl.shadow.sources import resolve_history

    with tempfile.TemporaryDirectory(prefix="policyctl-history-") as tmp:
        history = resolve_history(repo, base_ref, base_snap.config, into=Path(tmp))
        mine = Path(tmp) / "evidence" / evidence_file
        mine.parent.mkdir(parents=True, exist_ok=True)
        mine.write_bytes(evidence)
        paths = [p for p in history.paths if history.origins.get(str(p)) != evidence_file] + [mine]
        report = replay(base_snap, candidate, sorted(paths), jobs=1,
                        max_collateral_pct=base_snap.config.budgets.max_collateral_pct)
        report.add_unread(sum(history.read.skipped.values()), history.read.problems)  # as CI's shadow step
        return report


STALE = re.compile(r"<!-- policyctl:stale tip=(?P<sha>[0-9a-f]{40}) -->")


def _mark_if_failing(repo: Path, forge: Forge, pr: PullRequest, branch: str, base: str, base_ref: str,
                     base_snap: gitrepo.Snapshot, dry_run: bool) -> str:
    """An open bot pull request whose fresh draft failed: replay what its branch holds now, on the
    current base, as CI would. When that fails too, its `policyctl/shadow` check turns failure (a
    success set earlier must not stand) and the pull request is told why, once per tip. Returns
    what to add to the action's detail."""
    from policyctl.bot.evidence import evidence_path

    tip = forge.branch_tip(branch)
    if tip is None:
        return ""
    changed = gitrepo.commit_changes(repo, tip)
    files = dict(base_snap.files)
    for path, data in changed.items():
        if data is None:
            files.pop(path, None)
        else:
            files[path] = data
    candidate = gitrepo.Snapshot(revision=None, files=files, blob_ids={}, root=base_snap.root)
    evidence_file = evidence_path(branch.removeprefix(BRANCH_PREFIX))
    report = ci_replay(repo, base_ref, base_snap, candidate, evidence_file, changed.get(evidence_file) or b"")
    if not report.exit_code:
        return f"; #{pr.number} as it stands still passes its replay on {base}"
    why = f"FAIL on {base} at {str(base_snap.revision)[:12]}: {report.verdict}"
    if not dry_run:
        forge.set_status(tip, state="failure", description=f"policyctl shadow: {why}"[:140])
        if not any(m.group("sha") == tip for c in forge.comments(pr.number) for m in STALE.finditer(c)):
            forge.comment(pr.number, f"<!-- policyctl:stale tip={tip} -->\n"
                          f"This branch no longer passes its shadow replay on `{base}` "
                          f"({str(base_snap.revision)[:12]}): {report.verdict}. The `policyctl/shadow` check is "
                          "now failure; do not merge it as it is. The bot could not draft a remedy that verifies "
                          "for this cluster on the current base and logs; see the bot run's output.")
    return f"; #{pr.number} replayed at its tip fails too: its check is now failure"


def _settled(repo: Path, forge: Forge, pr: PullRequest, branch: str, base_ref: str, email: str,
             digest: str) -> tuple[str, str] | None:
    """(outcome, detail) when an open pull request needs no new draft, else None.

    `unchanged`: its body records exactly these inputs and the branch is still the bot's
    single commit, so drafting again would give the same files and body. `person-pushed`:
    someone else's commits are on the branch and the bot has already said so for this tip.
    """
    from policyctl.bot.state import commented_on, read_marker

    tip = forge.branch_tip(branch)
    if tip is None:
        return None
    commits = gitrepo.branch_commits(repo, base_ref, tip)
    if any(c.author_email.lower() != email.lower() for c in commits):
        if commented_on(forge.comments(pr.number), tip):
            return "person-pushed", f"{branch} has commits by someone else; the bot commented on #{pr.number} already"
        return None
    marker = read_marker(pr.body)
    if marker is not None and marker.inputs == digest and len(commits) == 1:
        return "unchanged", "same logs, base and options as the pull request's last update"
    return None


def _person_comment(others: list[Any], tip: str, branch: str, size: int, differs: list[str], marker: str) -> str:
    lines = [marker,
             f"This branch has commits the policyctl bot did not write, so it will not push over them "
             f"(tip `{tip[:12]}`):", ""]
    lines += [f"- `{ci.sha[:12]}` {ci.summary} ({ci.author_name})" for ci in others[:10]]
    lines += ["", f"The cluster now has {size} failures and the bot's latest draft differs from this branch in "
                  f"{', '.join(f'`{p}`' for p in differs)}. "
                  f"To let the bot take over again, delete `{branch}` (or reset it to the bot's commit); "
                  "otherwise this pull request is yours to finish. The bot comments again only when the "
                  "branch moves."]
    return "\n".join(lines)
