"""Readers for every log format, behind one protocol and one registry, chosen by content."""

from policyctl.ingest.base import Mapping, Reader, ReadSummary
from policyctl.ingest.registry import (
    FORMATS,
    READERS,
    choose,
    load_mapping,
    normalize,
    normalize_file,
    read_events,
)

__all__ = ["FORMATS", "READERS", "Mapping", "ReadSummary", "Reader", "choose", "load_mapping", "normalize",
           "normalize_file", "read_events"]
