"""A client that goes away while its request waits for an admission turn (oms.shared.admission)
behind a real uvicorn with oms's HTTP protocol: the request leaves the line at once (access line
499) and is never run. It used to keep its place, wait for its turn (up to the admission
timeout) and then run in full for nobody: under overload, a line of clients that had given up
held up those still waiting."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.main import create_app
from oms.server import uvicorn_options
from tests.helpers import auth, order_body, stock, until_waiting_for_a_lock


@pytest.fixture
async def port(migrated: str, clean_db: AsyncEngine) -> AsyncIterator[int]:
    settings = Settings(
        database_url=migrated, db_pool_size=2, max_in_flight=1, admission_timeout_s=30
    )
    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        options = uvicorn_options(Settings()) | {"lifespan": "off", "log_config": None}
        srv = uvicorn.Server(uvicorn.Config(application, **options))
        srv.config.load()
        srv.lifespan = srv.config.lifespan_class(srv.config)
        await srv.startup(sockets=[sock])
        try:
            yield sock.getsockname()[1]
        finally:
            await srv.shutdown()
            sock.close()


async def test_a_client_leaving_while_its_request_waits_for_a_turn_is_dropped_at_once(
    client: httpx.AsyncClient,
    port: int,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oms.access")
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    admin = auth(keys["admin"])
    placed = await client.post("/v1/orders", json=order_body(), headers=admin)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]

    def lines(path: str) -> list[int]:  # the access lines of GET ``path``
        return [
            r.status  # type: ignore[attr-defined]
            for r in caplog.records
            if getattr(r, "path", None) == path and getattr(r, "method", None) == "GET"
        ]

    async with (
        engine.connect() as holder,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        await holder.execute(
            text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order_id}
        )
        stuck = asyncio.create_task(  # takes the only turn, waiting for the order lock
            http.post(f"/v1/orders/{order_id}/transitions", json={"to": "paid"}, headers=admin)
        )
        await until_waiting_for_a_lock(engine)  # the transition waits for the order lock

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /v1/orders?limit=1 HTTP/1.1\r\nHost: oms\r\n"
            + f"Authorization: {admin['Authorization']}\r\n\r\n".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # waiting for its turn
        writer.close()
        for _ in range(100):
            if lines("/v1/orders"):
                break
            await asyncio.sleep(0.02)
        assert lines("/v1/orders") == [499]  # left the line at once

        await holder.rollback()  # the lock goes: the transition ends, the turn is free
        done = await stuck
        assert done.status_code == 200, done.text
        assert (await http.get(f"/v1/orders/{order_id}", headers=admin)).status_code == 200
    assert lines("/v1/orders") == [499]  # the request that was left never ran
