"""The worker's slow duties run beside its main loop: an SMTP server that accepts connections
and never answers (each session bounded only by OMS_SMTP_TIMEOUT_S) does not hold up webhook
deliveries of events recorded while a message waits on it."""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers import order_body
from tests.webhooks.conftest import RelayFactory
from tests.webhooks.receiver import Receiver


async def test_a_hanging_smtp_server_does_not_hold_up_webhook_deliveries(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sessions: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(writer)  # no greeting, ever: the client waits for its timeout

    smtp = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    smtp_port = smtp.sockets[0].getsockname()[1]
    receiver = await Receiver().start()
    try:
        resp = await client.post(
            "/v1/webhooks/subscriptions",
            json={"url": receiver.url, "event_types": ["order.placed"]},
            headers=admin,
        )
        assert resp.status_code == 201, resp.text
        first = await client.post("/v1/orders", json=order_body(), headers=admin)
        assert first.status_code == 201, first.text

        relay = relay_factory(
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_security="none",
            message_sender="orders@shop.example",
            smtp_timeout_s=60.0,
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(relay.run(stop=stop))
        for _ in range(500):  # the order confirmation is now waiting on the SMTP server
            if sessions:
                break
            await asyncio.sleep(0.01)
        assert sessions, "the worker never connected to the SMTP server"

        second = await client.post(
            "/v1/orders", json=order_body(external_reference="second"), headers=admin
        )
        assert second.status_code == 201, second.text
        started = time.monotonic()
        wanted = {first.json()["id"], second.json()["id"]}
        while {r.payload["data"]["order_id"] for r in receiver.receipts} < wanted:
            assert time.monotonic() - started < 10, "deliveries waited for the SMTP server"
            await asyncio.sleep(0.02)
        assert not worker.done()

        stop.set()
        for writer in sessions:  # the hung sessions end (the send fails, retried later)
            writer.close()
        await asyncio.wait_for(worker, timeout=15)
    finally:
        smtp.close()
        await receiver.stop()
