"""The draft report: draft.json for tools, DRAFTS.md for the reviewer."""

from __future__ import annotations

from typing import Any

from policyctl.draft import DraftRun
from policyctl.model.draft import Draft


def summary_markdown(d: Draft) -> str:
    v = d.verification
    hold = v.get("holdout") or {}
    col = v.get("collateral") or {}
    lines = [f"### {'✅' if d.verified else '❌'} `{d.name}`: {d.title}", "",
             f"- cluster `{d.fingerprint}`: {d.cluster.size} {d.cluster.status} events, "
             f"{(d.cluster.first_seen or '?')[:19]} to {(d.cluster.last_seen or '?')[:19]}",
             "- when: " + " **or** ".join(d.conditions_in_words()),
             f"- remedy: **{d.remedy.action}** {d.remedy.params or ''}: {d.remedy.why}"]
    if v.get("compiled"):
        lines += [f"- held-out failures (latest by time) prevented: {hold.get('prevented')}/{hold.get('events')} "
                  f"({hold.get('prevented_pct')}%)",
                  f"- collateral: {col.get('changed')} of {col.get('ok_events')} ok events changed "
                  f"({col.get('collateral_pct')}%); {col.get('in_region_changed')} lucky successes inside the "
                  f"failure's region changed by design",
                  f"- fixtures: {len(d.fixtures)} added ({sum(1 for f in d.fixtures if f['why'] == 'prevent')} prevent, "
                  f"{sum(1 for f in d.fixtures if f['why'] == 'keep')} keep); all {v.get('fixtures', {}).get('total')} pass"]
    if d.reasons:
        lines += ["- **rejected**: " + "; ".join(d.reasons)]
    lines += ["", "```rego", d.module_text.rstrip(), "```", ""]
    return "\n".join(lines)


def run_markdown(run: DraftRun) -> str:
    out = [f"# Drafts: {len(run.verified)} verified, {len(run.drafts) - len(run.verified)} rejected, "
           f"{len(run.skipped)} clusters skipped", ""]
    for d in run.drafts:
        out.append(summary_markdown(d))
    for s in run.skipped:
        out.append(f"- skipped `{s['fingerprint']}`: {s['reason']}")
    return "\n".join(out) + "\n"


def table_rows(run: DraftRun) -> list[list[Any]]:
    rows = []
    for d in run.drafts:
        v = d.verification
        rows.append([d.name, d.remedy.action, "yes" if d.verified else "NO",
                     f"{(v.get('holdout') or {}).get('prevented_pct')}%", f"{(v.get('collateral') or {}).get('collateral_pct')}%",
                     "; ".join(d.reasons)[:60]])
    for s in run.skipped:
        rows.append([s["fingerprint"], "-", "skipped", "", "", s["reason"][:60]])
    return rows
