"""The worker's message job: produce messages from the outbox, then send the due ones.

``oms worker`` runs it in its loop (``oms.worker``: :meth:`MessageJob.run_when_due`); tests run
:meth:`MessageJob.run_once` directly with their own clock. Each step is its own short
transaction and every send happens between transactions. Providers are read per round: a
provider saved through the API (``PUT /v1/messages/providers/{channel}``), else the
``OMS_SMTP_*`` settings for email. A channel without a provider gets no new messages; any it
already had wait, unclaimed, until one is configured again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.messages import delivery, metrics, producer, providers_config
from oms.messages.providers import (
    EmailProvider,
    OutgoingEmail,
    OutgoingSms,
    SendOutcome,
    SmsProvider,
)
from oms.shared.clock import utcnow
from oms.shared.targets import Resolver, TargetGuard, system_resolver

log = logging.getLogger("oms.messages")


@dataclass
class MessageStats:
    produced_events: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class MessageJob:
    """``email`` / ``sms``: providers to use instead of the configured ones (tests);
    ``resolver``: the DNS seam of the SMS provider's target check (as the webhook relay's)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: httpx.AsyncClient,
        worker: str,
        clock: Callable[[], datetime] = utcnow,
        email: EmailProvider | None = None,
        sms: SmsProvider | None = None,
        batch: int = 20,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.client = client
        self.worker = worker
        self.clock = clock
        self.email = email
        self.sms = sms
        self.batch = batch
        self.stats = MessageStats()
        self.guard = TargetGuard(
            allow_private=settings.webhook_allow_private_targets, resolver=resolver
        )
        self._ran_at = float("-inf")
        self._busy = False
        self.policy = delivery.RetryPolicy(
            max_attempts=settings.message_max_attempts,
            backoff_base_s=settings.message_backoff_base_s,
            backoff_max_s=settings.message_backoff_max_s,
        )
        self.lease = timedelta(
            seconds=max(
                settings.message_lease_s,
                max(settings.smtp_timeout_s, settings.sms_timeout_s) + 30.0,
            )
        )

    async def produce(self) -> int:
        """Turn committed outbox events into messages of the channels that have a provider
        (until caught up)."""
        email, sms = await self._providers()
        channels = frozenset(n for n, p in (("email", email), ("sms", sms)) if p is not None)
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                read = await producer.produce(
                    session,
                    settings=self.settings,
                    channels=channels,
                    batch=200,
                    grace=timedelta(seconds=self.settings.outbox_gap_grace_s),
                    now=self.clock(),
                )
            total += read
            if read < 200:
                break
        self.stats.produced_events += total
        return total

    async def _providers(self) -> tuple[EmailProvider | None, SmsProvider | None]:
        if self.email is not None and self.sms is not None:
            return self.email, self.sms
        async with self.sessionmaker() as session, session.begin():
            email, sms = await providers_config.load(
                session, settings=self.settings, client=self.client, guard=self.guard
            )
        return self.email or email, self.sms or sms

    async def claim(self, *, channels: list[str]) -> list[delivery.ClaimedMessage]:
        """Lease due messages of ``channels`` to this worker (what a worker does first)."""
        async with self.sessionmaker() as session, session.begin():
            return await delivery.claim(
                session,
                limit=self.batch,
                lease=self.lease,
                max_attempts=self.settings.message_max_attempts,
                worker=self.worker,
                now=self.clock(),
                channels=channels,
            )

    async def send_due(self) -> int:
        """Claim due messages of the channels that have a provider, send them concurrently,
        record each attempt."""
        email, sms = await self._providers()
        channels = [name for name, p in (("email", email), ("sms", sms)) if p is not None]
        if not channels:
            return 0
        claimed = await self.claim(channels=channels)
        await asyncio.gather(*(self._attempt(item, email, sms) for item in claimed))
        return len(claimed)

    async def _attempt(
        self,
        item: delivery.ClaimedMessage,
        email: EmailProvider | None,
        sms: SmsProvider | None,
    ) -> None:
        started = time.monotonic()
        try:
            outcome = await self.send(item, email, sms)
        except Exception as exc:  # a provider bug must not stop the worker: retried later
            log.exception("message provider failed", extra={"message_id": item.id})
            outcome = SendOutcome(
                ok=False, error=f"provider error: {type(exc).__name__}", retry=True
            )
        duration_ms = int((time.monotonic() - started) * 1000)
        try:
            async with self.sessionmaker() as session, session.begin():
                result = await delivery.finish(
                    session,
                    claimed=item,
                    outcome=outcome,
                    policy=self.policy,
                    duration_ms=duration_ms,
                    worker=self.worker,
                    now=self.clock(),
                )
        except Exception as exc:
            # the lease runs out and the message is claimed again: at least once
            log.error(
                "could not record a message attempt",
                extra={"message_id": item.id, "error": type(exc).__name__},
            )
            return
        self.stats.attempts += 1
        self.stats.outcomes[result] = self.stats.outcomes.get(result, 0) + 1
        metrics.ATTEMPTS.labels(item.channel, result).inc()
        log.info(
            "customer message attempt",
            extra={
                "event": "message.attempt",
                "message_id": item.id,
                "channel": item.channel,
                "event_type": item.event_type,
                "attempt": item.attempt,
                "outcome": result,
                "error": outcome.error,
            },
        )

    async def send(
        self,
        item: delivery.ClaimedMessage,
        email: EmailProvider | None,
        sms: SmsProvider | None,
    ) -> SendOutcome:
        """One attempt through the channel's provider (a missing one is a retryable failure)."""
        if item.channel == "email":
            if email is None:
                return SendOutcome(ok=False, error="no email provider configured", retry=True)
            domain = providers_config.message_id_domain(self.settings, email)
            return await email.send(
                OutgoingEmail(
                    to=item.recipient,
                    subject=item.subject or "",
                    text=item.body_text,
                    html=item.body_html,
                    message_id=f"<{item.idempotency_key}@{domain}>",
                )
            )
        if sms is None:
            return SendOutcome(ok=False, error="no SMS provider configured", retry=True)
        return await sms.send(
            OutgoingSms(
                to=item.recipient, text=item.body_text, idempotency_key=item.idempotency_key
            )
        )

    async def run_once(self) -> int:
        """Produce, then send one batch of due messages; returns work done."""
        return await self.produce() + await self.send_due()

    async def run_when_due(self, *, force: bool = False) -> int:
        """:meth:`run_once` when the last round did work or the poll interval has passed (the
        worker's loop turns faster than that while it delivers webhooks)."""
        now = time.monotonic()
        if (
            not force
            and not self._busy
            and now - self._ran_at < self.settings.worker_poll_interval_s
        ):
            return 0
        self._ran_at = now
        done = await self.run_once()
        self._busy = done > 0
        return done
