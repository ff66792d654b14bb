"""The evidence sample committed with each bot pull request: the history CI and reviewers replay.

The raw exported logs stay where they are (they may be large, private, or gone by the
time a reviewer looks); what travels with the pull request is a masked sample:
- the cluster's failures (up to MAX_FAILURES, spread over time), so a replay shows them
  prevented or still exposed;
- a stratified sample of successful traffic: every near miss of the rule (traffic that
  meets all but one of its conditions, where collateral would show first), then the rest
  spread evenly over (kind, action type, resource kind) strata, so no kind of traffic the
  rule could touch is missing.
Every record goes through `policyctl.redact.redact_value` (every string masked, every value
under a secret key replaced; ids kept, so the replay's references hold); the sample is capped
in bytes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import orjson

from policyctl.draft.data import spread
from policyctl.model.draft import Draft
from policyctl.redact import redact_value
from policyctl.shadow.sources import EVIDENCE_DIR

MAX_FAILURES = 400
MAX_OK = 1600
MAX_BYTES = 1024 * 1024


def evidence_path(fingerprint: str) -> str:
    return f"{EVIDENCE_DIR}{fingerprint}.jsonl"


def _stratum(e: dict[str, Any]) -> tuple[str, str, str]:
    inp = e.get("input") or {}
    action: dict[str, Any] = inp["action"] if isinstance(inp.get("action"), dict) else {}
    resource: dict[str, Any] = inp["resource"] if isinstance(inp.get("resource"), dict) else {}
    return (str(inp.get("kind")), str(action.get("type")), str(resource.get("kind")))


def sample_evidence(d: Draft, failures: list[dict[str, Any]], ok: list[dict[str, Any]], *, seed: int = 0) -> bytes:
    """The masked evidence sample for draft `d`, as JSON Lines, in time order, at most MAX_BYTES."""
    chosen_fail = spread(sorted(failures, key=lambda e: (str(e.get("ts") or ""), str(e.get("id")))), MAX_FAILURES)
    near: list[dict[str, Any]] = []
    rest: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in ok:
        inp = e.get("input") or {}
        misses = min((sum(1 for c in body if not c.holds(inp)) for body in d.bodies), default=99)
        (near if misses <= 1 else rest[_stratum(e)]).append(e)
    rng = random.Random(seed)
    picked = near[: MAX_OK // 2] if len(near) > MAX_OK // 2 else near
    budget = MAX_OK - len(picked)
    strata = sorted(rest)
    if strata and budget > 0:
        per = max(1, budget // len(strata))
        for key in strata:
            group = rest[key]
            picked.extend(group if len(group) <= per else rng.sample(group, per))
    records = sorted(chosen_fail + picked[:MAX_OK], key=lambda e: (str(e.get("ts") or ""), str(e.get("id"))))
    out = bytearray()
    for e in records:
        line = orjson.dumps(redact_value(e)) + b"\n"
        if len(out) + len(line) > MAX_BYTES:
            break
        out += line
    return bytes(out)
