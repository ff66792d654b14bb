"""Typed records that cross stages (events, decisions, fixtures, override headers, clusters, drafts, shadow reports): dataclasses, JSON Schemas, validation; no I/O."""

from policyctl.model.records import (
    ACTIONS,
    FAILURES,
    KINDS,
    STATUSES,
    Decision,
    Event,
    Fixture,
    OverrideHeader,
    Reason,
    parse_override_header,
    validate_input,
)

__all__ = ["ACTIONS", "FAILURES", "KINDS", "STATUSES", "Decision", "Event", "Fixture", "OverrideHeader",
           "Reason", "parse_override_header", "validate_input"]
