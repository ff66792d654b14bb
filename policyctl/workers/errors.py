"""What can go wrong with a worker process, as the parent sees it; each policy turns these into its own errors."""

from __future__ import annotations


class ChildGone(Exception):
    """The worker's pipe closed (or sent what no worker sends); `before_request` says the request never got there.

    A worker that died while idle never saw the request, so the caller may safely try
    another one; one that died after it did must not be asked again.
    """

    def __init__(self, before_request: bool) -> None:
        super().__init__("worker gone")
        self.before_request = before_request


class Expired(Exception):
    """The deadline passed while waiting on a worker's pipe."""


class SpawnFailed(Exception):
    """A worker did not start: it could not be run, died, or did not say hello in time."""
