"""Events, decisions, fixtures and override headers: dataclasses, JSON Schemas, validation; no I/O."""

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
