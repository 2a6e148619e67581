"""Request rate per API key: a token bucket for each key, in this process's memory.

A key may send ``per_minute`` requests at once, then one more each ``60 / per_minute`` seconds.
The buckets live in the API process (one uvicorn worker); several API processes would each
allow the full rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, key: str) -> int:
        """Spend one request of ``key``'s budget: 0 if allowed, else whole seconds to wait."""
        if not self.enabled:
            return 0
        with self._lock:
            now = self.clock()
            tokens, counted = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - counted) * self.refill_per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.refill_per_second))
