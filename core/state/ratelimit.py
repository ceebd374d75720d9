"""Per-user token-bucket rate limiting (memory backend; the Redis one runs the same rule in Lua)."""
from __future__ import annotations

import time

from .expiring import ExpiringDict


class MemoryRateLimiter:
    """``rate`` tokens per second refill a bucket of ``burst``; each message takes one."""

    def __init__(self, rate: float, burst: int, max_users: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        idle = burst / rate if rate > 0 else 3600
        self._buckets: ExpiringDict[str, tuple[float, float]] = ExpiringDict(maxsize=max_users, ttl=max(idle, 1))

    async def allow(self, user: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[user] = (tokens - 1.0 if allowed else tokens, now)
        return allowed
