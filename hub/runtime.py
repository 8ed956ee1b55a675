"""What a running hub process holds: settings, database, Redis, rate limiter, channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from hub.channels.base import Channel
from hub.channels.registry import build_channels, build_forms
from hub.channels.webform import WebForm
from hub.db import Database
from hub.embedded_redis import embedded_url
from hub.ratelimit import RateLimiter
from hub.settings import Settings

log = structlog.get_logger(__name__)


def redis_url(settings: Settings) -> str:
    """The configured Redis, or the embedded one `hub up` runs in the data dir."""
    return settings.redis_url or embedded_url(settings.data_dir)


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}queue"


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: ArqRedis
    limiter: RateLimiter
    channels: dict[str, Channel] = field(default_factory=dict)
    forms: dict[str, WebForm] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, db: Database | None = None) -> Runtime:
        """Connections are lazy: nothing here blocks, and /healthz reports what is down."""
        redis = ArqRedis.from_url(redis_url(settings), socket_connect_timeout=2)
        return cls(
            settings=settings,
            db=db or Database(settings.database_url),
            redis=redis,
            limiter=RateLimiter(redis, settings.redis_prefix),
            channels=build_channels(settings),
            forms=build_forms(settings),
        )

    async def enqueue(
        self, function: str, *args: object, job_id: str, defer_until: datetime | None = None
    ) -> None:
        """Queue a job by name; the job id carries the prefix so hubs sharing Redis never meet.
        `defer_until` runs it no earlier than that time."""
        await self.redis.enqueue_job(
            function,
            *args,
            _job_id=f"{self.settings.redis_prefix}{job_id}",
            _queue_name=queue_name(self.settings),
            _defer_until=defer_until,
        )

    async def enqueue_committed(
        self, function: str, *args: object, job_id: str, defer_until: datetime | None = None
    ) -> bool:
        """Queue the job for work already committed. Redis down only logs: every such job is
        queued again by a sweep (stale replies, due reminders, unsent notifications), and its
        id makes that harmless. False when it could not be queued now."""
        try:
            await self.enqueue(function, *args, job_id=job_id, defer_until=defer_until)
        except (RedisError, OSError) as exc:
            log.warning("enqueue_failed", function=function, job_id=job_id, error=str(exc))
            return False
        return True

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.dispose()
