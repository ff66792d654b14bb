"""The pull request body: what a reviewer needs to decide without opening the logs, secrets masked.

Everything copied from the logs (sample messages, templates, the inputs in the shadow
report's examples) goes through `mask_secrets` first: tokens, passwords, keys, email
addresses and IP addresses never reach a pull request. The Rego module and fixtures are
shown as committed: they are in the diff anyway.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyctl.bot.state import GROWTH, Marker
from policyctl.draft.model import Draft

MAX_BODY = 60_000  # GitHub refuses bodies over 65,536 characters
SAMPLES = 5
ENTROPY_BITS = 4.2  # random base62 of 32+ characters has about 4.5 bits per character; file names have less

# --------------------------------------------------------------------------- secrets

_KEYS = (r"password|passwd|passphrase|pwd|secret(?:[_-]?key)?|token|api[_-]?key|access[_-]?key(?:[_-]?id)?"
         r"|private[_-]?key|client[_-]?secret|credentials?|auth(?:orization)?|session[_-]?id|cookie")


def _high_entropy(m: re.Match[str]) -> str:
    """A long run of mixed-case letters and digits that reads like random bytes, not like words."""
    s = m.group(0)
    mixed = any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)
    counts = Counter(s)
    entropy = -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())
    words = sum(s.count(c) for c in "_-") >= 3  # snake_case_file_names_2026, not a key
    return "<secret>" if mixed and not words and entropy >= ENTROPY_BITS else s


def _ipv6(m: re.Match[str]) -> str:
    text = m.group(0)
    if not any(c.isdigit() for c in text):
        return text  # `a::b`, `::` are valid addresses on paper, and names in code
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text  # a time of day, a MAC address, a C++ name: not an address
    return "<ip>"


# Order matters: whole blocks and URL credentials before key=value, known token shapes
# before e-mail addresses, IPv6 (which may embed an IPv4) before IPv4.
_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
     "<private-key>"),
    (re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)", re.I), r"\g<pre><password>"),
    (re.compile(r"\b(?P<scheme>Bearer|Basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\g<scheme> <token>"),
    (re.compile(rf"(?P<key>(?<![\w.-])[\w.-]*?(?:{_KEYS}))(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?!<)"
                r"(?P<val>[^\s\"',;&)}\]]+)", re.I), r"\g<key>\g<sep><redacted>"),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
                r"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
                r"|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36})\b"), "<token>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), "<token>"),
    (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), "<email>"),
    (re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
                r"(?:%[\w.]+)?(?![\w:]|\.\d)"), _ipv6),
    (re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                r"(?![\w.]*\d)"), "<ip>"),
    (re.compile(r"(?<![\w+=-])[A-Za-z0-9+_=-]{32,}"), _high_entropy),
]


def mask_secrets(text: str) -> str:
    """`text` with tokens, passwords, keys, email and IP addresses replaced by placeholders."""
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


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
    code = f" `{outcome['code']}`" if outcome.get("code") else ""
    message = mask_secrets(str(outcome.get("message") or "")).replace("`", "'")
    return f"- `{str(e.get('ts') or '')[:19]}` {mask_secrets(who)}: **{outcome.get('status')}**{code} `{message[:300]}`"


# --------------------------------------------------------------------------- the body


@dataclass
class BodyContext:
    """What the body reports besides the draft: the replay, the samples, where it came from."""

    size: int
    failures_in_logs: int
    samples: list[dict[str, Any]]
    shadow_markdown: str
    shadow_verdict: str
    base: str
    base_sha: str
    branch: str
    logs: list[str]
    embedder: str
    provider: str
    inputs: str = ""  # digest of everything the draft and this body were made from (state.inputs_digest)


def title_for(d: Draft) -> str:
    """`policyctl: route to prevent crash: action.file_type=parquet, action.protocol=smb`."""
    return f"policyctl: {d.remedy.action} to prevent {d.cluster.get('title') or d.fingerprint}"[:250]


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _what_fails(d: Draft, ctx: BodyContext) -> list[str]:
    c = d.cluster
    statuses = ", ".join(f"{k} {v}" for k, v in (c.get("statuses") or {}).items())
    agents = c.get("agents") or {}
    top = ", ".join(f"`{a}`" for a in (agents.get("top") or [])[:10])
    roles = ", ".join(f"{r} ({n})" for r, n in (c.get("roles") or {}).items())
    apart = [f"`{x['field']}` = `{x['value']}` in {100 * x['share']:.0f}% of these failures, "
             f"{100 * x['success_share']:.1f}% of successful traffic" for x in c.get("distinguishing") or []]
    apart += [f"`{x['field']}` {x['direction']} {x['threshold']:g} (median {x['median']:g} here, "
              f"{x['success_median']:g} in successful traffic)" for x in c.get("numeric") or []]
    if c.get("deadlock"):
        cycle = c["deadlock"]
        apart.append(f"waits-for cycle between roles {', '.join(cycle.get('roles', []))} over "
                     f"{', '.join(cycle.get('resource_kinds', []))}")
    lines = ["## What fails", "", f"**{mask_secrets(str(c.get('title') or d.title))}**", "",
             "| | |", "|---|---|",
             f"| cluster | `{d.fingerprint}` |",
             f"| how often | **{ctx.size}** failures ({statuses}): {_pct(ctx.size, ctx.failures_in_logs)} of the "
             f"{ctx.failures_in_logs} failures in the logs |",
             f"| since | {str(c.get('first_seen') or '?')[:19]} (last seen {str(c.get('last_seen') or '?')[:19]}) |",
             f"| agents | {agents.get('count', '?')}: {top} |",
             f"| roles | {roles} |"]
    if apart:
        lines.append("| sets it apart | " + "<br>".join(apart) + " |")
    lines += ["", f"### Sample messages ({len(ctx.samples)}, secrets masked)", ""]
    lines += [_sample_line(e) for e in ctx.samples]
    templates = c.get("templates") or []
    if templates:
        lines += ["", "<details><summary>Log templates of this cluster</summary>", ""]
        for t in templates[:10]:
            text = mask_secrets(str(t["template"])).replace("`", "'")[:200]
            lines.append(f"- {t['count']}× `{text}`")
        lines += ["", "</details>"]
    return lines


def _rule(d: Draft) -> list[str]:
    when = " **or** ".join(d.conditions_in_words()) or "(no condition)"
    params = f" `{json.dumps(d.remedy.params, sort_keys=True)}`" if d.remedy.params else ""
    return ["## The rule", "",
            f"**In plain words:** when {when}, **{d.remedy.action}**{params}: {d.remedy.why}", "",
            f"`{d.module_path}` (rule `{d.rule_id}`, drafted by `{d.drafter}`):", "",
            "```rego", d.module_text.rstrip(), "```"]


def _shadow(d: Draft, ctx: BodyContext, brief: bool) -> list[str]:
    v = d.verification
    hold = v.get("holdout") or {}
    train = v.get("train") or {}
    col = v.get("collateral") or {}
    transitions = ", ".join(f"{k} {n}" for k, n in sorted((col.get("transitions") or {}).items())) or "none"
    # decision ids are fresh random ids on every replay; the body must not change when nothing else did
    md = mask_secrets(re.sub(r'[ \t]*"decision_id":\s*"[^"\n]*",?[ \t]*\n?', "", ctx.shadow_markdown))
    for name in sorted(ctx.logs, key=len, reverse=True):  # `events.jsonl:12`, not the runner's directories
        md = md.replace(name, _basename(name))
    first, _, rest = md.partition("\n")
    if brief:  # too long for a pull request: keep the headline table, point to the full report
        rest = rest.split("\n#### ", 1)[0] + ("\n\nThe transition matrix and examples are too long for a pull request "
                                             "body; run the shadow command below for the full report.")
    icon = "✅" if ctx.shadow_verdict == "PASS" else "❌"
    lines = ["## Shadow replay", "",
             "| verification | |", "|---|---|",
             f"| held-out failures prevented (the latest 20% by time, never seen while drafting) | "
             f"**{hold.get('prevented')}/{hold.get('events')}** ({hold.get('prevented_pct')}%) |",
             f"| drafting failures prevented | {train.get('prevented')}/{train.get('events')} ({train.get('prevented_pct')}%) |",
             f"| collateral: successful events whose decision changes | **{col.get('changed')}** of {col.get('ok_events')} "
             f"({col.get('collateral_pct')}%); transitions: {transitions} |",
             f"| lucky successes inside the failure's region, changed by design | {col.get('in_region_changed', 0)} |",
             "",
             f"### {icon} Replay of every fixture and logged event: `{ctx.base}` ({ctx.base_sha[:12]}) → this branch"
             if first.startswith("### ") else first,
             rest.rstrip()]
    return lines


def _fixtures(d: Draft) -> list[str]:
    prevent = sum(1 for f in d.fixtures if f.get("why") == "prevent")
    lines = ["## Fixtures added", "",
             f"`{d.fixtures_path}`: {len(d.fixtures)} fixtures, {prevent} `prevent` (failures this rule must stop) "
             f"and {len(d.fixtures) - prevent} `keep` (nearby traffic that worked and must stay as it was).", "",
             "| id | why | expect | from event |", "|---|---|---|---|"]
    for f in d.fixtures:
        expect = mask_secrets(json.dumps(f.get("expect"), sort_keys=True)).replace("|", "\\|")
        lines.append(f"| `{f.get('id')}` | {f.get('why')} | `{expect}` | `{f.get('origin', '')}` |")
    return lines


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _reproduce(d: Draft, ctx: BodyContext) -> list[str]:
    names = [_basename(name) for name in ctx.logs] or ["events.jsonl"]
    flags = " ".join(f"--logs {n}" for n in names)
    fetch = [f"git fetch origin {ctx.branch}:{ctx.branch}"] if ctx.provider == "github" else []
    lines = ["## Reproduce locally", "", "In a clone of this repository, with the exported logs at hand:", "",
             "```sh", *fetch,
             f"policyctl cluster {' '.join(names)} --embedder {ctx.embedder} -o clusters.json",
             f"policyctl draft --clusters clusters.json {flags} --base {ctx.base} --cluster {d.fingerprint}",
             f"policyctl shadow --base {ctx.base} --candidate {ctx.branch} {flags} --format markdown",
             f"git switch {ctx.branch} && pytest shadow_fixtures",
             "```"]
    if ctx.provider == "local":
        lines += ["", "Review and merge without GitHub: `policyctl pr list`, `policyctl pr show N`, "
                      f"`policyctl pr merge N` (a real merge into `{ctx.base}`, which the gateway then serves) "
                      "or `policyctl pr close N`."]
    return lines


def render_body(d: Draft, ctx: BodyContext) -> str:
    """The Markdown body of the pull request for draft `d`; starts with the cluster marker."""
    marker = Marker(d.fingerprint, ctx.size, ctx.inputs).render()
    hold = (d.verification.get("holdout") or {}).get("prevented_pct")
    col = (d.verification.get("collateral") or {}).get("collateral_pct")
    intro = (f"The policyctl bot drafted `{d.name}` from **{ctx.size} failures** of one systemic cluster in "
             f"the exported logs. It is verified against `{ctx.base}`: it compiles, every fixture passes, it "
             f"prevents {hold}% of the held-out failures and changes {col}% of successful traffic.")
    footer = (f"<sub>The bot keeps one pull request per cluster: the same logs again change nothing; newer logs "
              f"update this one. Closed without merging, the cluster is left alone until it reaches "
              f"{GROWTH * ctx.size} failures. A commit pushed here by anyone else stops the bot from "
              f"updating this branch.</sub>")
    body = ""
    for brief in (False, True):
        parts = [marker, intro, "", *_what_fails(d, ctx), "", *_rule(d), "", *_shadow(d, ctx, brief), "",
                 *_fixtures(d), "", *_reproduce(d, ctx), "", "---", footer]
        body = "\n".join(parts) + "\n"
        if len(body) <= MAX_BODY:
            return body
    return body[: MAX_BODY - 100] + "\n\n…(truncated)\n"
