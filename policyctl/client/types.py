"""Typed helpers of the agents' side: inputs an agent sends, the outcome it reports, the routed input."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Required, TypedDict

from policyctl.errors import ValidationError
from policyctl.model import STATUSES, Decision
from policyctl.model.values import merge_params

# The gateway refuses bodies over 256 KiB; an outcome message is evidence for a person and a
# clusterer, and its first few kilobytes say what failed.
MAX_MESSAGE_CHARS = 4000


class AgentRef(TypedDict, total=False):
    """One agent of an input: `id` is required, `role` and `priority` are read by policies."""

    id: Required[str]
    role: str
    priority: float


class ActionSpec(TypedDict, total=False):
    """What one agent does: `type` is required; every other field is open (protocol, tool, …)."""

    type: Required[str]


class Input(TypedDict, total=False):
    """What an agent asks the gateway about (the Input schema); policies read any further field."""

    kind: Required[str]
    agents: list[AgentRef]
    action: ActionSpec
    resource: dict[str, Any]
    context: dict[str, Any]


def action_input(action_type: str, *, agent: str | AgentRef | None = None, role: str | None = None,
                 resource: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
                 **fields: Any) -> dict[str, Any]:
    """An `action` input: one agent doing `action_type` with `fields`, to `resource`.

    >>> action_input("file_share", agent="etl-3", role="etl", protocol="smb", file_type="parquet")
    {'kind': 'action', 'action': {'type': 'file_share', 'protocol': 'smb', 'file_type': 'parquet'}, \
'agents': [{'id': 'etl-3', 'role': 'etl'}]}
    """
    out: dict[str, Any] = {"kind": "action", "action": {"type": action_type, **fields}}
    if agent is not None:
        ref: dict[str, Any] = {"id": agent} if isinstance(agent, str) else dict(agent)
        if role is not None:
            ref["role"] = role
        out["agents"] = [ref]
    if resource is not None:
        out["resource"] = dict(resource)
    if context is not None:
        out["context"] = dict(context)
    return out


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in: objects merge key by key, anything else is replaced.

    The result shares nothing with either argument, so an agent may change it freely.
    """
    return copy.deepcopy(merge_params(base, patch))


def routed_input(input: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The input to act on: for `route`, `params` deep-merged into it; otherwise a copy of it."""
    if decision.action == "route" and decision.params:
        return deep_merge(input, decision.params)
    return copy.deepcopy(dict(input))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened after a decision, as `POST /v1/outcome` takes it (the Event's `outcome`)."""

    status: str
    message: str | None = None
    code: str | None = None
    duration_ms: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValidationError(f"{self.status!r} is not one of {', '.join(STATUSES)}", path="outcome.status")
        if self.duration_ms is not None and self.duration_ms < 0:
            raise ValidationError(f"{self.duration_ms} is negative", path="outcome.duration_ms")

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "denied")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.message is not None:
            out["message"] = self.message[:MAX_MESSAGE_CHARS]
        if self.code is not None:
            out["code"] = self.code
        if self.duration_ms is not None:
            out["duration_ms"] = round(self.duration_ms, 3)
        return out


def describe_denial(decision: Decision) -> str:
    """One line a person or a model reads: why this decision says no."""
    if decision.source == "client_error":
        error = decision.error or {}
        return (f"the gateway gave no decision ({error.get('code', 'client_error')}: {error.get('message', '')}); "
                f"failing closed")
    parts = []
    for reason in decision.reasons:
        where = f" ({reason.file})" if reason.file else ""
        parts.append(f"{reason.rule}{where}: {reason.message}" if reason.message else f"{reason.rule}{where}")
    if decision.error:
        parts.append(f"{decision.error.get('code')}: {decision.error.get('message')}")
    why = "; ".join(parts) or "no reason given"
    return f"denied by {decision.source} at revision {(decision.revision or '-')[:12]}: {why}"
