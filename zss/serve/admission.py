"""Admission for `zss serve`: how many requests may be inside the server at once, decided before
anything of a request is read or decoded.

One inference runs at a time (the service's lock is the queue). A request is admitted when fewer
than `limit` requests are inside (the one running and those waiting for it); any other is refused
at once, before its body is read, with HTTP 503 and a `Retry-After` estimated from the measured time
per request and the queue ahead of it, so a burst of uploads costs no memory for the ones refused.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import Iterator

DEFAULT_LIMIT = 8        # requests inside at once (one running, the rest waiting)
FIRST_GUESS = 1.0        # seconds per request before one was measured
RETRY_RANGE = (1, 60)    # Retry-After is clipped to this many seconds


class Busy(Exception):
    """Refused: `queued` requests are inside; try again after `retry_after` seconds."""

    def __init__(self, queued: int, retry_after: int) -> None:
        super().__init__(f"server busy: {queued} request(s) ahead; retry in {retry_after} s")
        self.queued = queued
        self.retry_after = retry_after


class Admission:
    """A counter of the requests inside, with a running mean of the seconds each one holds the model."""

    def __init__(self, limit: int = DEFAULT_LIMIT, smoothing: float = 0.3) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, got {limit}")
        self.limit = limit
        self.smoothing = smoothing
        self.inside = 0
        self.seconds = FIRST_GUESS
        self.refused = 0
        self._lock = threading.Lock()

    def retry_after(self, ahead: int) -> int:
        """Whole seconds until `ahead` requests have had their turn at the measured pace."""
        lo, hi = RETRY_RANGE
        return int(min(hi, max(lo, math.ceil(ahead * self.seconds))))

    def enter(self) -> None:
        """Admit one request or raise `Busy` (the caller answers 503 + Retry-After)."""
        with self._lock:
            if self.inside >= self.limit:
                self.refused += 1
                raise Busy(self.inside, self.retry_after(self.inside))
            self.inside += 1

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def observe(self, seconds: float) -> None:
        """One request held the model `seconds`: update the running mean (exponential smoothing)."""
        with self._lock:
            self.seconds += self.smoothing * (max(0.0, seconds) - self.seconds)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()
