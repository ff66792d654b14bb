"""When to start the replacement of a worker that died: at once for a rare death, later and later in a crash loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Deaths per slot within a window, and the delay before the next start they call for.

    The first `free` deaths in `window_s` cost nothing (a worker killed on a deadline is
    routine); after that the delay doubles from `base_s` up to `cap_s`, so a worker that
    cannot start or keeps crashing does not burn a core being restarted.
    """

    window_s: float = 30.0
    free: int = 2
    base_s: float = 0.1
    cap_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _deaths: dict[Hashable, list[float]] = field(default_factory=dict)

    def died(self, slot: Hashable = None) -> None:
        """Count a death (or a failed start) of the worker in `slot`."""
        self._deaths.setdefault(slot, []).append(self.clock())

    def delay(self, slot: Hashable = None) -> float:
        """Seconds to wait before starting `slot`'s next worker."""
        now = self.clock()
        recent = [t for t in self._deaths.get(slot, []) if now - t < self.window_s]
        self._deaths[slot] = recent
        if len(recent) <= self.free:
            return 0.0
        return min(self.cap_s, self.base_s * 2 ** (len(recent) - self.free))
