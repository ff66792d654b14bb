"""The decision gateway: HTTP API, hot swap from git, evaluation workers, decision log, metrics."""
