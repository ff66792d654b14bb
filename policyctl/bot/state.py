"""What the bot remembers, kept where the forge keeps it: markers in pull request bodies and comments.

The bot keeps no state file of its own: a scheduled run in CI starts from a fresh
checkout, so anything it must remember lives on the forge (for the local forge, in the
repository's pull request records). The body of every bot pull request starts with

    <!-- policyctl:cluster=<fingerprint> size=<failures> inputs=<digest> base=<commit> -->

so a pull request closed without merging says which cluster it answered and how big
that cluster was: the cluster is ignored until it has at least doubled. `base` is the
commit the draft was verified against, so `policyctl pr merge` can tell that the base
moved since and say so while it verifies again. A comment the
bot leaves on a branch a person pushed to carries the tip it saw, so it is left once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyctl.bot.forge import PullRequest
from policyctl.errors import InputError

# fields after size are key=value in any order; unknown ones are skipped, so a body written by a
# newer policyctl still parses
_MARKER = re.compile(r"<!--\s*policyctl:cluster=(?P<fp>[A-Za-z0-9._-]+)\s+size=(?P<size>\d+)"
                     r"(?P<rest>(?:\s+[a-z_]+=[^\s<>]*)*)\s*-->")
_FIELD = re.compile(r"([a-z_]+)=([^\s<>]*)")
_HEX = re.compile(r"[0-9a-f]+")
_HUMAN = re.compile(r"<!--\s*policyctl:human-commits\s+tip=(?P<sha>[0-9a-f]{7,40})\s*-->")
GROWTH = 2  # a rejected cluster comes back once it is this many times bigger
BODY_FORMAT = 1  # bump when the body changes shape, so open pull requests are redrawn once


@dataclass(frozen=True)
class Marker:
    """The cluster a bot pull request answers, its size when the body was last written, and a digest of
    everything the draft and body were made from (logs, base commit, options), so the same inputs
    again are recognised without drafting anew, and the base commit the draft was verified
    against (empty in bodies written before it was recorded)."""

    fingerprint: str
    size: int
    inputs: str = ""
    base: str = ""

    def render(self) -> str:
        inputs = f" inputs={self.inputs}" if self.inputs else ""
        base = f" base={self.base}" if self.base else ""
        return f"<!-- policyctl:cluster={self.fingerprint} size={self.size}{inputs}{base} -->"


def read_marker(body: str) -> Marker | None:
    """The marker in a pull request body, or None when there is none (not the bot's, or edited away)."""
    m = _MARKER.search(body or "")
    if m is None:
        return None
    fields = dict(_FIELD.findall(m.group("rest") or ""))
    inputs, base = fields.get("inputs", ""), fields.get("base", "")
    return Marker(m.group("fp"), int(m.group("size")), inputs if _HEX.fullmatch(inputs) else "",
                  base if _HEX.fullmatch(base) else "")


def inputs_digest(logs: list[Path], *, base_sha: str, options: dict[str, Any]) -> str:
    """A digest of the logs' names and bytes, the base commit and the options that shape a draft and body.

    Drafting is deterministic given these (the induce drafter; an LLM drafter is not asked
    again for the same inputs), so an open pull request whose marker carries the same digest
    is up to date, and the bot skips it without drafting or replaying.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"format": BODY_FORMAT, "base": base_sha, "options": options}, sort_keys=True).encode())
    for path in logs:
        h.update(b"\0" + path.name.encode() + b"\0")
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    return h.hexdigest()[:16]


def human_marker(tip: str) -> str:
    return f"<!-- policyctl:human-commits tip={tip} -->"


def commented_on(comments: list[str], tip: str) -> bool:
    """Whether the bot already left its comment about someone else's commits at `tip`."""
    return any(m.group("sha") == tip for c in comments for m in _HUMAN.finditer(c))


def ignored_because(pr: PullRequest | None, size: int) -> str | None:
    """Why a cluster of `size` failures is ignored because of `pr`, or None when it is not."""
    if pr is None or not pr.closed_unmerged:
        return None
    marker = read_marker(pr.body)
    if marker is None:
        return (f"pull request #{pr.number} was closed without merging and its body no longer says the "
                "cluster's size; reopen it to let the bot update it")
    if size >= GROWTH * marker.size:
        return None
    return (f"pull request #{pr.number} was closed without merging at {marker.size} failures; "
            f"ignored until the cluster reaches {GROWTH * marker.size} (now {size})")
