"""Outbound delivery under slow endpoints, against real local receivers: one endpoint that hangs
never delays another (per-endpoint in-flight cap), and the attempt timeout is a sharp line: a
2xx received before it is never sent again, no answer within it is retried (at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.outbox.service import record_event
from oms.webhooks.outbound.models import Attempt
from tests.webhooks.conftest import RelayFactory
from tests.webhooks.receiver import Receiver


async def _subscribe(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> str:
    resp = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": url, "event_types": ["return.*"]},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _events(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> None:
    """``n`` events, each about its own order (no ordering between them), in one transaction."""
    async with sessionmaker() as session, session.begin():
        for i in range(n):
            await record_event(
                session,
                type="return.requested",
                aggregate_type="order",
                aggregate_id=f"o{i}",
                data={"return_id": f"r{i}", "order_id": f"o{i}", "lines": []},
            )


async def _wait_for(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll ``check`` until it holds; return the seconds it took, fail after ``within``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not reached within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _outcomes(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(Attempt.outcome, Attempt.error).order_by(Attempt.id))
        return [(outcome, error) for outcome, error in rows.all()]


async def _statuses(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
        )
        return {status: int(n) for status, n in rows.all()}


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    n, timeout = 24, 5.0
    async with Receiver(hang=asyncio.Event()) as hanging, Receiver() as healthy:
        assert hanging.hang is not None
        await _subscribe(client, admin, hanging.url)
        await _subscribe(client, admin, healthy.url)
        await _events(sessionmaker, n)
        relay = relay_factory(
            webhook_timeout_s=timeout,
            worker_concurrency=16,
            worker_batch_size=50,
            webhook_endpoint_concurrency=4,
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(relay.run(stop=stop))
        try:

            async def healthy_has_all() -> bool:
                return len(healthy.receipts) == n

            # every event reaches the healthy endpoint before the hanging one's first timeout
            took = await _wait_for(healthy_has_all, within=timeout - 1)
            assert {outcome for outcome, _ in await _outcomes(engine)} <= {"succeeded"}
            assert len(set(healthy.ids())) == n
            # the hanging endpoint holds its own slots only (none of its requests has timed out
            # yet: every connection it got is still waiting)
            assert hanging.connections == 4 and hanging.receipts == []

            async def hanging_retried() -> bool:
                return any(outcome == "retry" for outcome, _ in await _outcomes(engine))

            # ...while the hanging endpoint times out and is retried per policy
            await _wait_for(hanging_retried, within=timeout + 3)
            timed_out = [e for o, e in await _outcomes(engine) if o == "retry"]
            assert timed_out and all(e == f"timed out after {timeout:g} s" for e in timed_out)
        finally:
            hanging.hang.set()
            stop.set()
            await asyncio.wait_for(worker, timeout + 5)
    print(f"healthy endpoint: {n} events in {took:.2f} s")


async def test_a_2xx_before_the_timeout_is_never_sent_again(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Status line and headers arrive just under the timeout, the body well after it: the
    attempt succeeded (the body is only logged), so the event is sent once."""
    timeout = 1.0
    async with Receiver(delay=0.6, body_delay=1.5) as late_body:
        await _subscribe(client, admin, late_body.url)
        await _events(sessionmaker, 3)
        relay = relay_factory(webhook_timeout_s=timeout)

        async def settled() -> bool:
            await relay.run_once()
            return (await _statuses(engine)) == {"succeeded": 3}

        await _wait_for(settled, within=10)
        await relay.run_once()  # nothing is due any more: nothing is sent again
    assert sorted(Counter(late_body.ids()).values()) == [1, 1, 1]
    assert [o for o, _ in await _outcomes(engine)] == ["succeeded"] * 3


async def test_no_answer_within_the_timeout_is_retried_at_least_once(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """A receiver that answers after the timeout processed the request, but oms cannot know:
    the attempt failed and the event is sent again with the same ``webhook-id``."""
    async with Receiver(delay=1.5) as late:
        await _subscribe(client, admin, late.url)
        await _events(sessionmaker, 1)
        relay = relay_factory(webhook_timeout_s=0.5)
        await relay.run_once()
        assert await _outcomes(engine) == [("retry", "timed out after 0.5 s")]
        late.delay = 0

        async def settled() -> bool:
            await relay.run_once()
            return (await _statuses(engine)) == {"succeeded": 1}

        await _wait_for(settled, within=10)

        async def late_answer_given() -> bool:  # the first request is answered at 1.5 s
            return len(late.receipts) == 2

        await _wait_for(late_answer_given, within=5)
    ids = late.ids()
    assert len(ids) == 2 and len(set(ids)) == 1  # twice, after a genuine timeout; same id


async def test_an_in_flight_delivery_is_never_taken_over_by_another_worker(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Each answer comes in under the timeout, several in a row to one slow endpoint, with two
    workers: no delivery is sent twice, even with a lease configured shorter than an attempt
    can take (the relay holds a claim for at least the timeout plus a margin)."""
    async with Receiver(delay=0.4) as slow:
        await _subscribe(client, admin, slow.url)
        await _events(sessionmaker, 8)
        workers = [
            relay_factory(
                webhook_timeout_s=1.0,
                webhook_lease_s=0.5,
                worker_concurrency=2,
                worker_batch_size=10,
            )
            for _ in range(2)
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop=stop)) for w in workers]
        try:

            async def all_sent() -> bool:
                return (await _statuses(engine)) == {"succeeded": 8}

            await _wait_for(all_sent, within=15)
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, 5)
    assert sorted(Counter(slow.ids()).values()) == [1] * 8
    assert [o for o, _ in await _outcomes(engine)] == ["succeeded"] * 8


def test_the_lease_must_outlast_the_timeout() -> None:
    with pytest.raises(ValidationError, match="OMS_WEBHOOK_LEASE_S"):
        Settings(webhook_timeout_s=60, webhook_lease_s=60)
    with pytest.raises(ValidationError):
        Settings(webhook_timeout_s=0)
    assert Settings(webhook_timeout_s=30).webhook_lease_s >= 30
