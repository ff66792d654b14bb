"""Drafting: from a failure cluster to a verified Rego rule module and its regression fixtures.

Drafters sit behind one protocol in a registry: `induce` (offline, deterministic, the
default) and `anthropic` (Claude through the anthropic SDK). Whatever drafts it, a rule
is verified the same way before it is written: it compiles with the policy set, every
fixture passes, it prevents the held-out failures and leaves ok traffic alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policyctl.decide import Pipeline, build_revision
from policyctl.draft.data import Evidence, load_evidence
from policyctl.errors import PolicyctlError
from policyctl.model.cluster import ClusterReport
from policyctl.model.draft import Draft
from policyctl.repo import Snapshot


class Drafter(Protocol):
    name: str

    def draft(self, ev: Evidence, *, base: Pipeline, base_snapshot: Snapshot, taken: set[str]) -> Draft | str:
        """A draft for one cluster (already verified), or the reason there is none."""
        ...


class InduceDrafter:
    name = "induce"

    def draft(self, ev: Evidence, *, base: Pipeline, base_snapshot: Snapshot, taken: set[str]) -> Draft | str:
        """The learned draft if it verifies; otherwise the best verified of narrower and wider candidates.

        Every candidate tried is recorded in the chosen draft's `attempts`, with why it lost,
        so the pull request shows the search and not only its result.
        """
        from policyctl.draft.induce import alternatives, learn, make_draft
        from policyctl.draft.verify import make_fixtures, verify

        learned = learn(ev)
        if isinstance(learned, str):
            return learned
        vocabulary = base_snapshot.config.vocabulary

        def attempt(label: str, bodies: Any) -> Draft:
            d = make_draft(ev, bodies, taken=taken, vocabulary=vocabulary, label=label)
            d.fixtures = make_fixtures(d, ev, base)
            return verify(d, ev, base_snapshot, base)

        first = attempt("learned", learned)
        tried = [first]
        if not first.verified:
            for label, bodies in alternatives(ev, learned):
                tried.append(attempt(label, bodies))
        verified = [d for d in tried if d.verified]
        best = max(verified, key=_merit) if verified else first
        best.attempts = [_attempt_record(d, chosen=d is best) for d in tried]
        return best


def _merit(d: Draft) -> tuple[float, float, int]:
    """Verified drafts compare by held-out failures prevented, then collateral, then fewer conditions."""
    v = d.verification
    return (float((v.get("holdout") or {}).get("prevented_pct") or 0.0),
            -float((v.get("collateral") or {}).get("collateral_pct") or 0.0),
            -sum(len(b) for b in d.bodies))


def _attempt_record(d: Draft, *, chosen: bool) -> dict[str, Any]:
    v = d.verification
    return {"candidate": (d.attempts[0] if d.attempts else {}).get("candidate", "learned"),
            "conditions": d.conditions_in_words(), "remedy": d.remedy.action, "verified": d.verified,
            "chosen": chosen, "reasons": list(d.reasons),
            "holdout_prevented_pct": (v.get("holdout") or {}).get("prevented_pct"),
            "collateral_pct": (v.get("collateral") or {}).get("collateral_pct")}


def _anthropic() -> Drafter:
    from policyctl.draft.llm import AnthropicDrafter

    return AnthropicDrafter()


DRAFTERS: dict[str, Callable[[], Drafter]] = {"induce": InduceDrafter, "anthropic": _anthropic}


@dataclass
class DraftRun:
    drafts: list[Draft] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    read: dict[str, Any] = field(default_factory=dict)
    # the evidence each cluster was drafted from, by fingerprint (the bot samples it for the PR)
    evidence: dict[str, Evidence] = field(default_factory=dict)

    @property
    def verified(self) -> list[Draft]:
        return [d for d in self.drafts if d.verified]

    def to_dict(self) -> dict[str, Any]:
        return {"drafts": [d.to_dict() for d in self.drafts], "skipped": self.skipped, "read": self.read,
                "verified": len(self.verified), "rejected": len(self.drafts) - len(self.verified)}


def run_drafts(report: ClusterReport, logs: list[Path], base_snapshot: Snapshot, *,
               drafter: str | Drafter = "induce", only: list[str] | None = None,
               progress: Callable[[str], None] | None = None) -> DraftRun:
    """Draft every systemic cluster of `report` (or those named in `only`) against the base policy set."""
    clusters = report.systemic
    if only:
        unknown = set(only) - {c.fingerprint for c in clusters}
        if unknown:
            raise PolicyctlError(f"no systemic cluster with fingerprint {', '.join(sorted(unknown))} in the clusters file")
        clusters = [c for c in clusters if c.fingerprint in only]
    impl = DRAFTERS[drafter]() if isinstance(drafter, str) else drafter
    base = build_revision(base_snapshot, verify=False).pipeline
    evidence, stats = load_evidence(clusters, logs)
    run = DraftRun(read={"lines": stats.lines, "kept": stats.kept, "rejected": stats.rejected,
                         "problems": [p.to_dict() for p in stats.problems[:20]]})
    taken = {m.name for m in base.policies.rule_modules}
    for ev in evidence:
        run.evidence[ev.cluster.fingerprint] = ev
        if progress:
            progress(ev.cluster.fingerprint)
        if not ev.failures:
            run.skipped.append({"fingerprint": ev.cluster.fingerprint, "reason": "none of its events are in these logs"})
            continue
        try:
            result = impl.draft(ev, base=base, base_snapshot=base_snapshot, taken=taken)
        except PolicyctlError as exc:  # one cluster's failure (an API error) must not lose the others' drafts
            result = f"{exc.code}: {exc.message}"
        if isinstance(result, str):
            run.skipped.append({"fingerprint": ev.cluster.fingerprint, "title": ev.cluster.title, "reason": result})
            continue
        taken.add(result.name)
        run.drafts.append(result)
    reconcile(run.verified, base_snapshot)
    close = getattr(impl, "close", None)
    if callable(close) and isinstance(drafter, str):
        close()
    return run


def reconcile(drafts: list[Draft], base_snapshot: Snapshot) -> None:
    """Make the verified drafts of one run hold together as well as alone.

    Each draft is verified against the base alone, but they are merged one after another:
    a `keep` fixture of one rule (a near miss that worked) may lie in another rule's
    failure region, and a `prevent` fixture may be decided by a sibling that wins by
    precedence (deny over route). Such a fixture says nothing true about the merged policy
    set, so it is dropped from its draft (and counted); a draft left with no `prevent`
    fixture is no longer verified. The fixtures that remain pass alone and together.
    """
    from policyctl.decide import run_fixture
    from policyctl.draft.verify import candidate_snapshot
    from policyctl.model.records import Fixture

    if len(drafts) < 2:
        return
    try:
        together = build_revision(candidate_snapshot(base_snapshot, drafts), verify=False).pipeline
    except PolicyctlError as exc:  # two modules that do not compile together: say so on each
        for d in drafts:
            d.verified = False
            d.reasons = [f"does not build beside the other drafts of this run: {exc.message}"]
        return
    for d in drafts:
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for i, f in enumerate(d.fixtures):
            fx = Fixture.from_dict(f, file=d.fixtures_path, line=i + 1)
            (kept if run_fixture(together, fx).passed else dropped).append(f)
        if not dropped:
            continue
        d.fixtures = kept
        d.verification.setdefault("fixtures", {})["dropped_for_siblings"] = [f["id"] for f in dropped]
        if not any(f.get("why") == "prevent" for f in kept):
            d.verified = False
            d.reasons = [f"every prevent fixture is decided otherwise by another draft of this run "
                         f"({', '.join(f['id'] for f in dropped[:3])})"]


def write_drafts(drafts: list[Draft], root: Path) -> list[Path]:
    written = []
    for d in drafts:
        for rel, text in ((d.module_path, d.module_text),
                          (d.fixtures_path, "".join(json.dumps(f, sort_keys=True) + "\n" for f in d.fixtures))):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written
