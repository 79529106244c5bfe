"""The relay run by ``oms worker``: outbox -> deliveries -> signed HTTP POSTs, plus the sweep
that applies inbound events still waiting for their order.

Each step is its own short transaction; HTTP happens between transactions, never inside one.
Any number of workers may run against one database: fan-out is done by one of them at a time,
deliveries are shared with ``FOR UPDATE SKIP LOCKED``, and a delivery whose worker died is taken
over when its lease expires (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.flows import intake
from oms.shared.clock import utcnow
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.outbound import sender
from oms.webhooks.outbound import service as outbound_service

log = logging.getLogger("oms.worker")


def worker_name() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class RelayStats:
    fanned_out: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    inbox_applied: int = 0


class Relay:
    """One worker's loop. ``client`` is injected (tests pass one bound to a local server)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        settings: Settings,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.client = client
        self.settings = settings
        self.name = name or worker_name()
        self.clock = clock
        self.stats = RelayStats()
        self.policy = outbound_service.RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            disable_after_failures=settings.webhook_disable_after_failures,
            disable_after=timedelta(seconds=settings.webhook_disable_after_s),
        )
        self._last_sweep: datetime | None = None

    async def fan_out(self) -> int:
        """Turn committed outbox events into deliveries (repeats until caught up)."""
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                read = await outbound_service.fan_out(
                    session,
                    batch=500,
                    grace=timedelta(seconds=self.settings.outbox_gap_grace_s),
                    now=self.clock(),
                )
            total += read
            if read < 500:
                break
        self.stats.fanned_out += total
        return total

    async def deliver(self) -> int:
        """Claim one batch of due deliveries, send them concurrently, record each outcome."""
        async with self.sessionmaker() as session, session.begin():
            claimed = await outbound_service.claim(
                session,
                limit=self.settings.worker_batch_size,
                lease=timedelta(seconds=self.settings.webhook_lease_s),
                max_attempts=self.settings.webhook_max_attempts,
                worker=self.name,
                now=self.clock(),
            )
        if not claimed:
            return 0
        gate = asyncio.Semaphore(max(1, self.settings.worker_concurrency))
        results = await asyncio.gather(
            *(self._send_one(item, gate) for item in claimed), return_exceptions=True
        )
        for item, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                # the lease will expire and another attempt will be made: nothing is lost
                log.error(
                    "could not record a webhook attempt",
                    extra={"delivery_id": item.id, "error": repr(result)},
                )
        return len(claimed)

    async def _send_one(self, item: outbound_service.Claimed, gate: asyncio.Semaphore) -> None:
        async with gate:
            result = await sender.send(
                self.client,
                url=item.url,
                secret=item.secret,
                msg_id=str(item.event_id),
                body=sender.encode(item.payload),
                timeout_s=self.settings.webhook_timeout_s,
                now=self.clock(),
            )
        async with self.sessionmaker() as session, session.begin():
            outcome = await outbound_service.finish(
                session,
                claimed=item,
                result=result,
                policy=self.policy,
                worker=self.name,
                now=self.clock(),
            )
        self.stats.attempts += 1
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1

    async def sweep_inbox(self, *, force: bool = False) -> int:
        """Apply pending inbound events whose order now exists; report long-waiting ones."""
        now = self.clock()
        interval = timedelta(seconds=self.settings.inbox_sweep_interval_s)
        if not force and self._last_sweep is not None and now - self._last_sweep < interval:
            return 0
        self._last_sweep = now
        async with self.sessionmaker() as session, session.begin():
            applied = await inbound_service.sweep_pending(session, apply=intake.apply_event)
            waiting = await inbound_service.pending_report(
                session, older_than=now - timedelta(hours=1)
            )
        if waiting:
            log.warning(
                "inbound events still waiting for their order",
                extra={"event": "webhook.inbound.pending", "count": waiting},
            )
        self.stats.inbox_applied += applied
        return applied

    async def run_once(self) -> int:
        """One round: fan out, deliver one batch, sweep the inbox when due. Returns work done."""
        done = await self.fan_out()
        done += await self.deliver()
        done += await self.sweep_inbox()
        return done

    async def run(self, *, stop: asyncio.Event | None = None, once: bool = False) -> RelayStats:
        """Loop until ``stop`` is set; with ``once``, until a round finds nothing to do."""
        stop = stop or asyncio.Event()
        log.info("worker started", extra={"worker": self.name, "once": once})
        if once:
            await self.sweep_inbox(force=True)
        failures = 0
        while not stop.is_set():
            try:
                done = await self.run_once()
                failures = 0
            except (OperationalError, DBAPIError, OSError) as exc:
                failures += 1
                delay = min(30.0, self.settings.worker_poll_interval_s * 2**failures)
                log.warning(
                    "worker round failed; retrying",
                    extra={"worker": self.name, "error": repr(exc), "retry_in_s": delay},
                )
                if once and failures >= 5:
                    raise
                await _sleep_unless(stop, delay)
                continue
            if done:
                continue
            if once:
                break
            await _sleep_unless(stop, self.settings.worker_poll_interval_s)
        log.info(
            "worker stopped",
            extra={"worker": self.name, "attempts": self.stats.attempts, **self.stats.outcomes},
        )
        return self.stats


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The outbound client: no redirects followed (a 3xx is a failure), bounded pool."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=max(4, settings.worker_concurrency * 2)),
        trust_env=False,
    )
