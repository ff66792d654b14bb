"""policyctl: Git-backed policy-as-code for multi-agent systems."""

__version__ = "0.1.0"
