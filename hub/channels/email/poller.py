"""The loop that keeps one mailbox read: a Redis lock so one worker polls it, IMAP IDLE when
the server has it (polling every poll_seconds otherwise), and on any failure the reason on
/healthz and a retry with backoff - never a crash loop, never a lost mail."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.channels.email.channel import Email
from hub.channels.email.sync import (
    AfterCommit,
    Ingest,
    record_failure,
    record_ok,
    sync_mailbox,
)
from hub.channels.email.transport import Mailbox, MailboxError, describe_error
from hub.db import Database

log = structlog.get_logger(__name__)

LOCK_SECONDS = 60
IDLE_SECONDS = 20  # IDLE is renewed this often, well inside the lock's lifetime
MAX_BACKOFF = 300.0
# Atomic compare-and-act, so a worker never extends or frees a lock another one took over.
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


def backoff(failures: int) -> float:
    return float(min(MAX_BACKOFF, 2 ** min(failures, 9)))


class MailboxPoller:
    """Polls one e-mail channel until stopped."""

    def __init__(
        self,
        db: Database,
        redis: Redis,
        prefix: str,
        channel: Email,
        ingest: Ingest,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.db = db
        self.redis = redis
        self.channel = channel
        self.ingest = ingest
        self.after_commit = after_commit
        self.lock_key = f"{prefix}email:poll:{channel.name}"
        self.token = secrets.token_hex(8)
        self.mailbox: Mailbox | None = None
        self.stopping = asyncio.Event()
        self.passes = 0  # completed sync passes, for tests and logs

    async def _lock(self) -> bool:
        try:
            if await self.redis.set(self.lock_key, self.token, nx=True, ex=LOCK_SECONDS):
                return True
            renewed = await self.redis.eval(  # type: ignore[misc]  # typed as sync-or-async
                RENEW, 1, self.lock_key, self.token, str(LOCK_SECONDS)
            )
            return bool(renewed)
        except (RedisError, OSError) as exc:
            log.warning("mail_lock_unavailable", channel=self.channel.name, error=str(exc))
            return False

    async def _keep_going(self) -> bool:
        """Between chunks of a long pass: not stopping, and the mailbox is still ours."""
        return not self.stopping.is_set() and await self._lock()

    async def _unlock(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.eval(RELEASE, 1, self.lock_key, self.token)  # type: ignore[misc]  # as above

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            if not await self._lock():
                await self._sleep(min(self.channel.poll_seconds, LOCK_SECONDS / 2))
                continue
            try:
                await self._hold()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping.is_set():
                    break  # the IDLE we interrupted to stop: not a failure of the mailbox
                reason = exc.reason if isinstance(exc, MailboxError) else describe_error(exc)
                try:
                    failures = await record_failure(self.db, self.channel, reason)
                except Exception as db_exc:  # the database is down too: keep counting here
                    failures += 1
                    log.error("mail_state_unsaved", channel=self.channel.name, error=str(db_exc))
                wait = backoff(failures)
                log.error(
                    "mailbox_failed",
                    channel=self.channel.name,
                    error=reason,
                    failures=failures,
                    retry_in=wait,
                )
                await self._sleep(wait)
            finally:
                await self._close()
        await self._unlock()

    async def _hold(self) -> None:
        """Connected and holding the lock: sync, wait for mail, repeat."""
        self.mailbox = Mailbox(self.channel.imap)
        await asyncio.to_thread(self.mailbox.connect)
        log.info("mailbox_connected", channel=self.channel.name, idle=self.mailbox.can_idle)
        while not self.stopping.is_set():
            outcome = await sync_mailbox(
                self.db,
                self.channel,
                self.mailbox,
                self.ingest,
                self.after_commit,
                self._keep_going,
            )
            await record_ok(self.db, self.channel)
            self.passes += 1
            if outcome.fetched or outcome.rejected:
                log.info(
                    "mailbox_synced",
                    channel=self.channel.name,
                    stored=outcome.stored,
                    duplicates=outcome.duplicates,
                    rejected=outcome.rejected,
                    ignored=outcome.ignored,
                    resynced=outcome.resynced,
                )
            if not await self._lock():
                return  # another worker holds the mailbox now
            if self.mailbox.can_idle:
                wait = min(self.channel.poll_seconds, IDLE_SECONDS)
                await asyncio.to_thread(self.mailbox.idle, wait)
            else:
                await self._sleep(self.channel.poll_seconds)

    async def _close(self) -> None:
        mailbox, self.mailbox = self.mailbox, None
        if mailbox is not None:
            await asyncio.to_thread(mailbox.close)

    def stop(self) -> None:
        """Stop soon: a blocking IDLE is interrupted so the thread ends now."""
        self.stopping.set()
        if self.mailbox is not None:
            self.mailbox.interrupt()
