"""The pull request body: what a reviewer needs to decide without opening the logs, secrets masked.

Every field of the body (sample messages and codes, templates, the remedy's params and
reasons, the rule's conditions, the Rego text, fixtures and the inputs in the shadow
report's examples) goes through `policyctl.redact`, field by field where a field is cut
short (so a secret is masked before the cut can hide its shape), and the whole body once
more before it is returned: tokens, passwords, keys, email and IP addresses never reach a
pull request. Only the cluster marker is left as it is: the bot reads it back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from policyctl.bot.state import GROWTH, Marker
from policyctl.engine.modules import decision_conditions
from policyctl.model.cluster import compared_with
from policyctl.model.config import route_fields
from policyctl.model.draft import Draft
from policyctl.model.shadow import ShadowReport
from policyctl.model.values import human
from policyctl.redact import redact_text, redact_value

MAX_BODY = 60_000  # GitHub refuses bodies over 65,536 characters
SAMPLES = 5

# --------------------------------------------------------------------------- samples


def pick_samples(events: list[dict[str, Any]], n: int = SAMPLES) -> list[dict[str, Any]]:
    """Up to `n` failures that read differently (different templates first), oldest first."""
    seen: set[str] = set()
    picked: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for e in sorted(events, key=lambda e: (str(e.get("ts") or ""), str(e.get("id")))):
        message = str((e.get("outcome") or {}).get("message") or "")
        shape = re.sub(r"[0-9a-f]{6,}|\d+", "#", re.sub(r"\b\w+[._-]\w+\b", "w", message))[:60]
        (rest if shape in seen else picked).append(e)
        seen.add(shape)
    return (picked + rest)[:n]


def _sample_line(e: dict[str, Any]) -> str:
    outcome = e.get("outcome") or {}
    agents = (e.get("input") or {}).get("agents") or []
    who = ", ".join(f"{a.get('id')} ({a.get('role')})" for a in agents[:3] if isinstance(a, dict))
    if len(agents) > 3:
        who += f" +{len(agents) - 3}"
    code = f" `{redact_text(str(outcome['code']))[:80]}`" if outcome.get("code") else ""
    message = redact_text(str(outcome.get("message") or "")).replace("`", "'")
    ts = redact_text(str(e.get("ts") or ""))[:19]
    status = redact_text(str(outcome.get("status")))[:40]
    return f"- `{ts}` {redact_text(who)}: **{status}**{code} `{message[:300]}`"


# --------------------------------------------------------------------------- the body


@dataclass
class BodyContext:
    """What the body reports besides the draft: the replays, the samples, where it came from.

    `report` is the replay a reviewer and CI reproduce: `policyctl shadow --base BASE
    --candidate BRANCH` with no --logs, i.e. policyctl.toml's sources and the evidence
    samples committed under shadow_evidence/ (this pull request's among them). Every figure
    of the body's replay section is read from it, under the names `policyctl shadow` uses.
    `full_verdict` is the verdict of the replay of the bot's whole input logs, a gate only.
    """

    size: int
    failures_in_logs: int
    samples: list[dict[str, Any]]
    report: ShadowReport
    base: str
    base_sha: str
    branch: str
    logs: list[str]
    embedder: str
    provider: str
    inputs: str = ""  # digest of everything the draft and this body were made from (state.inputs_digest)
    full_verdict: str = ""
    full_events: int = 0
    evidence_path: str = ""
    contrast: str = "successes"  # ClusterReport.contrast: what the distinguishing values are compared with


def rule_conditions(d: Draft) -> str:
    """The rule's conditions exactly as the module writes them: ` and ` within a body, ` or ` between.

    A drafter that writes Rego itself (Claude) has no Condition objects: its conditions are
    the statements of the module's `decisions contains … if { … }` bodies."""
    bodies = ([[line for c in body for line in c.rego()] for body in d.bodies] if d.bodies
              else decision_conditions(d.module_text))
    return " or ".join(" and ".join(body) for body in bodies if body) or "(always)"


def title_for(d: Draft) -> str:
    """`policyctl: route {"action": {"protocol": "sftp"}} when input.action.protocol == "smb" and …`."""
    params = f" {_json(d.remedy.params)}" if d.remedy.params else ""
    return redact_text(f"policyctl: {d.remedy.action}{params} when {rule_conditions(d)}")[:250]


def commit_subject(d: Draft) -> str:
    """At most 72 characters: `crash_parquet_smb: route to protocol sftp`."""
    target = ""
    if d.remedy.action == "route" and d.remedy.evidence.get("field"):
        target = f" to {d.remedy.evidence['field'].rsplit('.', 1)[-1]} {d.remedy.evidence.get('to')}"
    subject = redact_text(f"{d.name}: {d.remedy.action}{target}")
    return subject if len(subject) <= 72 else subject[:71] + "…"


_ARTICLE = re.compile(r"^[aeiou]", re.I)


def _a(word: str) -> str:
    return f"an {word}" if _ARTICLE.match(word) else f"a {word}"


def _clause(c: Any) -> str:
    """One condition as a clause of an English sentence."""
    name = c.field.split(".")[-1].replace("_", " ")
    if c.field == "role":
        return f"an agent with role {c.value} takes part" if c.op == "has_role" else f"no agent has role {c.value}"
    if c.field == "count(agents)":
        return f"more than {c.value} agents take part" if c.op == ">" else f"at most {c.value} agents take part"
    if c.op == "==":
        return f"its {name} is {c.value}"
    if c.op == "!=":
        return f"its {name} is not {c.value}"
    return f"its {name} is {'above' if c.op == '>' else 'at most'} {human(c.value)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def plain_words(d: Draft) -> str:
    """The rule as one English sentence: `When a file_share action on a share has …, route it to …`."""
    sentences = []
    if not d.bodies:  # written as Rego (Claude): its own words for the conditions, else the Rego
        sentences = [w.rstrip(".") for w in d.conditions_in_words()] or [f"`{rule_conditions(d)}`"]
    for body in d.bodies:
        kind = next((c.value for c in body if c.field == "kind" and c.op == "=="), None)
        atype = next((c.value for c in body if c.field == "action.type" and c.op == "=="), None)
        rkind = next((c.value for c in body if c.field == "resource.kind" and c.op == "=="), None)
        rest = [c for c in body if not (c.op == "==" and c.field in ("kind", "action.type", "resource.kind"))]
        if kind == "conflict":
            subject = "agents contend" + (f" for {_a(str(rkind))}" if rkind else " for one resource")
        else:
            subject = (_a(f"`{atype}` action") if atype else "an action") + (f" on {_a(str(rkind))}" if rkind else "")
        clauses = [_clause(c) for c in rest]
        sentences.append(subject + (" and " + _join(clauses) if clauses and kind == "conflict" else
                                    (", where " + _join(clauses) if clauses else "")))
    when = "; or when ".join(sentences)
    remedy = d.remedy
    if remedy.action == "route":
        sets = _join([f"{path.rsplit('.', 1)[-1].replace('_', ' ')} {value}" for path, value in route_fields(remedy.params)]
                     or ["the declared alternative"])
        then = f"route it over {sets}" + (f" instead of {remedy.evidence['from']}" if "from" in remedy.evidence else "")
    elif remedy.action == "arbitrate":
        then = "settle their order up front: highest priority first, ties by agent id"
    else:
        then = "deny it before it is attempted"
    return f"When {when}, {then}."


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _what_fails(d: Draft, ctx: BodyContext) -> list[str]:
    c = d.cluster
    statuses = ", ".join(f"{k} {v}" for k, v in c.statuses.items())
    top = ", ".join(f"`{a}`" for a in c.agents.top[:10])
    roles = ", ".join(f"{r} ({n})" for r, n in c.roles.items())
    versus = compared_with(ctx.contrast)
    apart = [f"`{x.field}` = `{x.value}` in {100 * x.share:.0f}% of these failures, "
             f"{100 * x.success_share:.1f}% of {versus}" for x in c.distinguishing]
    apart += [f"`{x.field}` {x.direction} {x.threshold:g} (median {x.median:g} here, "
              f"{x.success_median:g} in {versus})" for x in c.numeric]
    if c.deadlock:
        apart.append(f"waits-for cycle between roles {', '.join(c.deadlock.roles)} over "
                     f"{', '.join(c.deadlock.resource_kinds)}")
    match = (d.verification.get("match") or {})
    lines = ["## What fails", "", f"**{redact_text(c.title or d.title)}**", "",
             "| | |", "|---|---|",
             f"| cluster | `{d.fingerprint}` |",
             f"| how often | **{ctx.size}** failures ({statuses}): {_pct(ctx.size, ctx.failures_in_logs)} of the "
             f"{ctx.failures_in_logs} failures in the logs |"]
    if match.get("attempts"):
        lines.append(f"| attempts matching the rule that failed | **{match['failed']}** of {match['attempts']} "
                     f"({match['failed_pct']}%) in the logs |")
    agents = "?" if c.agents.count is None else c.agents.count
    lines += [f"| since | {(c.first_seen or '?')[:19]} (last seen {(c.last_seen or '?')[:19]}) |",
              f"| agents | {agents}: {redact_text(top)} |",
              f"| roles | {redact_text(roles)} |"]
    if apart:
        lines.append("| sets it apart | " + redact_text("<br>".join(apart)) + " |")
    lines += ["", f"### Sample messages ({len(ctx.samples)}, secrets masked)", ""]
    lines += [_sample_line(e) for e in ctx.samples]
    if c.templates:
        lines += ["", "<details><summary>Log templates of this cluster</summary>", ""]
        for t in c.templates[:10]:
            text = redact_text(t.template).replace("`", "'")[:200]
            lines.append(f"- {t.count}× `{text}`")
        lines += ["", "</details>"]
    return lines


def _rule(d: Draft) -> list[str]:
    params = f" `{_json(d.remedy.params)}`" if d.remedy.params else ""
    lines = ["## The rule", "",
             f"**In plain words:** {redact_text(plain_words(d))}", "",
             f"**Remedy:** {d.remedy.action}{params}, because {redact_text(d.remedy.why)}."]
    if d.remedy.evidence.get("vocabulary") == "none declared" or d.remedy.evidence.get("declared") is not None:
        lines += ["", "_No route: " + ("policyctl.toml declares no alternatives for this traffic"
                                       if d.remedy.evidence.get("vocabulary") == "none declared" else
                                       "no declared alternative succeeds for this traffic")
                  + ". Declare the fields an agent may be routed over under `[vocabulary.<action type>.alternatives]` "
                    "(docs/config.md) and the bot will consider routes._"]
    lines += ["", f"`{d.module_path}` (rule `{d.rule_id}`, drafted by `{d.drafter}`):", "",
              "```rego", redact_text(d.module_text.rstrip()), "```"]
    return lines


def _tried(d: Draft) -> list[str]:
    if len(d.attempts) <= 1:
        return []
    lines = ["<details><summary>Candidates the drafter tried (" + str(len(d.attempts)) + ")</summary>", "",
             "| candidate | conditions | held-out prevented | collateral | outcome |", "|---|---|---:|---:|---|"]
    for a in d.attempts:
        outcome = "**chosen**" if a.get("chosen") else ("verified, ranked lower" if a.get("verified") else
                                                       "; ".join(a.get("reasons") or []) or "not verified")
        lines.append(f"| {a.get('candidate')} | {redact_text(' or '.join(a.get('conditions') or []))} | "
                     f"{a.get('holdout_prevented_pct')}% | {a.get('collateral_pct')}% | {redact_text(outcome)} |")
    return [*lines, "", "</details>"]


def shadow_figures(r: ShadowReport) -> dict[str, Any]:
    """The replay figures the body shows, named as `policyctl shadow --format json` names them."""
    t = r.to_dict()["totals"]  # the names and values `policyctl shadow --format json` prints
    return {"verdict": r.verdict, "failures": t["failures"], "prevented": t["prevented"],
            "prevented_pct": round(r.prevented_pct, 3), "exposed": t["exposed"], "successes": t["successes"],
            "collateral": t["collateral"], "collateral_pct": round(r.collateral_pct, 3),
            "max_collateral_pct": r.max_collateral_pct, "in_region": t["in_region"],
            "fixtures": t["fixtures"], "fixtures_passed": t["fixtures_passed"], "events": t["events"]}


def _shadow(d: Draft, ctx: BodyContext, f: dict[str, Any], blast: dict[str, Any]) -> list[str]:
    r = ctx.report
    hold = d.verification.get("holdout") or {}
    residual = d.verification.get("residual") or {}
    icon = "✅" if r.verdict == "PASS" else "❌"
    lines = ["## Shadow replay", "",
             f"{icon} **{f['verdict']}**: `{ctx.base}` ({ctx.base_sha[:12]}) → this branch, replaying the fixtures, "
             f"policyctl.toml's log sources and the evidence samples in `shadow_evidence/` "
             f"({f['events']} logged events; this pull request adds `{ctx.evidence_path}`).", "",
             "| figure | value |", "|---|---|",
             f"| prevented: logged failures the candidate decides differently | **{f['prevented']}** of {f['failures']} "
             f"({f['prevented_pct']:.1f}%) |",
             f"| exposed: logged failures it leaves as they were | {f['exposed']} |",
             f"| collateral: successes changed outside every rule's failure region | **{f['collateral']}** of "
             f"{f['successes']} ({f['collateral_pct']:.2f}%; budget {f['max_collateral_pct']:g}%) |",
             f"| in region: successes inside this rule's failure region, changed by design | {f['in_region']} |",
             f"| fixtures | {f['fixtures_passed']} of {f['fixtures']} pass |",
             f"| held-out failures prevented (the latest 20% by time, never seen while drafting) | "
             f"{hold.get('prevented')}/{hold.get('events')} ({hold.get('prevented_pct')}%) |"]
    if residual.get("failures"):
        lines.append(f"| this cluster's failures outside the rule's conditions | {residual['failures']} of "
                     f"{residual['of']} (between the drawn bounds and the data) |")
    if ctx.full_verdict:
        names = ", ".join(f"`{_basename(n)}`" for n in ctx.logs)
        lines.append(f"| the bot's whole input ({names}, {ctx.full_events} events) | {ctx.full_verdict} |")
    if blast:
        lines += ["", "**Blast radius** (logged events whose decision changes):", "",
                  "| by | changed |", "|---|---|"]
        for dim in ("kind", "action_type", "role", "agent"):
            if blast.get(dim):
                lines.append(f"| {dim.replace('_', ' ')} | " + redact_text(", ".join(
                    f"`{k}` {n}" for k, n in list(blast[dim].items())[:8])) + " |")
    # only this cluster's failures: the replay's history holds other failures, which other rules answer
    members = set(d.cluster.members)
    exposed = [e for e in r.examples("exposed") if e.ref in members]
    if exposed:
        lines += ["", "<details><summary>Still exposed: this cluster's failures the rule leaves as they were "
                      f"({residual.get('failures', len(exposed))} of {residual.get('of', d.cluster.size)} outside its "
                      "conditions)</summary>", ""]
        for e in exposed:
            detail = redact_text("; ".join(e.detail))[:200].replace("`", "'")
            lines.append(f"- `{e.ref}`: `{_json(e.input)[:300]}` {detail}")
        lines += ["", "</details>"]
    collateral = r.examples("collateral")
    if collateral:
        lines += ["", "<details><summary>Collateral examples</summary>", ""]
        for e in collateral:
            lines.append(f"- `{e.ref}` {e.base.get('action')} → {e.candidate.get('action')}: "
                         f"`{_json(e.input)[:300]}`")
        lines += ["", "</details>"]
    return lines


def _fixtures(d: Draft, inputs: bool = True) -> list[str]:
    prevent = sum(1 for f in d.fixtures if f.get("why") == "prevent")
    lines = ["## Fixtures added", "",
             f"`{d.fixtures_path}`: {len(d.fixtures)} fixtures, {prevent} `prevent` (failures this rule must stop) "
             f"and {len(d.fixtures) - prevent} `keep` (nearby traffic that worked and must stay as it was).", "",
             "| id | why | expect | from event |", "|---|---|---|---|"]
    for f in d.fixtures:
        expect = _json(f.get("expect")).replace("|", "\\|")
        lines.append(f"| `{f.get('id')}` | {f.get('why')} | `{expect}` | `{f.get('origin', '')}` |")
    if not inputs:
        return [*lines, "", "The fixture inputs are too long for a pull request body: see the diff."]
    lines += ["", "<details><summary>Fixture inputs</summary>", ""]
    for f in d.fixtures:
        lines += [f"`{f.get('id')}`:", "```json", json.dumps(redact_value(f.get("input")), sort_keys=True, indent=1), "```"]
    return [*lines, "", "</details>"]


def _json(value: Any) -> str:
    """`value` as one line of JSON, every string masked and every value under a secret key."""
    return json.dumps(redact_value(value), sort_keys=True)


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _reproduce(d: Draft, ctx: BodyContext) -> list[str]:
    names = [_basename(name) for name in ctx.logs] or ["events.jsonl"]
    flags = " ".join(f"--logs {n}" for n in names)
    fetch = [f"git fetch origin {ctx.branch}:{ctx.branch}"] if ctx.provider == "github" else []
    lines = ["## Reproduce locally", "",
             "In a clone of this repository: the replay above, from the masked evidence committed here "
             "(no logs needed), then the fixtures:", "",
             "```sh", *fetch,
             f"policyctl shadow --base {ctx.base} --candidate {ctx.branch} --format markdown",
             f"git switch {ctx.branch} && pytest shadow_fixtures",
             "```", "", "With the exported logs at hand, the whole of the bot's work:", "", "```sh",
             f"policyctl cluster {' '.join(names)} --embedder {ctx.embedder} -o clusters.json",
             f"policyctl draft --clusters clusters.json {flags} --base {ctx.base} --cluster {d.fingerprint}",
             f"policyctl shadow --base {ctx.base} --candidate {ctx.branch} {flags} --format markdown",
             "```"]
    if ctx.provider == "local":
        lines += ["", "Review and merge without GitHub: `policyctl pr list`, `policyctl pr show N`, "
                      "`policyctl pr diff N`, "
                      f"`policyctl pr merge N` (replays the candidate at the current `{ctx.base}` first and "
                      "refuses what fails) or `policyctl pr close N --reason TEXT`."]
    return lines


def render_body(d: Draft, ctx: BodyContext) -> str:
    """The Markdown body of the pull request for draft `d`; starts with the cluster marker."""
    marker = Marker(d.fingerprint, ctx.size, ctx.inputs, base=ctx.base_sha).render()
    # every figure of the body comes from this one reading of the replay
    f = shadow_figures(ctx.report)
    blast = ctx.report.to_dict().get("blast_radius") or {}
    intro = (f"The policyctl bot drafted `{d.name}` from **{ctx.size} failures** of one systemic cluster in "
             f"the exported logs. Replayed against `{ctx.base}` ({ctx.base_sha[:12]}): **{f['verdict']}**, "
             f"{f['prevented']} of {f['failures']} logged failures prevented, {f['collateral']} of "
             f"{f['successes']} successes changed outside the failure region ({f['collateral_pct']:.2f}%).")
    footer = (f"<sub>The bot keeps one pull request per cluster: the same logs again change nothing; newer logs "
              f"update this one. Closed without merging, the cluster is left alone until it reaches "
              f"{GROWTH * ctx.size} failures. A commit pushed here by anyone else stops the bot from "
              f"updating this branch.</sub>")
    body = ""
    for inputs in (True, False):  # too long: the fixture inputs go first (they are in the diff); every figure stays
        parts = [intro, "", *_what_fails(d, ctx), "", *_rule(d), "", *_tried(d), "", *_shadow(d, ctx, f, blast), "",
                 *_fixtures(d, inputs), "", *_reproduce(d, ctx), "", "---", footer]
        body = marker + "\n" + redact_text("\n".join(parts)) + "\n"
        if len(body) <= MAX_BODY:
            return body
    return body[: MAX_BODY - 100] + "\n\n…(truncated)\n"
