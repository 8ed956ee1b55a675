"""Per-client rate limits on Redis with `limits`, shared by every web process."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until a request would be allowed again


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # passed through to redis-py
            key_prefix=f"{prefix}limits",
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def _items(self, rate: str) -> list[RateLimitItem]:
        if rate not in self._parsed:
            self._parsed[rate] = parse_many(rate)
        return self._parsed[rate]

    async def hit(self, rate: str, *identifiers: str) -> Verdict:
        """Count one request against every limit in `rate` ('30/minute;500/day')."""
        for item in self._items(rate):
            if not await self._limiter.hit(item, *identifiers):
                stats = await self._limiter.get_window_stats(item, *identifiers)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Verdict(False, wait)
        return Verdict(True)
