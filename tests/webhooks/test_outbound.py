"""Outbound webhooks against a real local HTTP receiver: signing, outages, crashes, rollbacks,
retry policy, disabling, redelivery, concurrent workers, and the subscription API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from oms.outbox.service import record_event
from oms.webhooks.outbound.models import Attempt, Delivery, RelayState
from oms.worker import Relay
from tests.helpers import auth, order_body
from tests.webhooks.conftest import RelayFactory, count
from tests.webhooks.receiver import Receiver


async def _subscribe(
    client: httpx.AsyncClient, admin: dict[str, str], url: str, types: list[str] | None = None
) -> dict[str, Any]:
    resp = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": url, "event_types": types or ["order.*"]},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _place(client: httpx.AsyncClient, keys: dict[str, str], **changes: Any) -> str:
    resp = await client.post("/v1/orders", json=order_body(**changes), headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _move(client: httpx.AsyncClient, keys: dict[str, str], order_id: str, to: str) -> None:
    resp = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": to}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text


async def _drain(relay: Relay, until: Any = None, *, rounds: int = 400) -> None:
    """Run relay rounds until ``until()`` holds (or, without it, until a round is idle)."""
    for _ in range(rounds):
        done = await relay.run_once()
        if until is None and not done:
            return
        if until is not None and await until():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the relay did not reach the expected state")


async def _statuses(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
        )
        return {status: int(n) for status, n in rows.all()}


def _per_order(receiver: Receiver) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for r in receiver.receipts:
        if 200 <= r.status < 300:
            out[r.payload["data"]["order_id"]].append(r.payload["type"])
    return out


async def test_delivered_signed_and_verifiable(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
) -> None:
    async with Receiver() as receiver:
        sub = await _subscribe(client, admin, receiver.url)
        assert sub["secret"].startswith("whsec_")
        receiver.secret = sub["secret"]
        order_id = await _place(client, keys)
        await _move(client, keys, order_id, "paid")
        await _drain(relay_factory())
    assert receiver.by_type() == ["order.placed", "order.paid"]
    for receipt in receiver.receipts:
        assert receipt.verified  # checked by the standardwebhooks library in the receiver
        payload = Webhook(sub["secret"]).verify(receipt.body, receipt.headers)
        assert payload["id"] == receipt.webhook_id  # webhook-id is the event id
        assert payload["data"]["order_id"] == order_id
        assert receipt.headers["content-type"] == "application/json"
    log = await client.get("/v1/webhooks/deliveries", params={"order_id": order_id}, headers=admin)
    items = log.json()["items"]
    assert [d["status"] for d in items] == ["succeeded", "succeeded"]
    detail = (await client.get(f"/v1/webhooks/deliveries/{items[0]['id']}", headers=admin)).json()
    attempt = detail["attempt_log"][0]
    assert attempt["outcome"] == "succeeded" and attempt["status_code"] == 200
    assert attempt["duration_ms"] is not None and attempt["response_body"] == '{"ok":true}'
    assert detail["payload"]["type"] == "order.paid"


async def test_receiver_down_then_up_everything_arrives_in_order(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    receiver = Receiver()  # not started: connection refused
    sub = await _subscribe(client, admin, receiver.url)
    receiver.secret = sub["secret"]
    expected: dict[str, list[str]] = {}
    for _ in range(4):
        order_id = await _place(client, keys)
        await _move(client, keys, order_id, "paid")
        await _move(client, keys, order_id, "cancelled")
        expected[order_id] = ["order.placed", "order.paid", "order.cancelled"]
    relay = relay_factory()
    for _ in range(5):
        await relay.run_once()
        await asyncio.sleep(0.06)
    statuses = await _statuses(engine)
    assert statuses.get("failed", 0) == 4  # one head-of-line delivery per order, retrying
    assert statuses.get("pending", 0) == 8  # later events of each order wait their turn
    refused = (
        await client.get("/v1/webhooks/deliveries", params={"status": "failed"}, headers=admin)
    ).json()["items"][0]
    attempts = await client.get(f"/v1/webhooks/deliveries/{refused['id']}", headers=admin)
    assert "ConnectError" in attempts.json()["attempt_log"][0]["error"]
    async with receiver:

        async def all_done() -> bool:
            return (await _statuses(engine)) == {"succeeded": 12}

        await _drain(relay, all_done)
    assert _per_order(receiver) == expected
    assert all(r.verified for r in receiver.receipts)
    assert len(set(receiver.ids())) == 12


async def test_worker_crash_mid_delivery_loses_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    async with Receiver(hang=asyncio.Event()) as receiver:
        sub = await _subscribe(client, admin, receiver.url)
        receiver.secret = sub["secret"]
        await _place(client, keys)
        crashing = relay_factory()
        await crashing.fan_out()
        task = asyncio.create_task(crashing.deliver())
        await asyncio.wait_for(receiver.arrived.wait(), 5)
        task.cancel()  # the worker dies while the request is in flight
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert (await _statuses(engine)) == {"delivering": 1}
        receiver.hang = None
        # another worker, before the lease expires: leaves it alone
        assert await relay_factory().deliver() == 0
        # after the lease expired: takes it over and delivers
        later = relay_factory(clock=lambda: datetime.now(UTC) + timedelta(seconds=31))
        assert await later.deliver() == 1
    assert (await _statuses(engine)) == {"succeeded": 1}
    async with engine.connect() as conn:
        outcomes = (
            (await conn.execute(select(Attempt.outcome).order_by(Attempt.id))).scalars().all()
        )
    assert outcomes == ["lease_expired", "succeeded"]
    ids = receiver.ids()
    assert len(ids) >= 1 and len(set(ids)) == 1  # at least once, same webhook-id to dedupe on


async def test_rolled_back_event_is_never_sent_and_in_flight_one_is_not_skipped(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    async with Receiver() as receiver:
        await _subscribe(client, admin, receiver.url, ["*"])

        async def event(session: AsyncSession, name: str) -> None:
            await record_event(
                session,
                type="return.requested",
                aggregate_type="order",
                aggregate_id=name,
                data={"return_id": name, "order_id": name, "lines": []},
            )

        # 1: rolled back
        async with sessionmaker() as session:
            await session.begin()
            await event(session, "rolled-back")
            await session.rollback()
        # 2: still open while 3 commits and the relay runs
        slow = sessionmaker()
        await slow.begin()
        await event(slow, "slow")
        await slow.flush()
        async with sessionmaker() as session, session.begin():
            await event(session, "quick")
        relay = relay_factory()
        await _drain(relay)
        assert [r.payload["data"]["order_id"] for r in receiver.receipts] == ["quick"]
        async with engine.connect() as conn:
            cursor = (await conn.execute(select(RelayState.outbox_cursor))).scalar_one()
        assert cursor == 0  # waits at the gap: id 1 (rolled back) or 2 (open) may still come
        await slow.commit()
        await slow.close()
        await _drain(relay)
        assert [r.payload["data"]["order_id"] for r in receiver.receipts] == ["quick", "slow"]
        # once the grace period has passed, the cursor moves over the rolled-back id
        await _drain(relay_factory(outbox_gap_grace_s=0))
        async with engine.connect() as conn:
            cursor = (await conn.execute(select(RelayState.outbox_cursor))).scalar_one()
            marks = (await conn.execute(text("SELECT count(*) FROM webhook_dispatched"))).scalar()
        assert cursor == 3 and marks == 0
    assert await count(engine, Delivery) == 2


async def test_retry_policy_4xx_not_retried_408_429_5xx_retried(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    plan = {"A": [500, 429, 408, 200], "B": [400], "C": [302]}
    by_ref: dict[str, list[int]] = {k: list(v) for k, v in plan.items()}

    def respond(receipt: Any) -> int:
        ref = receipt.payload["data"]["external_reference"]
        return by_ref[ref].pop(0) if by_ref[ref] else 200

    async with Receiver(respond=respond, extra_headers={"Retry-After": "0"}) as receiver:
        await _subscribe(client, admin, receiver.url, ["order.placed"])
        for ref in plan:
            await _place(client, keys, external_reference=ref)
        relay = relay_factory()

        async def settled() -> bool:
            s = await _statuses(engine)
            return s == {"succeeded": 1, "dead": 2}

        await _drain(relay, settled)
    sent = defaultdict(list)
    for r in receiver.receipts:
        sent[r.payload["data"]["external_reference"]].append(r.status)
    assert sent == {"A": [500, 429, 408, 200], "B": [400], "C": [302]}
    dead = (
        await client.get("/v1/webhooks/deliveries", params={"status": "dead"}, headers=admin)
    ).json()["items"]
    assert sorted(d["last_status_code"] for d in dead) == [302, 400]


async def test_max_attempts_then_dead(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    async with Receiver(default_status=503) as receiver:
        await _subscribe(client, admin, receiver.url, ["order.placed"])
        await _place(client, keys)
        relay = relay_factory(webhook_max_attempts=3)

        async def dead() -> bool:
            return (await _statuses(engine)) == {"dead": 1}

        await _drain(relay, dead)
    assert [r.status for r in receiver.receipts] == [503, 503, 503]
    delivery = (await client.get("/v1/webhooks/deliveries", headers=admin)).json()["items"][0]
    assert delivery["attempts"] == 3 and delivery["last_error"] == "HTTP 503"
    detail = (await client.get(f"/v1/webhooks/deliveries/{delivery['id']}", headers=admin)).json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["retry", "retry", "dead"]


async def test_failing_endpoint_is_disabled_and_reported(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    async with Receiver(default_status=500) as broken, Receiver() as watcher:
        bad = await _subscribe(client, admin, broken.url, ["order.placed"])
        await _subscribe(client, admin, watcher.url, ["webhook.*"])
        await _place(client, keys)
        relay = relay_factory(webhook_disable_after_failures=3, webhook_disable_after_s=0)

        async def reported() -> bool:
            return len(watcher.receipts) == 1

        await _drain(relay, reported)
        sub = (await client.get(f"/v1/webhooks/subscriptions/{bad['id']}", headers=admin)).json()
        assert sub["enabled"] is False
        assert "3 failed attempts in a row" in sub["disabled_reason"]
        assert len(broken.receipts) == 3
        notice = watcher.receipts[0].payload
        assert notice["type"] == "webhook.endpoint_disabled"
        assert notice["data"]["subscription_id"] == bad["id"]
        # nothing is sent to a disabled endpoint...
        await _drain(relay)
        assert len(broken.receipts) == 3
        # ...until it is enabled again: its waiting delivery resumes
        broken.default_status = 200
        enabled = await client.patch(
            f"/v1/webhooks/subscriptions/{bad['id']}", json={"enabled": True}, headers=admin
        )
        assert enabled.json()["consecutive_failures"] == 0
        await _drain(relay)
    assert [r.status for r in broken.receipts] == [500, 500, 500, 200]


async def test_manual_redelivery_of_one_and_of_everything_since(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
) -> None:
    async with Receiver() as receiver:
        sub = await _subscribe(client, admin, receiver.url)
        start = datetime.now(UTC)
        first = await _place(client, keys)
        await _move(client, keys, first, "paid")
        relay = relay_factory()
        await _drain(relay)
        assert len(receiver.receipts) == 2
        one = (await client.get("/v1/webhooks/deliveries", headers=admin)).json()["items"][-1]
        again = await client.post(f"/v1/webhooks/deliveries/{one['id']}/redeliver", headers=admin)
        assert again.status_code == 200 and again.json()["status"] == "pending"
        await _drain(relay)
        assert receiver.ids()[-1] == receiver.ids()[0]  # same webhook-id: receivers dedupe
        # everything since start, including an event recorded while the sub was disabled
        await client.patch(
            f"/v1/webhooks/subscriptions/{sub['id']}", json={"enabled": False}, headers=admin
        )
        await _move(client, keys, first, "cancelled")
        await _drain(relay)
        assert len(receiver.receipts) == 3
        await client.patch(
            f"/v1/webhooks/subscriptions/{sub['id']}", json={"enabled": True}, headers=admin
        )
        queued = await client.post(
            f"/v1/webhooks/subscriptions/{sub['id']}/redeliver",
            json={"since": start.isoformat()},
            headers=admin,
        )
        assert queued.json() == {"queued": 3}
        await _drain(relay)
    assert receiver.by_type()[3:] == ["order.placed", "order.paid", "order.cancelled"]
    missing = await client.post("/v1/webhooks/deliveries/999999/redeliver", headers=admin)
    assert missing.status_code == 404


async def test_concurrent_workers_share_the_work_without_double_sending(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    async with Receiver() as receiver:
        await _subscribe(client, admin, receiver.url)
        for _ in range(15):
            order_id = await _place(client, keys)
            await _move(client, keys, order_id, "paid")
        async with httpx.AsyncClient(trust_env=False) as other:
            workers = [
                relay_factory(worker_batch_size=4, worker_concurrency=2),
                relay_factory(client=other, worker_batch_size=4, worker_concurrency=2),
            ]
            await workers[0].fan_out()
            stats = await asyncio.gather(*(w.run(once=True) for w in workers))
    assert (await _statuses(engine)) == {"succeeded": 30}
    ids = receiver.ids()
    assert len(ids) == 30 and len(set(ids)) == 30  # each event exactly once
    assert all(s.attempts > 0 for s in stats), [s.attempts for s in stats]
    assert sum(s.attempts for s in stats) == 30
    for types in _per_order(receiver).values():
        assert types == ["order.placed", "order.paid"]


async def test_subscription_api_and_matching(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    bad = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["order.exploded"]},
        headers=admin,
    )
    assert bad.status_code == 422
    bad = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": "ftp://x", "event_types": ["order.*"]},
        headers=admin,
    )
    assert bad.status_code == 422
    for role in ("storefront", "connector", "fulfillment"):
        denied = await client.get("/v1/webhooks/subscriptions", headers=auth(keys[role]))
        assert denied.status_code == 403
    types = (await client.get("/v1/webhooks/event-types", headers=admin)).json()
    assert {"order.shipped", "shipment.shipped", "inventory.low_stock"} <= {
        t["type"] for t in types
    }
    before = await _place(client, keys)  # recorded before the subscription: not sent
    async with Receiver() as receiver:
        sub = await _subscribe(client, admin, receiver.url, ["order.paid"])
        listed = (await client.get("/v1/webhooks/subscriptions", headers=admin)).json()
        assert "secret" not in listed[0]
        order_id = await _place(client, keys)
        await _move(client, keys, order_id, "paid")
        await _move(client, keys, before, "paid")
        await _drain(relay_factory())
        assert receiver.by_type() == ["order.paid", "order.paid"]
        rotated = await client.post(
            f"/v1/webhooks/subscriptions/{sub['id']}/rotate-secret", headers=admin
        )
        receiver.secret = rotated.json()["secret"]
        await _move(client, keys, order_id, "cancelled")
        await _drain(relay_factory())
        assert len(receiver.receipts) == 2  # order.cancelled is not subscribed to
        await client.patch(
            f"/v1/webhooks/subscriptions/{sub['id']}",
            json={"event_types": ["order.*"]},
            headers=admin,
        )
        await _move(client, keys, before, "cancelled")
        await _drain(relay_factory())
        assert receiver.by_type()[2:] == ["order.cancelled"]
        assert receiver.receipts[-1].verified
    gone = await client.delete(f"/v1/webhooks/subscriptions/{sub['id']}", headers=admin)
    assert gone.status_code == 204
    assert await count(engine, Delivery) == 0


async def test_oms_worker_command_drains_once(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    database_url: str,
    engine: AsyncEngine,
) -> None:
    async with Receiver() as receiver:
        await _subscribe(client, admin, receiver.url)
        await _place(client, keys)
        env = os.environ | {
            "OMS_DATABASE_URL": database_url,
            "OMS_LOG_FORMAT": "json",
            "OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on 127.0.0.1
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "oms.cli",
            "worker",
            "--once",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["succeeded"] == 1
    assert receiver.by_type() == ["order.placed"]
    assert (await _statuses(engine)) == {"succeeded": 1}


async def test_crash_on_the_last_attempt_leaves_a_visible_dead_delivery(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
    engine: AsyncEngine,
) -> None:
    async with Receiver(hang=asyncio.Event()) as receiver:
        await _subscribe(client, admin, receiver.url)
        await _place(client, keys)
        crashing = relay_factory(webhook_max_attempts=1)
        await crashing.fan_out()
        task = asyncio.create_task(crashing.deliver())
        await asyncio.wait_for(receiver.arrived.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        later = relay_factory(
            webhook_max_attempts=1, clock=lambda: datetime.now(UTC) + timedelta(seconds=31)
        )
        assert await later.deliver() == 0
    dead = (await client.get("/v1/webhooks/deliveries", headers=admin)).json()["items"]
    assert [(d["status"], d["last_error"]) for d in dead] == [("dead", "gave up after 1 attempts")]
    detail = (await client.get(f"/v1/webhooks/deliveries/{dead[0]['id']}", headers=admin)).json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["lease_expired"]
    # and it can still be sent by hand
    await client.post(f"/v1/webhooks/deliveries/{dead[0]['id']}/redeliver", headers=admin)
    async with Receiver(port=receiver.port) as back:
        await _drain(relay_factory())
    assert back.by_type() == ["order.placed"]
    assert (await _statuses(engine)) == {"succeeded": 1}
