"""Per-key rate limits (token buckets, throttled-py), kept in this process.

The message limit is checked on every send, so it must cost microseconds, not
a network round trip: each process keeps its own buckets in memory (bounded;
the least recently used keys are dropped first, which only ever forgives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from throttled import RateLimiterType, Throttled, rate_limiter, store

# Keys kept per limiter: enough for every user active within a bucket's refill
# time on one process; older ones are dropped (their buckets were full anyway).
MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int  # 0 when allowed


class KeyedLimit:
    """`limit` events per `period` for each key, with bursts up to `burst`."""

    def __init__(self, limit: int, period: timedelta, burst: int | None = None) -> None:
        self._throttle = Throttled(
            using=RateLimiterType.TOKEN_BUCKET.value,
            quota=rate_limiter.per_duration(period, limit, burst=burst or limit),
            store=store.MemoryStore(options={"MAX_SIZE": MAX_KEYS}),
        )

    def hit(self, key: str) -> Verdict:
        """Take one token for `key` if there is one."""
        result = self._throttle.limit(key)
        if not result.limited:
            return Verdict(True, 0)
        return Verdict(False, max(1, math.ceil(result.state.retry_after)))


def message_limit(per_second: int, burst: int) -> KeyedLimit:
    return KeyedLimit(per_second, timedelta(seconds=1), burst)
