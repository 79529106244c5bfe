"""Crash safety: `oms serve` is SIGKILLed in the middle of a stream of order placements and
cancellations, restarted, and the client retries what was not acknowledged.

Afterwards: every acknowledged order exists as acknowledged; every order in the database
belongs to an acknowledged request or to a key the client retried (exactly one order per
Idempotency-Key, no duplicates); stock invariants hold and reservations match the open
orders; every committed change has its outbox event, and `oms worker --once` delivers every
one of them to a real HTTP receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.shared.roles import Role
from tests.helpers import assert_stock_invariants, auth, make_key, order_body, stock
from tests.reliability.conftest import OMS, Server
from tests.webhooks.receiver import Receiver

SKUS = {"CRASH-A": 5_000, "CRASH-B": 5_000, "CRASH-C": 5_000}
KILL_AFTER_ACKS = 40  # acknowledged placements before the kill
WORKERS = 8
TIMEOUT = httpx.Timeout(10.0)
# the webhook receiver listens on 127.0.0.1: allowed only by the local-development setting
LOCAL_RECEIVER = {"OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}


@dataclass
class Ledger:
    """What the client knows: acknowledged answers, and requests whose outcome it never got."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key -> body
    placed: dict[str, str] = field(default_factory=dict)  # key -> order id (201 acknowledged)
    refused: dict[str, int] = field(default_factory=dict)  # key -> 4xx acknowledged
    unknown: set[str] = field(default_factory=set)  # keys sent without an answer
    retried: dict[str, str] = field(default_factory=dict)  # key -> order id after the restart
    cancelled: set[str] = field(default_factory=set)  # order ids, cancel acknowledged
    cancel_unknown: set[str] = field(default_factory=set)
    replayed: int = 0

    def cancellable(self) -> list[str]:
        done = self.cancelled | self.cancel_unknown
        return [oid for oid in self.placed.values() if oid not in done]


def _body(rng: random.Random, i: int) -> dict[str, Any]:
    skus = rng.sample(sorted(SKUS), k=rng.randint(1, 3))
    lines = [{"sku": s, "quantity": rng.randint(1, 3), "unit_price": 100 + i} for s in skus]
    return order_body(lines=lines, external_reference=f"crash-{i}")


async def _stream(
    base: str, token: str, ledger: Ledger, stop: asyncio.Event, rng: random.Random
) -> None:
    """Placements (each with its own Idempotency-Key) and cancellations, WORKERS at a time."""
    counter = itertools.count()

    async def one_worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            candidates = ledger.cancellable()
            if candidates and rng.random() < 0.3:
                oid = rng.choice(candidates)
                ledger.cancel_unknown.add(oid)
                try:
                    resp = await client.post(
                        f"/v1/orders/{oid}/transitions", json={"to": "cancelled"}
                    )
                except httpx.TransportError:
                    return
                assert resp.status_code == 200, resp.text
                ledger.cancel_unknown.discard(oid)
                ledger.cancelled.add(oid)
                continue
            i = next(counter)
            key = f"crash-key-{i}"
            ledger.bodies[key] = _body(rng, i)
            ledger.unknown.add(key)
            try:
                resp = await client.post(
                    "/v1/orders", json=ledger.bodies[key], headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                return
            ledger.unknown.discard(key)
            if resp.status_code == 201:
                ledger.placed[key] = resp.json()["id"]
            else:
                assert resp.status_code in (409, 503), resp.text
                ledger.refused[key] = resp.status_code

    headers = auth(token)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT) as client:
        await asyncio.gather(*(one_worker(client) for _ in range(WORKERS)))


async def _kill_when(server: Server, ledger: Ledger, stop: asyncio.Event) -> None:
    for _ in range(600):  # at most 60 s
        if len(ledger.placed) >= KILL_AFTER_ACKS:
            break
        await asyncio.sleep(0.1)
    server.kill()  # SIGKILL while requests are in flight
    stop.set()


async def _recover(base: str, token: str, ledger: Ledger) -> None:
    """The client's duty after a crash: retry with the same keys and bodies."""
    async with httpx.AsyncClient(base_url=base, headers=auth(token), timeout=TIMEOUT) as client:
        for key in sorted(ledger.unknown):
            resp = await client.post(
                "/v1/orders", json=ledger.bodies[key], headers={"Idempotency-Key": key}
            )
            assert resp.status_code in (201, 409), resp.text
            if resp.status_code == 201:
                ledger.retried[key] = resp.json()["id"]
                ledger.replayed += resp.headers.get("Idempotent-Replayed") == "true"
        for oid in sorted(ledger.cancel_unknown):
            resp = await client.post(f"/v1/orders/{oid}/transitions", json={"to": "cancelled"})
            assert resp.status_code in (200, 409), resp.text
            if resp.status_code == 409:
                assert resp.json()["current_status"] == "cancelled", resp.text
            ledger.cancelled.add(oid)
        # an acknowledged order reads back as acknowledged
        for key, oid in ledger.placed.items():
            got = (await client.get(f"/v1/orders/{oid}")).json()
            assert got["external_reference"] == ledger.bodies[key]["external_reference"]
            assert got["status"] == ("cancelled" if oid in ledger.cancelled else "placed")


async def _rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def test_sigkill_mid_stream_loses_nothing_and_invents_nothing(
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    migrated: str,
    tmp_path: Path,
) -> None:
    engine = clean_db
    token = await make_key(sessionmaker, Role.ADMIN)
    await stock(sessionmaker, "BER", SKUS, latitude=52.52, longitude=13.4)
    ledger = Ledger()
    rng = random.Random(20240611)
    async with Receiver() as receiver:
        server = Server(migrated, log_path=tmp_path / "serve.log", env=LOCAL_RECEIVER)
        await asyncio.to_thread(server.start)
        try:
            async with httpx.AsyncClient(base_url=server.base, headers=auth(token)) as c:
                sub = {"url": receiver.url, "event_types": ["*"]}
                assert (await c.post("/v1/webhooks/subscriptions", json=sub)).status_code == 201
            stop = asyncio.Event()
            await asyncio.gather(
                _stream(server.base, token, ledger, stop, rng), _kill_when(server, ledger, stop)
            )
            assert server.proc is not None and server.proc.returncode == -9
            assert len(ledger.placed) >= KILL_AFTER_ACKS
            in_flight = len(ledger.unknown) + len(ledger.cancel_unknown)
            assert in_flight > 0, "the kill hit no request in flight"
            await asyncio.to_thread(server.start)  # same port, same database
            await _recover(server.base, token, ledger)
        finally:
            server.stop()
        print(  # for -s: what the crash did
            f"acknowledged {len(ledger.placed)}, refused {len(ledger.refused)}, in flight "
            f"{in_flight}, replayed after restart {ledger.replayed}, "
            f"cancelled {len(ledger.cancelled)}"
        )

        # -- the database agrees with what the client was told
        expected = set(ledger.placed.values()) | set(ledger.retried.values())
        orders = dict(await _rows(engine, "SELECT id::text, status FROM orders"))
        assert set(orders) == expected, "orders without an acknowledged or retried request"
        keys = await _rows(engine, "SELECT key, order_id::text FROM idempotency_keys")
        assert dict(keys) == ledger.placed | ledger.retried  # one order per key, no duplicates
        for oid, status in orders.items():
            assert status == ("cancelled" if oid in ledger.cancelled else "placed"), oid
        await assert_stock_invariants(engine)
        mismatched = await _rows(
            engine,
            """SELECT o.id FROM orders o
               JOIN (SELECT order_id, sum(quantity) q FROM order_lines GROUP BY order_id) l
                 ON l.order_id = o.id
               LEFT JOIN (SELECT order_id, sum(quantity) q FROM allocations
                          WHERE status = 'open' GROUP BY order_id) a ON a.order_id = o.id
               WHERE coalesce(a.q, 0) <> CASE WHEN o.status = 'cancelled' THEN 0 ELSE l.q END""",
        )
        assert not mismatched, "reservations differ from the open orders' lines"
        events = await _rows(engine, "SELECT aggregate_id, type, event_id::text FROM outbox_events")
        kinds = {(agg, kind) for agg, kind, _ in events}
        for oid in orders:
            assert (oid, "order.placed") in kinds, f"order {oid} has no order.placed event"
        for oid in ledger.cancelled:
            assert (oid, "order.cancelled") in kinds, f"order {oid} has no order.cancelled event"

        # -- the relay delivers every committed event (at least once) to a real endpoint
        env = os.environ | LOCAL_RECEIVER
        env |= {"OMS_DATABASE_URL": migrated, "OMS_OUTBOX_GAP_GRACE_S": "0"}
        proc = await asyncio.create_subprocess_exec(
            *OMS,
            "worker",
            "--once",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        assert proc.returncode == 0, err.decode()[-2000:]
        delivered = {r.webhook_id for r in receiver.receipts if r.status == 200}
        missing = {event_id for _, _, event_id in events} - delivered
        assert not missing, f"{len(missing)} committed events were not delivered"
        statuses = await _rows(engine, "SELECT DISTINCT status FROM webhook_deliveries")
        assert statuses == [("succeeded",)]
    assert token not in server.tail(10_000_000), "the API key appears in the server log"
