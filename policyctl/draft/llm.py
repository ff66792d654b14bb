"""The `anthropic` drafter: Claude writes the rule module, policyctl parses, verifies and retries with the errors.

Claude is prompted with the Rego conventions and the rego-cpp hazards (system prompt), the
policy set it adds to, the cluster summary, training failures and similar successful
traffic, and the module name it must use. Every part of every message sent (the prompt and
each retry's feedback) goes through `policyctl.redact`, the masker of the PR bodies too. Its reply must hold exactly one
```rego block. The module is parsed, compiled with the policy set, evaluated on the
training failures (which gives the remedy and the `prevent` fixtures), given `keep`
fixtures from the nearest ok traffic, and verified like every draft. Whatever fails goes
back to Claude as the next user message, within bounded attempts, tokens and time.

Held-out failures never reach the prompt, nor any feedback beyond their count.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import MessageParam

from policyctl.decide import Pipeline, build_revision
from policyctl.draft.data import Evidence, spread
from policyctl.draft.induce import module_name
from policyctl.draft.metadata import with_drafter, with_region
from policyctl.draft.verify import MAX_FIXTURES, in_region, verify
from policyctl.engine.modules import RULES_PREFIX, parse_module
from policyctl.errors import PolicyCompileError, PolicyctlError
from policyctl.model.draft import Draft, Remedy
from policyctl.model.region import region_of_cluster
from policyctl.model.values import value_at
from policyctl.redact import redact_text, redact_value
from policyctl.repo import Snapshot
from policyctl.shadow.replay import decide, signature

DEFAULT_MODEL = "claude-sonnet-5-5"  # the SDK (2.11) marks claude-sonnet-4-5 deprecated
MODEL_ENV = "POLICYCTL_ANTHROPIC_MODEL"
KEY_ENV = "ANTHROPIC_API_KEY"
SAMPLES = 16
MAX_POLICY_CHARS = 16_000  # of existing rule modules quoted in the prompt
MAX_MODULE_CHARS = 4_000  # of any one of them
MAX_DATA_CHARS = 3_000
LEADING = ("kind", "action.type", "resource.kind")


class AnthropicError(PolicyctlError):
    """Claude could not be asked: no key, unreachable, rate limited, timed out or refused the request."""

    code = "anthropic_error"


# --------------------------------------------------------------------------- prompt

SYSTEM_PROMPT = """\
You write Rego rule modules for policyctl, the policy-as-code gateway of a multi-agent system. \
Agents ask the gateway what to do; it answers from the Rego modules of a git repository. You \
get one failure cluster mined from the decision logs and write ONE rule module that prevents \
that failure without changing traffic that works.

## Inputs
`{"kind": "action" | "conflict", "agents": [{"id", "role", "priority"}], "action": {"type", ...}, \
"resource": {"kind", ...}, "context": {...}}`. `kind` is `action` (one agent acts) or `conflict` \
(several agents contend for one resource; `input.agents` lists them all). Other fields are open: \
use the fields the sample events show, with their exact spelling and types.

## Decisions a rule may propose
- `route`: go ahead with `params` merged into the input, e.g. `{"action": {"protocol": "sftp"}}`. \
Route to a value the successful samples show working for the same traffic.
- `arbitrate`: settle a conflict up front: `params` is `{"winner": <agent id>, "order": [<agent ids>]}`, \
highest priority first, ties by agent id.
- `deny`: refuse the attempt; only when nothing in the logs works for this traffic.
- `allow`: explicitly allow (rarely useful).
`policies/main.rego` gathers the candidates of every enforced module and picks one: deny over \
route over arbitrate over allow, ties by rule id. With no candidate an action is allowed and a \
conflict goes back to the agents' own negotiation.

## Module conventions (all required)
- Rego v1: `import rego.v1`; `if` before every rule body; `contains` for multi-value rules.
- `package agentgov.rules.<name>` with exactly the name you are given.
- A METADATA comment block directly above the package line, YAML in `# ` comments: `title` (what \
the rule does, under 80 characters), `description` (the failure and why this remedy), `custom.cluster` \
(the fingerprint you are given) and `custom.mode: enforce`.
- Candidates are added with `decisions contains {"id": <snake_case rule id>, "action": <action>, \
"params": <object>, "message": <one sentence a reviewer understands without the logs>} if { ... }`.
- Lead every `decisions` body with literal equality tests of the fields that select the traffic, \
one per line, before anything else: `input.kind == "action"`, `input.action.type == "file_share"`, \
`input.resource.kind == "port"`. The gateway indexes rules by these literal `input.<path> == <literal>` \
tests; a body without them is evaluated for every request.
- Conditions as narrow as the failures need: what the failures share and successful traffic lacks; \
nothing that also catches traffic that works. Numeric thresholds compare with `>`, `>=`, `<`, `<=`.
- Only this one module is added. Do not use data documents or packages that do not exist; you may \
read the `data.agentgov.<area>` documents you are shown, always by their subtree.
- Guard optional fields with `object.get(input.action, "field", default)`: an evaluation error \
denies the request (fail closed).
- Keep to this house style: tabs for indentation, one test per line, comments say why.

## The engine is rego-cpp (regopy 1.5.2), not OPA. Avoid what it gets wrong:
- `sort`, `min` and `max` order numbers AS STRINGS (`sort([1, 10, 2])` is `[1, 10, 2]`, \
`min([-5, -9])` is `-5`). Never sort numbers or take min/max of them; rank by counting with `<` and \
`>`, which are right. The house idiom for an arbitration order:
```rego
before(b, a) if object.get(b, "priority", 0) > object.get(a, "priority", 0)

before(b, a) if {
	object.get(b, "priority", 0) == object.get(a, "priority", 0)
	b.id < a.id
}

place[a.id] := count([b | some b in input.agents; before(b, a)]) if some a in input.agents

order := [a.id | some i in numbers.range(0, count(input.agents) - 1); some a in input.agents; place[a.id] == i]
```
- Comprehension bodies must be on ONE line, `;`-separated: a multi-line body is "Invalid collection".
- `some k, v in x` is refused inside a comprehension: iterate `some k in object.keys(x); v := x[k]`, \
or move the iteration into a helper rule.
- Never reference `data.agentgov` as a whole (it is "recursion" from the entrypoint); name the subtree.
- Missing or divergent builtins: `net.cidr_*` (undefined), `strings.split_n` (missing), \
`time.parse_rfc3339_ns` rejects a trailing `Z`, `object.union` is shallow, `regex.match` can \
backtrack exponentially: prefer plain comparisons.
- Mistakes accepted silently: unsafe variables, `x := 1; x := 2`, v0-style `p[x] { ... }` (becomes an \
object, not a set). Write v1 syntax only.

## Answer format
Two lines of prose, then exactly one fenced ```rego block holding the whole module, nothing after it:
When: <the conditions of the rule in plain words>
Why: <why this remedy, from the evidence in the logs>
```rego
# METADATA
...
```
"""

_SUMMARY_KEYS = ("fingerprint", "title", "status", "statuses", "size", "first_seen", "last_seen", "roles",
                 "distinguishing", "numeric", "deadlock")


def _fence(lang: str, text: str) -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def _policies_section(snap: Snapshot, skip: str) -> str:
    """main.rego in full, then rule modules and data documents, truncated to a budget."""
    parts = []
    paths = snap.paths("policies/", ".rego")
    main = [p for p in paths if p == "policies/main.rego"]
    rules = [p for p in paths if p not in main and p != skip]
    for p in main:
        parts.append(f"{p}:\n{_fence('rego', snap.text(p))}")
    used = 0
    listed: list[str] = []
    for p in rules:
        text = snap.text(p)
        if len(text) > MAX_MODULE_CHARS:
            text = text[:MAX_MODULE_CHARS] + "\n# … (truncated)"
        if used + len(text) > MAX_POLICY_CHARS:
            module, _ = parse_module(p, snap.text(p))
            listed.append(f"- {p}: {module.title if module else '?'}")
            continue
        used += len(text)
        parts.append(f"{p}:\n{_fence('rego', text)}")
    if listed:
        parts.append("Further rule modules (not shown):\n" + "\n".join(listed))
    for p in snap.paths("policies/", "data.json"):
        text = snap.text(p)
        if len(text) > MAX_DATA_CHARS:
            text = text[:MAX_DATA_CHARS] + "\n… (truncated)"
        under = ".".join(["data.agentgov", *p.split("/")[1:-1]])
        parts.append(f"{p} (read as {under}):\n{_fence('json', text)}")
    return "\n\n".join(parts)


def _constants(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The index fields every failure shares (kind, action type, resource kind)."""
    out: dict[str, Any] = {}
    for path in LEADING:
        values = {json.dumps(value_at(e["input"], path), default=str) for e in events}
        value = value_at(events[0]["input"], path) if events else None
        if len(values) == 1 and isinstance(value, str):
            out[path] = value
    return out


def similar_ok(ev: Evidence, limit: int) -> list[dict[str, Any]]:
    """Successful events like the failures but outside their region: near misses first, varied.

    Same kind, action type and resource kind as the failures; ranked by how many of the
    cluster's distinguishing values they share, and taken round-robin across the
    combinations of those values, so the sample shows what works instead.
    """
    same = _constants(ev.train)
    fields = [(c.field, c.value) for c in ev.cluster.distinguishing if c.share >= 0.5 and c.field not in same]

    def got(inp: dict[str, Any], f: str) -> Any:
        if f == "role":
            return sorted({a.get("role") for a in inp.get("agents") or [] if isinstance(a, dict)}, key=str)
        return len(inp.get("agents") or []) if f == "count(agents)" else value_at(inp, f)

    def matches(inp: dict[str, Any], f: str, v: Any) -> bool:
        g = got(inp, f)
        return v in g if f == "role" else g == v

    pool = [e for e in ev.ok if all(value_at(e["input"], p) == v for p, v in same.items())
            and not in_region(e["input"], ev.cluster)]
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for e in pool:
        inp = e["input"]
        score = sum(matches(inp, f, v) for f, v in fields)
        key = json.dumps([got(inp, f) for f, _ in fields], default=str)
        groups.setdefault(key, []).append((score, e))
    ordered = sorted(groups.values(), key=lambda g: (-max(s for s, _ in g), -len(g)))
    for g in ordered:
        g.sort(key=lambda se: se[1]["id"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    depth = 0
    while len(out) < limit and any(depth < len(g) for g in ordered):
        for g in ordered:
            if depth < len(g) and len(out) < limit:
                e = g[depth][1]
                k = json.dumps(e["input"], sort_keys=True)
                if k not in seen:
                    seen.add(k)
                    out.append(e)
        depth += 1
    return out


def render_event(e: dict[str, Any]) -> str:
    """One event as a compact JSON line for the prompt, secrets masked."""
    logged: dict[str, Any] = e["decision"] if isinstance(e.get("decision"), dict) else {}
    outcome: dict[str, Any] = e["outcome"] if isinstance(e.get("outcome"), dict) else {}
    out: dict[str, Any] = {"input": e["input"],
                           "decision": {k: logged[k] for k in ("action", "params") if k in logged}}
    out["outcome"] = {k: outcome[k] for k in ("status", "code") if outcome.get(k) is not None}
    if isinstance(outcome.get("message"), str):
        out["outcome"]["message"] = outcome["message"]
    return json.dumps(redact_value(out), separators=(", ", ": "), default=str)


def build_prompt(ev: Evidence, *, name: str, base_snapshot: Snapshot, samples: int = SAMPLES) -> str:
    """The first user message: what to write, the policy set, the cluster, and sample events."""
    c = ev.cluster
    path = f"policies/rules/{name}.rego"
    data = c.to_dict()
    summary = {k: data[k] for k in _SUMMARY_KEYS if data.get(k) not in (None, [], {})}
    summary["templates"] = [{"template": t.template, "count": t.count} for t in c.templates[:8]]
    summary = redact_value(summary)
    failures = spread(ev.train, samples)
    ok = similar_ok(ev, samples)
    lines = [
        f"Write the rule module `{path}`: package `{RULES_PREFIX}{name}`, METADATA `custom.cluster: "
        f"{c.fingerprint}` and `custom.mode: enforce`.",
        "",
        "## The policy set it joins",
        _policies_section(base_snapshot, path),
        "",
        "## The failure cluster",
        f"{c.size} {c.status} events; `distinguishing` lists input "
        "fields whose value most failures share (`share`) and successful traffic seldom has (`success_share`); "
        "`numeric` lists thresholds beyond which the failures lie; `deadlock` the roles and resources of a "
        "wait-for cycle; `templates` the failure messages with their variables masked.",
        _fence("json", "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, default=str)}" for k, v in summary.items())
               + "\n}"),
        "",
        f"## {len(failures)} of its failures (of {len(ev.train)} for drafting), as logged",
        "One event per line: the input, the decision the gateway gave, the outcome.",
        _fence("json", "\n".join(render_event(e) for e in failures)),
        "",
        f"## {len(ok)} successful events of the same kind of traffic",
        f"Of {ev.ok_total} successful events in the logs; these are like the failures but outside "
        "their region: your rule must leave such traffic as it is, and they show what works instead.",
        _fence("json", "\n".join(render_event(e) for e in ok)) if ok else "(none in the logs)",
        "",
        "## What a route may change",
        _vocabulary_section(base_snapshot, ev),
        "",
        "Answer with the `When:` and `Why:` lines and exactly one ```rego block holding the whole module.",
    ]
    # the policy set, the vocabulary and the figures too: a data document or a comment may hold a secret
    return redact_text("\n".join(lines))


def _vocabulary_section(base_snapshot: Snapshot, ev: Evidence) -> str:
    """The declared alternatives for this traffic: the only fields a `route` may set."""
    types = sorted({str(value_at(e["input"], "action.type")) for e in ev.train if isinstance(value_at(e["input"], "action.type"), str)})
    vocab = base_snapshot.config.vocabulary
    lines = []
    for t in types or ["*"]:
        for path, values in sorted(vocab.for_type(t).items()):
            lines.append(f"- `{t}`: `{path}` may be routed to one of {', '.join(json.dumps(v) for v in values)}")
    if not lines:
        return ("policyctl.toml declares no alternatives for this traffic: every field is the agent's intent. "
                "Do not `route`; arbitrate a conflict or deny.")
    return ("A `route`'s params may set only these declared alternatives (policyctl.toml); every other field is "
            "the agent's intent (what it does, to what, where) and must never be rewritten:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- reply parsing

_FENCED = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)\n[ \t]*```", re.S)
_PACKAGE_LINE = re.compile(r"^package[ \t]+(\S+)[ \t]*$", re.M)


@dataclass
class Reply:
    """Claude's answer to one request."""

    text: str
    stop_reason: str | None
    input_tokens: int
    output_tokens: int


@dataclass
class Parsed:
    """A module taken out of a reply, with the fixes applied to it and the prose around it."""

    module: str
    when: str = ""
    why: str = ""
    fixed: list[str] = field(default_factory=list)


def extract_module(text: str, *, name: str, fingerprint: str) -> Parsed | str:
    """The one Rego module of a reply (package and cluster fixed), or what is wrong with the reply."""
    blocks = [(lang.lower(), body) for lang, body in _FENCED.findall(text)]
    rego = [b for lang, b in blocks if lang == "rego"] or [b for lang, b in blocks if not lang and _PACKAGE_LINE.search(b)]
    if not rego:
        return "your reply holds no ```rego fenced code block"
    if len(rego) > 1:
        return f"your reply holds {len(rego)} ```rego blocks; return exactly one module in one block"
    module = rego[0].strip("\n") + "\n"
    packages = _PACKAGE_LINE.findall(module)
    if not packages:
        return "the module has no `package` line"
    if len(packages) > 1:
        return f"the block holds {len(packages)} `package` lines; return exactly one module"
    want = f"{RULES_PREFIX}{name}"
    parsed = Parsed(module=module)
    if packages[0] != want:
        parsed.module = _PACKAGE_LINE.sub(f"package {want}", module, count=1)
        parsed.fixed.append(f"package {packages[0]} renamed to {want}")
    line = _PACKAGE_LINE.search(parsed.module)
    head = parsed.module[:line.start()] if line else ""
    m = re.search(r"^(#\s+cluster:[ \t]*)(\S[^\n]*)$", head, re.M)
    if m and m.group(2).strip().strip("'\"") != fingerprint:
        parsed.module = parsed.module[:m.start(2)] + fingerprint + parsed.module[m.end(2):]
        parsed.fixed.append(f"custom.cluster {m.group(2).strip()} set to {fingerprint}")
    prose = text[:text.find("```")]
    for key in ("when", "why"):
        found = re.search(rf"^\W*{key}\W*:\s*(.+)$", prose, re.M | re.I)
        if found:
            setattr(parsed, key, found.group(1).strip().strip("*").strip()[:400])
    return parsed


# --------------------------------------------------------------------------- the draft


@dataclass
class ClaudeDraft(Draft):
    """A draft written by Claude: its conditions are Rego, not Condition objects, so they are told in words."""

    when: str = ""

    def conditions_in_words(self) -> list[str]:
        return [self.when] if self.when else []


def _candidate(base_snapshot: Snapshot, path: str, text: str) -> Pipeline:
    """The base with the module added, built by the one pipeline factory (overrides included)."""
    files = dict(base_snapshot.files)
    files[path] = text.encode()
    return build_revision(Snapshot(revision=None, files=files, blob_ids={}, root=base_snapshot.root),
                          verify=False).pipeline


def _decided_by(decision: dict[str, Any], path: str) -> bool:
    reasons = decision.get("reasons") or []
    return decision.get("source") == "policy" and bool(reasons) and reasons[0].get("file") == path


def _logged_signature(e: dict[str, Any], base: Pipeline) -> tuple[str, bool]:
    logged = e.get("decision") if isinstance(e.get("decision"), dict) else None
    with_params = logged is None or "params" in logged
    return (signature(logged, with_params) if logged else signature(decide(base, e["input"]))), with_params


def _expect(decision: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"action": decision["action"]}
    if decision.get("params"):
        out["params"] = decision["params"]
    return out


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(redact_value(value), separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class _Outcome:
    draft: ClaudeDraft | None
    feedback: list[str]


class AnthropicDrafter:
    """Claude through the anthropic SDK (Messages API), verified and retried with the errors.

    The key comes from ANTHROPIC_API_KEY, the base URL from the SDK's own ANTHROPIC_BASE_URL
    (or pass `client`), the model from `model`, else POLICYCTL_ANTHROPIC_MODEL, else
    DEFAULT_MODEL. Bounded per cluster: `max_attempts` replies, `token_budget` input plus
    output tokens, `time_budget_s` seconds; each request waits at most `timeout_s` and the
    SDK retries 429, 5xx and timeouts `max_retries` times with backoff (honouring retry-after);
    a `client` passed in keeps its own retries and base URL, and stays open on `close()`.
    """

    name = "anthropic"

    def __init__(self, model: str | None = None, max_attempts: int = 3, max_tokens: int = 4096,
                 timeout_s: float = 60, client: anthropic.Anthropic | None = None, *, max_retries: int = 2,
                 token_budget: int = 200_000, time_budget_s: float = 600, samples: int = SAMPLES) -> None:
        self.model = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
        self.max_attempts = max(1, max_attempts)
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.token_budget = token_budget
        self.time_budget_s = time_budget_s
        self.samples = samples
        self._owns_client = False
        if client is None:
            key = os.environ.get(KEY_ENV)
            if not key:
                raise AnthropicError(f"{KEY_ENV} is not set: the anthropic drafter needs an API key "
                                     f"(export {KEY_ENV}=sk-ant-…), or draft offline with --drafter induce",
                                     code="anthropic_no_key")
            client = anthropic.Anthropic(api_key=key, timeout=timeout_s, max_retries=max_retries)
            self._owns_client = True
        self.client = client

    def close(self) -> None:
        """Close the HTTP client this drafter opened (a client it was given stays its owner's)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> AnthropicDrafter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- the API

    def ask(self, system: str, messages: list[MessageParam], *, timeout: float) -> Reply:
        """One Messages API call; API failures become AnthropicError with what to do."""
        where = f"{self.model} at {self.client.base_url}"
        tries = self.client.max_retries + 1
        try:
            msg = self.client.messages.create(model=self.model, max_tokens=self.max_tokens, system=system,
                                              messages=messages, timeout=timeout)
        except anthropic.APITimeoutError as exc:
            raise AnthropicError(f"Claude ({where}) did not answer within {timeout:g} s, {tries} tries: "
                                 "try again later, or raise the timeout", code="anthropic_timeout") from exc
        except anthropic.APIConnectionError as exc:
            raise AnthropicError(f"cannot reach Claude ({where}): {exc}; check the network or ANTHROPIC_BASE_URL",
                                 code="anthropic_unreachable") from exc
        except anthropic.AuthenticationError as exc:
            raise AnthropicError(f"Claude ({where}) refused the key in {KEY_ENV} (401: {_api_message(exc)})",
                                 code="anthropic_auth") from exc
        except anthropic.RateLimitError as exc:
            raise AnthropicError(f"Claude ({where}) is rate limiting this key (429: {_api_message(exc)}), still "
                                 f"after {tries} tries: try again later", code="anthropic_rate_limited") from exc
        except anthropic.APIStatusError as exc:
            raise AnthropicError(f"Claude ({where}) answered {exc.status_code} ({_api_message(exc)})"
                                 + (f", still after {tries} tries" if exc.status_code >= 500 else ""),
                                 code="anthropic_api_error") from exc
        text = "".join(getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text")
        usage = msg.usage
        return Reply(text=text, stop_reason=msg.stop_reason, input_tokens=usage.input_tokens or 0,
                     output_tokens=usage.output_tokens or 0)

    # ----------------------------------------------------------------- drafting

    def draft(self, ev: Evidence, *, base: Pipeline, base_snapshot: Snapshot, taken: set[str]) -> Draft | str:
        """Ask, parse, verify, and retry with the errors; the verified draft, the last failed one, or why none."""
        name = module_name(ev.cluster.fingerprint, taken)
        if not ev.train:
            return "no training failures to show Claude"
        started = time.monotonic()
        messages: list[MessageParam] = [{"role": "user", "content": build_prompt(
            ev, name=name, base_snapshot=base_snapshot, samples=self.samples)}]
        used = {"input_tokens": 0, "output_tokens": 0}
        last: ClaudeDraft | None = None
        problems: list[str] = []
        attempts = 0
        stopped = ""
        while attempts < self.max_attempts:
            spent = used["input_tokens"] + used["output_tokens"]
            remaining = self.time_budget_s - (time.monotonic() - started)
            if attempts and spent >= self.token_budget:
                stopped = f"stopped after {attempts} attempt(s): token budget of {self.token_budget} used ({spent})"
                break
            if remaining <= 0:
                stopped = f"stopped after {attempts} attempt(s): time budget of {self.time_budget_s:g} s used"
                break
            attempts += 1
            reply = self.ask(SYSTEM_PROMPT, messages, timeout=min(self.timeout_s, remaining))
            used["input_tokens"] += reply.input_tokens
            used["output_tokens"] += reply.output_tokens
            messages.append({"role": "assistant", "content": reply.text or "(empty reply)"})
            outcome = self._attempt(reply, ev, name=name, base=base, base_snapshot=base_snapshot)
            meta = {"model": self.model, "attempts": attempts, **used}
            if outcome.draft is not None:
                last = outcome.draft
                last.verification["llm"] = meta | {"fixed": last.verification.get("llm", {}).get("fixed", [])}
                if last.verified:
                    return last
            problems = outcome.feedback
            if attempts < self.max_attempts:
                messages.append({"role": "user", "content": _feedback(attempts, problems)})
        if last is None:
            why = stopped or f"{attempts} attempt(s)"
            return (f"no Rego module from Claude ({self.model}) in {why}: "
                    + ("; ".join(problems) if problems else "no reply"))[:600]
        if problems and not last.reasons:
            last.reasons = problems[:5]
        last.reasons.append(stopped or f"not verified after {attempts} attempt(s) with {self.model}")
        last.verified = False
        return last

    def _attempt(self, reply: Reply, ev: Evidence, *, name: str, base: Pipeline, base_snapshot: Snapshot) -> _Outcome:
        c = ev.cluster
        cut = " (your reply was cut off at max_tokens: write a shorter module)" if reply.stop_reason == "max_tokens" else ""
        parsed = extract_module(reply.text, name=name, fingerprint=c.fingerprint)
        if isinstance(parsed, str):
            return _Outcome(None, [parsed + cut])
        path = f"policies/rules/{name}.rego"
        region = region_of_cluster(c)
        parsed.module = with_drafter(with_region(parsed.module, region), "anthropic")
        module, found = parse_module(path, parsed.module)
        if module is None:
            return _Outcome(None, [str(p) for p in found])
        d = ClaudeDraft(
            name=name, fingerprint=c.fingerprint, title=module.title or c.title,
            rule_id="", bodies=[], remedy=Remedy("deny", {}, parsed.why or "as drafted by Claude"), message="",
            description=module.description, module_path=path, module_text=parsed.module,
            fixtures_path=f"shadow_fixtures/{name}.jsonl", fixtures=[], drafter="anthropic", cluster=c,
            when=parsed.when, region=region)
        d.verification = {"compiled": False, "fixtures_passed": False, "llm": {"fixed": parsed.fixed}}
        problems = [str(p) for p in found]
        if module.cluster != c.fingerprint:
            problems.append(f"{path}: METADATA custom.cluster must be {c.fingerprint}, got {module.cluster!r}")
        if module.mode != "enforce":
            problems.append(f"{path}: METADATA custom.mode must be enforce, got {module.mode!r}")
        if not re.search(r"^decisions\s+contains\b", parsed.module, re.M):
            problems.append(f"{path}: no `decisions contains {{…}} if {{…}}` rule: nothing would ever decide")
        if problems:
            return _reject(d, problems)
        try:
            cand = _candidate(base_snapshot, path, parsed.module)
        except PolicyCompileError as exc:
            return _reject(d, [str(p) for p in exc.problems[:10]] or [exc.message])
        # What the module decides on the training failures gives the remedy and the prevent fixtures.
        ours: list[dict[str, Any]] = []
        errors: list[str] = []
        missed: list[dict[str, Any]] = []
        fixtures: list[dict[str, Any]] = []
        seen: set[str] = set()
        for e in ev.train:
            now = decide(cand, e["input"])
            if now.get("source") == "error":
                err = now.get("error") or {}
                errors.append(f"{err.get('code')}: {err.get('message')} on input {_short(e['input'])}")
                continue
            if _decided_by(now, path):
                ours.append(now)
            then, with_params = _logged_signature(e, base)
            if signature(now, with_params) == then:
                missed.append(e)
                continue
            key = json.dumps(e["input"], sort_keys=True)
            if key in seen or len([f for f in fixtures if f["why"] == "prevent"]) >= MAX_FIXTURES:
                continue
            seen.add(key)
            fixtures.append({"id": f"{name}-prevent-{len(fixtures) + 1:03d}", "input": e["input"],
                             "expect": _expect(now), "why": "prevent", "origin": e["id"]})
        if errors:
            return _reject(d, [f"{len(errors)} of {len(ev.train)} training failures raise an evaluation error "
                               f"(an error denies the request): {errors[0]}"], compiled=True)
        if not ours:
            return _reject(d, [f"the module decides none of the {len(ev.train)} training failures: its conditions do "
                               f"not match them; one of them: {_short(ev.train[0]['input'])}"], compiled=True)
        d.remedy = _remedy(ours, len(ev.train), parsed.why)
        top = Counter((r["rule"], r.get("message", "")) for dec in ours for r in dec["reasons"][:1])
        d.rule_id, message = top.most_common(1)[0][0]
        d.message = str(message)[:240]
        for kept, e in enumerate(similar_ok(ev, MAX_FIXTURES)):
            b = ev.base_cache.get(e["id"])
            if b is None:
                b = ev.base_cache[e["id"]] = decide(base, e["input"])
            if b.get("source") == "error" or json.dumps(e["input"], sort_keys=True) in seen:
                continue
            fixtures.append({"id": f"{name}-keep-{kept + 1:03d}", "input": e["input"], "expect": _expect(b),
                             "why": "keep", "origin": e["id"]})
        d.fixtures = fixtures
        fixed = d.verification["llm"]["fixed"]
        verify(d, ev, base_snapshot, base)
        d.verification.setdefault("llm", {})["fixed"] = fixed
        if d.verified:
            return _Outcome(d, [])
        return _Outcome(d, _verification_feedback(d, missed))


def _reject(d: ClaudeDraft, problems: list[str], *, compiled: bool = False) -> _Outcome:
    d.reasons = problems
    d.verified = False
    d.verification["compiled"] = compiled
    return _Outcome(d, problems)


def _remedy(ours: list[dict[str, Any]], train: int, why: str) -> Remedy:
    actions = Counter(str(dec["action"]) for dec in ours)
    action = actions.most_common(1)[0][0]
    same = [dec for dec in ours if dec["action"] == action]
    params_seen = Counter(json.dumps(dec.get("params") or {}, sort_keys=True) for dec in same)
    # arbitration params name the agents of each conflict: no single value to quote
    params = {} if action == "arbitrate" else json.loads(params_seen.most_common(1)[0][0])
    evidence = {"train_failures": train, "decided_by_rule": len(ours), "actions": dict(actions)}
    if action == "arbitrate":
        evidence["example_params"] = same[0].get("params") or {}
    return Remedy(action, params, why or f"{action}, as Claude drafted it", evidence)


def _verification_feedback(d: Draft, missed: list[dict[str, Any]]) -> list[str]:
    out = list(d.reasons)
    v = d.verification
    failing = set(re.findall(r"fixture (\S+?):", " ".join(d.reasons)))
    for f in d.fixtures:
        if f["id"] in failing:
            out.append(f"fixture {f['id']} ({f['why']}: {'a failure the rule must change' if f['why'] == 'prevent' else 'successful traffic that must stay as it is'}) "
                       f"input: {_short(f['input'])}")
    if v.get("holdout"):
        h, t = v["holdout"], v.get("train") or {}
        out.append(f"figures: held-out failures prevented {h.get('prevented')}/{h.get('events')}; training failures "
                   f"changed {t.get('prevented')}/{t.get('events')}; successful events changed (collateral) "
                   f"{(v.get('collateral') or {}).get('changed')} of {(v.get('collateral') or {}).get('ok_events')}")
    for e in missed[:3]:
        out.append(f"a training failure the rule leaves as logged: {_short(e['input'])}")
    for x in (v.get("collateral") or {}).get("examples", [])[:3]:
        out.append(f"successful traffic the rule changes ({x['base']} -> {x['candidate']}): {_short(x['input'])}")
    return out


def _feedback(attempt: int, problems: list[str]) -> str:
    lines = [f"Attempt {attempt} was not accepted:"]
    lines += [f"- {p}" for p in problems[:12]] or ["- (no details)"]
    lines += ["", "Fix these and answer again in the same format: the `When:` and `Why:` lines, then exactly one "
              "```rego block holding the whole module."]
    return redact_text("\n".join(lines))  # compile errors quote the module, verification quotes inputs


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return str(exc.message)
