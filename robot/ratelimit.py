"""Per-client token bucket (ROBOT_RATE_LIMIT_RPS / ROBOT_RATE_LIMIT_BURST; 0 rps = off).

The client key is the TCP peer address. Only when the peer is a trusted proxy
(``ROBOT_TRUSTED_PROXIES``, default ``127.0.0.1,::1`` — the local nginx) is the client
taken from ``X-Real-IP``, else from the last ``X-Forwarded-For`` entry (the one nginx
appended). Anyone else's forwarding headers are ignored, so a client cannot pick its own
bucket. The bucket table is bounded: idle (full) buckets are swept, and past
``max_clients`` the oldest are dropped.
"""

from __future__ import annotations

import math


class RateLimiter:
    def __init__(self, rps: float, burst: float, max_clients: int = 100_000):
        self.max_clients = max_clients
        self._buckets: dict[str, list] = {}
        self.configure(rps, burst)

    def configure(self, rps: float, burst: float) -> None:
        self.rps = float(rps)
        self.burst = max(1.0, float(burst))

    def allow(self, key: str, now: float) -> float:
        """0.0 when allowed, else the seconds until a token is available."""
        rps = self.rps
        if rps <= 0:
            return 0.0
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_clients:
                self.sweep(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = b[0] + (now - b[1]) * rps
        if tokens > self.burst:
            tokens = self.burst
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / rps

    def sweep(self, now: float) -> None:
        rps, burst = self.rps, self.burst
        if rps <= 0:
            self._buckets.clear()
            return
        full = [k for k, b in self._buckets.items() if b[0] + (now - b[1]) * rps >= burst]
        for k in full:
            del self._buckets[k]
        excess = len(self._buckets) - self.max_clients // 2
        if excess > 0:  # still crowded: drop the oldest-created entries
            for k in list(self._buckets)[:excess]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
