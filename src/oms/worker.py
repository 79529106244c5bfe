"""The relay run by ``oms worker``: outbox -> deliveries -> signed HTTP POSTs, plus the sweep
that applies inbound events still waiting for their order.

Each step is its own short transaction; HTTP happens between transactions, never inside one.
Any number of workers may run against one database: fan-out is done by one of them at a time,
deliveries are shared with ``FOR UPDATE SKIP LOCKED``, and a delivery whose worker died is taken
over when its lease expires (at least once). A worker claims only what it starts sending at
once, at most ``webhook_endpoint_concurrency`` in flight per endpoint, and claims more as each
send finishes: a slow or hanging endpoint holds its own slots, never the others'.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import WEBHOOK_LEASE_MARGIN_S, Settings
from oms.flows import backorders, expiry, intake
from oms.flows import pickup as pickup_flow
from oms.flows import promises as promises_flow
from oms.flows import purchasing as purchasing_flow
from oms.flows import waves as waves_flow
from oms.inventory import feed as stock_feed
from oms.inventory import ledger_export
from oms.messages.job import MessageJob
from oms.shared.clock import utcnow
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.outbound import sender, targets
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
    orders_expired: int = 0
    backorder_units_filled: int = 0
    pickups_uncollected: int = 0
    stock_feed_events: int = 0
    ledger_sealed: int = 0
    shipments_at_risk: int = 0
    shipments_late: int = 0
    purchase_orders_drafted: int = 0
    waves_run: int = 0


class Relay:
    """One worker's loop. ``client`` is injected (tests pass one bound to a local server), and so
    is ``resolver``, the DNS lookup whose answer is checked and connected to."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        settings: Settings,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        resolver: targets.Resolver = targets.system_resolver,
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
        self.guard = targets.TargetGuard(
            allow_private=settings.webhook_allow_private_targets, resolver=resolver
        )
        # a claim outlasts any attempt (settings validate this; a copy made in code may not)
        self.lease = timedelta(
            seconds=max(
                settings.webhook_lease_s, settings.webhook_timeout_s + WEBHOOK_LEASE_MARGIN_S
            )
        )
        self._last_sweep: datetime | None = None
        self._last_expiry: datetime | None = None
        self._last_sla: datetime | None = None
        self._last_reorder: datetime | None = None
        self._last_pickup_sweep: datetime | None = None
        self._last_wave_check: datetime | None = None
        self._last_feed: datetime | None = None
        self._last_seal: datetime | None = None
        self._last_compact: datetime | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # customer messages (issue 22): produced from the outbox, sent by SMTP / HTTP SMS
        self.messages = MessageJob(
            sessionmaker=sessionmaker,
            settings=settings,
            client=client,
            worker=self.name,
            clock=clock,
            resolver=resolver,  # the SMS provider's URL: the same target policy as webhooks
        )
        self._sent = asyncio.Event()
        self._fanned_at = float("-inf")
        self._fanned_last = 0

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

    async def _fan_out_when_due(self, *, force: bool = False) -> int:
        """Fan out when the last fan-out found events (there may be more) or the poll interval
        has passed: waking up because a send finished does not need it."""
        now = time.monotonic()
        interval = self.settings.worker_poll_interval_s
        if force or self._fanned_last or now - self._fanned_at >= interval:
            self._fanned_at = now
            self._fanned_last = await self.fan_out()
            return self._fanned_last
        return 0

    def _free_slots(self) -> int:
        return max(0, self.settings.worker_concurrency - len(self._in_flight))

    async def _claim(self) -> list[outbound_service.Claimed]:
        """Lease as many due deliveries as this worker can start sending now, never more: a
        claimed delivery does not wait for a slot while its lease runs."""
        slots = min(self._free_slots(), max(1, self.settings.worker_batch_size))
        if slots == 0:
            return []
        async with self.sessionmaker() as session, session.begin():
            return await outbound_service.claim(
                session,
                limit=slots,
                lease=self.lease,
                max_attempts=self.settings.webhook_max_attempts,
                endpoint_limit=self.settings.webhook_endpoint_concurrency,
                worker=self.name,
                now=self.clock(),
            )

    async def deliver(self) -> int:
        """Claim what can be sent at once, send it concurrently, record each outcome; return
        when all are done (one round; ``run`` does not wait for rounds)."""
        claimed = await self._claim()
        await asyncio.gather(*(self._attempt(item) for item in claimed))
        return len(claimed)

    async def dispatch(self) -> int:
        """Claim deliveries for the free slots and start sending them, without waiting."""
        claimed = await self._claim()
        for item in claimed:
            task = asyncio.create_task(self._attempt(item), name=f"webhook-delivery-{item.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._sent.set()

    async def _attempt(self, item: outbound_service.Claimed) -> None:
        try:
            await self._send_one(item)
        except Exception as exc:
            # the lease will expire and another attempt will be made: nothing is lost
            log.error(
                "could not record a webhook attempt",
                extra={"delivery_id": item.id, "error": repr(exc)},
            )

    async def _send_one(self, item: outbound_service.Claimed) -> None:
        result = await sender.send(
            self.client,
            url=item.url,
            secret=item.secret,
            msg_id=str(item.event_id),
            body=sender.encode(item.payload),
            timeout_s=self.settings.webhook_timeout_s,
            guard=self.guard,
            now=self.clock(),
        )
        if result.refused:
            log.warning(
                "webhook target refused",
                extra={
                    "event": "webhook.target_refused",
                    "delivery_id": item.id,
                    "subscription_id": str(item.subscription_id),
                    "error": result.error,
                },
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
        """Apply pending inbound events whose order now exists; report long-waiting ones; fill
        backorders whose stock arrived (``flows.backorders.sweep``)."""
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
        # backorders a stock change left for later (over its inline limit, or a crash between
        # its commit and its fills): each order in a transaction of its own
        async with self.sessionmaker() as session:
            self.stats.backorder_units_filled += await backorders.sweep(session)
        return applied

    async def expire_unpaid(self, *, force: bool = False) -> int:
        """Cancel unpaid orders past their expiry policy (``flows.expiry``), at most every
        ``OMS_EXPIRY_SWEEP_INTERVAL_S``; returns how many expired."""
        now = self.clock()
        interval = timedelta(seconds=self.settings.expiry_sweep_interval_s)
        if not force and self._last_expiry is not None and now - self._last_expiry < interval:
            return 0
        self._last_expiry = now
        expired = await expiry.expire_unpaid(self.sessionmaker, now=now)
        self.stats.orders_expired += expired
        return expired

    async def stock_feed(self, *, force: bool = False) -> int:
        """The stock feed's background work (``oms.inventory.feed``, ``ledger_export``): the
        coalesced availability events (every poll interval), the ledger's sealing (every
        ``OMS_LEDGER_SEAL_INTERVAL_S``) and the journal's compaction (every 5 minutes).
        Returns events recorded plus movements sealed."""
        now = self.clock()
        done = 0
        s = self.settings

        def due(last: datetime | None, seconds: float) -> bool:
            return force or last is None or now - last >= timedelta(seconds=seconds)

        if s.stock_feed_events and due(self._last_feed, s.worker_poll_interval_s):
            self._last_feed = now
            for _ in range(10):  # a backlog is taken in a few batches per round, not at once
                result = await stock_feed.publish_availability(
                    self.sessionmaker, now=now, interval=timedelta(seconds=s.stock_feed_interval_s)
                )
                self.stats.stock_feed_events += result.events
                done += result.events + (1 if result.journal_rows else 0)
                if not result.more:
                    break
        if due(self._last_seal, s.ledger_seal_interval_s):
            self._last_seal = now
            async with self.sessionmaker() as session, session.begin():
                sealed = await ledger_export.seal(session)
            self.stats.ledger_sealed += sealed
            done += sealed
        if due(self._last_compact, 300.0):
            self._last_compact = now
            async with self.sessionmaker() as session, session.begin():
                await stock_feed.compact(session)
        return done

    async def expire_uncollected(self, *, force: bool = False) -> int:
        """Mark click-and-collect pickups past their store's window uncollected
        (``flows.pickup``), at most every ``OMS_PICKUP_SWEEP_INTERVAL_S``; returns how many."""
        now = self.clock()
        interval = timedelta(seconds=self.settings.pickup_sweep_interval_s)
        last = self._last_pickup_sweep
        if not force and last is not None and now - last < interval:
            return 0
        self._last_pickup_sweep = now
        expired = await pickup_flow.expire_uncollected(self.sessionmaker, now=now)
        self.stats.pickups_uncollected += expired
        return expired

    async def run_waves(self, *, force: bool = False) -> int:
        """Run the waves that are due (``flows.waves``: schedule, pool size or cut-off), checked
        at most every ``OMS_WAVE_CHECK_INTERVAL_S``; returns how many ran."""
        now = self.clock()
        interval = timedelta(seconds=self.settings.wave_check_interval_s)
        last = self._last_wave_check
        if not force and last is not None and now - last < interval:
            return 0
        self._last_wave_check = now
        ran = await waves_flow.run_due_waves(self.sessionmaker, now=now)
        self.stats.waves_run += ran
        return ran

    async def promises_and_reorder(self, *, force: bool = False) -> int:
        """Announce shipments at risk or late against their promise (``flows.promises``, every
        ``OMS_SLA_SWEEP_INTERVAL_S``) and draft purchase orders where an ``auto_draft`` reorder
        policy's point was crossed (``flows.purchasing``, every
        ``OMS_REORDER_SWEEP_INTERVAL_S``); returns events and drafts."""
        now = self.clock()
        s = self.settings
        done = 0

        def due(last: datetime | None, seconds: float) -> bool:
            return force or last is None or now - last >= timedelta(seconds=seconds)

        if due(self._last_sla, s.sla_sweep_interval_s):
            self._last_sla = now
            sla = await promises_flow.check_sla(
                self.sessionmaker, now=now, at_risk_lead=timedelta(hours=s.sla_at_risk_hours)
            )
            self.stats.shipments_at_risk += sla.at_risk
            self.stats.shipments_late += sla.late
            done += sla.at_risk + sla.late
        if due(self._last_reorder, s.reorder_sweep_interval_s):
            self._last_reorder = now
            drafted = await purchasing_flow.draft_where_crossed(self.sessionmaker, now=now)
            self.stats.purchase_orders_drafted += drafted
            done += drafted
        return done

    async def run_once(self) -> int:
        """One round: fan out, deliver one batch (and wait for it), sweep the inbox when due.
        Returns work done."""
        done = await self.fan_out()
        done += await self.deliver()
        done += await self.sweep_inbox()
        done += await self.expire_unpaid()
        done += await self.expire_uncollected()
        done += await self.promises_and_reorder()
        done += await self.stock_feed()
        done += await self.messages.run_once()
        done += await self.run_waves()
        return done

    async def _side_loop(
        self,
        name: str,
        duty: Callable[[], Awaitable[int]],
        stop: asyncio.Event,
        halt: asyncio.Event,
    ) -> None:
        """Run ``duty`` until ``stop`` or ``halt``: again at once after a round that did work,
        else after the poll interval; a round failing on the database backs off like the main
        loop; any other error ends the loop and the main loop raises it."""
        failures = 0
        while not (stop.is_set() or halt.is_set()):
            try:
                done = await duty()
                failures = 0
            except (OperationalError, DBAPIError, OSError) as exc:
                failures += 1
                delay = min(30.0, self.settings.worker_poll_interval_s * 2**failures)
                log.warning(
                    "worker duty failed; retrying",
                    extra={
                        "worker": self.name,
                        "duty": name,
                        "error": repr(exc),
                        "retry_in_s": delay,
                    },
                )
                await _sleep_unless(stop, delay, halt)
                continue
            if not done:
                await _sleep_unless(stop, self.settings.worker_poll_interval_s, halt)

    async def run(self, *, stop: asyncio.Event | None = None, once: bool = False) -> RelayStats:
        """Loop until ``stop`` is set; with ``once``, until nothing is due or in flight.

        Sends run in the background, up to ``worker_concurrency`` at once: the loop claims more
        as soon as one finishes, so a slow endpoint never holds up a round. On stop, sends in
        flight are finished (each is bounded by the timeout)."""
        stop = stop or asyncio.Event()
        log.info("worker started", extra={"worker": self.name, "once": once})
        if once:
            await self.sweep_inbox(force=True)
        # the duties that may wait for long (an SMTP session up to OMS_SMTP_TIMEOUT_S, a wave's
        # solve up to its time limit) run in loops of their own: never holding up webhook
        # deliveries, the stock feed, expiry or the SLA sweep (with ``once``: in turn, below)
        halt = asyncio.Event()
        side = (
            []
            if once
            else [
                asyncio.create_task(
                    self._side_loop("messages", self.messages.run_when_due, stop, halt)
                ),
                asyncio.create_task(self._side_loop("waves", self.run_waves, stop, halt)),
            ]
        )
        failures = 0
        idle_rounds = 0
        try:
            while not stop.is_set():
                self._sent.clear()
                try:
                    done = await self._fan_out_when_due(force=once)
                    started = await self.dispatch()
                    done += started + await self.sweep_inbox()
                    done += await self.expire_unpaid()
                    done += await self.expire_uncollected()
                    done += await self.promises_and_reorder()
                    done += await self.stock_feed()
                    if once:
                        done += await self.messages.run_when_due(force=True)
                        done += await self.run_waves()
                    for task in side:  # a side loop ended by an error: the worker fails with it
                        if task.done() and not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
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
                if started and self._free_slots():
                    continue  # more may be due right now
                if once and not done and not self._in_flight:
                    # idle: but another worker's outcome may have been committed just after
                    # this round's claim read (a successor it held back is due now): stop
                    # only after a second idle round, a moment later
                    idle_rounds += 1
                    if idle_rounds >= 2:
                        break
                    await _sleep_unless(stop, 0.05)
                    continue
                idle_rounds = 0
                # until a send finishes (a slot is free), the poll interval passes, or stop
                await _sleep_unless(stop, self.settings.worker_poll_interval_s, self._sent)
        except BaseException:
            for task in (*self._in_flight, *side):
                task.cancel()
            raise
        finally:
            halt.set()  # the side loops end after their current round (each one is bounded)
            if self._in_flight or side:
                await asyncio.gather(*self._in_flight, *side, return_exceptions=True)
        for task in side:  # a side loop's error as the worker stopped: raised, not lost
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        log.info(
            "worker stopped",
            extra={"worker": self.name, "attempts": self.stats.attempts, **self.stats.outcomes},
        )
        return self.stats


async def _sleep_unless(stop: asyncio.Event, seconds: float, *wake: asyncio.Event) -> None:
    """Sleep ``seconds``, or less if ``stop`` or one of ``wake`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, *wake)]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The outbound client: no redirects followed (a 3xx is a failure), bounded pool."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=max(4, settings.worker_concurrency * 2)),
        trust_env=False,
    )
