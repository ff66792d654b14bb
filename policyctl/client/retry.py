"""When to try a gateway request again: bounded attempts, exponential backoff with jitter, a total deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried on 502/503/504 and on connection errors and timeouts.

    The n-th retry waits `backoff * multiplier**(n-1)` seconds, at most `max_backoff`, less a
    random share of up to `jitter` of it (so a fleet of agents does not retry in step); a
    `Retry-After` from the gateway is waited at least, up to `max_retry_after`. A call gives
    up after `attempts` requests, or as soon as the next wait would end past `deadline`
    seconds from its start: a decision that comes too late is no decision.
    """

    attempts: int = 4
    backoff: float = 0.05
    multiplier: float = 2.0
    max_backoff: float = 1.0
    jitter: float = 0.5
    deadline: float = 5.0
    max_retry_after: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.deadline <= 0:
            raise ValueError(f"RetryPolicy.deadline must be positive, got {self.deadline}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter must be between 0 and 1, got {self.jitter}")

    def wait(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        base = min(self.max_backoff, self.backoff * self.multiplier ** (retry - 1))
        delay = base * (1 - self.jitter * rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


NO_RETRY = RetryPolicy(attempts=1)


class Attempts:
    """The bookkeeping of one call under a RetryPolicy: request timeouts and waits within the deadline."""

    def __init__(self, policy: RetryPolicy, rng: random.Random, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.rng = rng
        self.clock = clock
        self.started = clock()
        self.sent = 0

    def timeout(self, per_request: float) -> float:
        """The timeout of the next request: `per_request`, cut to what is left of the deadline."""
        self.sent += 1
        left = self.policy.deadline - (self.clock() - self.started)
        return max(0.001, min(per_request, left))

    def next_wait(self, retry_after: float | None) -> float | None:
        """The wait before the next attempt, or None when the call must give up now."""
        if self.sent >= self.policy.attempts:
            return None
        delay = self.policy.wait(self.sent, retry_after, self.rng)
        if self.clock() - self.started + delay >= self.policy.deadline:
            return None
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
