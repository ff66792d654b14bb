"""`policyctl.toml`: log sources, budgets and the action vocabulary of a policy repository. No I/O.

The vocabulary says, per action type, which input fields are *alternatives*: ways of
doing the same thing that an agent may be routed over (`file_share` over `smb`, `sftp`
or `nfs`). Every other field is the agent's *intent* (what it is trying to do, where,
with what), and a route never rewrites it. With no vocabulary declared, nothing is
routable: drafted rules arbitrate or deny.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from policyctl.errors import ValidationError
from policyctl.model.schema import schema_errors
from policyctl.model.values import tag

CONFIG_FILE = "policyctl.toml"
ANY_TYPE = "*"
DEFAULT_MAX_COLLATERAL_PCT = 0.5
DEFAULT_MIN_PREVENTED_PCT = 95.0
DEFAULT_OVERRIDE_HORIZON_DAYS = 30


@dataclass(frozen=True)
class LogSources:
    """Where replays (CI, `policyctl shadow`, `pr merge`) find history when no `--logs` is given."""

    sources: tuple[str, ...] = ()
    token_env: str | None = None
    evidence: bool = True


@dataclass(frozen=True)
class Budgets:
    max_collateral_pct: float = DEFAULT_MAX_COLLATERAL_PCT
    min_prevented_pct: float = DEFAULT_MIN_PREVENTED_PCT
    override_horizon_days: int = DEFAULT_OVERRIDE_HORIZON_DAYS


@dataclass(frozen=True)
class Vocabulary:
    """Per action type, the alternative fields (dotted input paths) and their allowed values."""

    alternatives: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        return any(self.alternatives.values())

    def for_type(self, action_type: Any) -> dict[str, tuple[Any, ...]]:
        """The alternatives that apply to an action of this type (its own, then the `*` ones)."""
        out = dict(self.alternatives.get(ANY_TYPE, {}))
        if isinstance(action_type, str):
            out.update(self.alternatives.get(action_type, {}))
        return out

    def allows(self, action_type: Any, path: str, value: Any) -> bool:
        """Whether a route may set `path` to `value` for this action type."""
        values = self.for_type(action_type).get(path)
        return values is not None and any(tag(value) == tag(v) for v in values)

    def to_dict(self) -> dict[str, Any]:
        return {t: {p: list(v) for p, v in alts.items()} for t, alts in sorted(self.alternatives.items())}


@dataclass(frozen=True)
class RepoConfig:
    """The whole of `policyctl.toml`; defaults when the file is absent."""

    logs: LogSources = field(default_factory=LogSources)
    budgets: Budgets = field(default_factory=Budgets)
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    present: bool = False


def parse_config(data: bytes | str | None, *, where: str = CONFIG_FILE) -> RepoConfig:
    """Parse and validate `policyctl.toml`; errors name the file and the field path."""
    if data is None:
        return RepoConfig()
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"not valid TOML ({exc})", where=where) from exc
    errors = schema_errors("config", doc)
    if errors:
        path, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(message + more, path=path, where=where)
    logs = doc.get("logs", {})
    budgets = doc.get("budgets", {})
    vocab: dict[str, dict[str, tuple[Any, ...]]] = {}
    for action_type, entry in doc.get("vocabulary", {}).items():
        vocab[action_type] = {path: tuple(values) for path, values in entry.get("alternatives", {}).items()}
    return RepoConfig(
        logs=LogSources(sources=tuple(logs.get("sources", ())), token_env=logs.get("token_env"),
                        evidence=bool(logs.get("evidence", True))),
        budgets=Budgets(
            max_collateral_pct=float(budgets.get("max_collateral_pct", DEFAULT_MAX_COLLATERAL_PCT)),
            min_prevented_pct=float(budgets.get("min_prevented_pct", DEFAULT_MIN_PREVENTED_PCT)),
            override_horizon_days=int(budgets.get("override_horizon_days", DEFAULT_OVERRIDE_HORIZON_DAYS))),
        vocabulary=Vocabulary(vocab), present=True)


def route_fields(params: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The (dotted path, value) leaves a route's params write into the input."""
    if not isinstance(params, dict):
        return [(prefix, params)] if prefix else []
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.extend(route_fields(value, path) if isinstance(value, dict) else [(path, value)])
    return out


DEFAULT_CONFIG_TEXT = """\
# policyctl.toml: what this policy repository decides once (docs/config.md).
version = 1

[logs]
# History that `policyctl shadow`, CI and `policyctl pr merge` replay when no --logs
# is given: paths or globs in this repository, or https:// URLs (a bearer token is
# read from the environment variable named by token_env). The evidence samples the
# bot commits with its pull requests (shadow_evidence/) are replayed too.
sources = []
# token_env = "POLICYCTL_LOGS_TOKEN"

[budgets]
max_collateral_pct = 0.5       # percent of logged successful traffic a candidate may change
min_prevented_pct = 95         # held-out failures a drafted rule must prevent
override_horizon_days = 30     # how far ahead an override may expire

# The action vocabulary: per action type, the fields that are *alternatives* an agent
# may be routed over, with their allowed values. Every other field is the agent's
# intent (what it is doing, to what, where): a route never rewrites it. Without a
# declaration here, drafted rules arbitrate or deny; they never route.
#
# [vocabulary.file_share.alternatives]
# "action.protocol" = ["smb", "sftp", "nfs"]
"""
