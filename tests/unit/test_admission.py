"""The admission gate (oms.shared.admission): at most `limit` requests in the app, the others
served strictly in arrival order, a bounded wait answered 503 server_busy, probes never held."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from oms.shared.admission import AdmissionGate


class _App:
    """An ASGI app whose requests wait until the test releases them, recording who ran."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.inside = 0
        self.most_inside = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"].rsplit("/", 1)[-1]
        self.started.append(name)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            if scope["path"].startswith("/v1/"):
                await self.release.setdefault(name, asyncio.Event()).wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": name.encode()})
        finally:
            self.inside -= 1


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gate")


async def _until(cond: Any) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_waiters_are_let_in_in_arrival_order_and_never_more_than_the_limit() -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=2, timeout_s=5)
    async with _client(gate) as client:
        tasks = []
        for i in range(8):
            tasks.append(asyncio.create_task(client.get(f"/v1/r{i}")))
            await _until(lambda i=i: len(inner.started) + gate.waiting == i + 1)
        assert inner.started == ["r0", "r1"] and gate.waiting == 6
        # finish them out of order: each freed turn goes to the longest waiter
        for name in ["r1", "r0", "r3", "r2", "r5", "r4", "r7", "r6"]:
            await _until(lambda n=name: n in inner.started)
            inner.release.setdefault(name, asyncio.Event()).set()
        results = await asyncio.gather(*tasks)
    assert [r.status_code for r in results] == [200] * 8
    assert inner.started == [f"r{i}" for i in range(8)]
    assert inner.most_inside == 2


async def test_a_wait_past_the_timeout_is_a_503_server_busy_problem_and_does_nothing() -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=1, timeout_s=0.2)
    async with _client(gate) as client:
        first = asyncio.create_task(client.get("/v1/slow"))
        await _until(lambda: inner.started == ["slow"])
        busy = await client.get("/v1/late")
        assert busy.status_code == 503
        assert busy.headers["content-type"] == "application/problem+json"
        assert busy.headers["retry-after"] == "1"
        body = json.loads(busy.content)
        assert body["code"] == "server_busy" and body["status"] == 503
        assert inner.started == ["slow"]  # the late request never reached the app
        # probes pass by while the gate is full
        assert (await client.get("/healthz")).status_code == 200
        inner.release["slow"].set()
        assert (await first).status_code == 200
        # the turn was returned: the next request goes straight in
        inner.release["next"] = asyncio.Event()
        inner.release["next"].set()
        assert (await client.get("/v1/next")).status_code == 200
    assert gate.waiting == 0


async def test_a_waiter_that_goes_away_gives_up_its_place_and_leaks_no_turn() -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=1, timeout_s=5)
    async with _client(gate) as client:
        first = asyncio.create_task(client.get("/v1/a"))
        await _until(lambda: inner.started == ["a"])
        gone = asyncio.create_task(client.get("/v1/b"))
        third = asyncio.create_task(client.get("/v1/c"))
        await _until(lambda: gate.waiting == 2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        inner.release["a"].set()
        await first
        await _until(lambda: "c" in inner.started)
        inner.release["c"].set()
        assert (await third).status_code == 200
    assert inner.started == ["a", "c"]
    assert gate._free == 1 and gate.waiting == 0  # noqa: SLF001 - the turn came back


async def test_limit_zero_lets_everything_in() -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=0, timeout_s=0.1)
    async with _client(gate) as client:
        tasks = [asyncio.create_task(client.get(f"/v1/x{i}")) for i in range(5)]
        await _until(lambda: len(inner.started) == 5)
        for i in range(5):
            inner.release.setdefault(f"x{i}", asyncio.Event()).set()
        assert [r.status_code for r in await asyncio.gather(*tasks)] == [200] * 5
