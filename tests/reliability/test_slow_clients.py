"""Slow and oversized clients against a real `oms serve`, over raw sockets: a request's headers
and body must arrive within their timeouts (else 408 and the connection is closed), oversized
headers get 431, and none of it keeps a normal request from being served."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import Server

HEADER_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 2.0
DRIP_S = 0.25  # one byte every DRIP_S: a client far slower than any timeout allows
GIVE_UP_S = 7.0  # how long a slow client keeps dripping if the server never cuts it off


@pytest.fixture(scope="module")
def server(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("slow") / "serve.log"
    env = {
        "OMS_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "OMS_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    srv = Server(migrated, log_path=log, env=env).start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Outcome:
    closed_after: float | None  # seconds from connect until the server closed; None: never
    received: bytes

    @property
    def status(self) -> int | None:
        if not self.received.startswith(b"HTTP/1.1 "):
            return None
        return int(self.received[9:12])


async def _slow_client(port: int, head: bytes, drip: bytes) -> Outcome:
    """Send ``head`` at once, then ``drip`` one byte every DRIP_S (for at most GIVE_UP_S);
    note when the server closes the connection and what it answered."""
    start = time.monotonic()  # before connecting: the server's clock starts after this
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read_until_closed() -> float:
        try:
            while chunk := await reader.read(65536):
                received.extend(chunk)
        except ConnectionError:
            pass
        return time.monotonic() - start

    reading = asyncio.create_task(read_until_closed())
    try:
        if head:
            writer.write(head)
        for byte in itertools.cycle(drip) if drip else iter(()):
            if reading.done() or time.monotonic() - start > GIVE_UP_S:
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait({reading}, timeout=DRIP_S)
        done, _ = await asyncio.wait(
            {reading}, timeout=max(0.0, GIVE_UP_S - (time.monotonic() - start))
        )
        return Outcome(reading.result() if done else None, bytes(received))
    finally:
        reading.cancel()
        writer.close()


async def _normal_requests_meanwhile(base: str, delay: float, count: int) -> list[float]:
    """After ``delay``, ``count`` ordinary requests one after the other; their durations."""
    await asyncio.sleep(delay)
    durations = []
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for path in itertools.islice(itertools.cycle(["/healthz", "/readyz"]), count):
            t0 = time.monotonic()
            resp = await client.get(path)
            assert resp.status_code == 200, resp.text
            durations.append(time.monotonic() - t0)
    return durations


async def test_slow_headers_are_cut_off_at_the_header_timeout(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: oms\r\n"
    slow = [_slow_client(server.port, head, b"X-Slow: " + b"a" * 64) for _ in range(30)]
    silent = [_slow_client(server.port, b"", b"") for _ in range(10)]  # connect, send nothing
    *outcomes, durations = await asyncio.gather(
        *slow, *silent, _normal_requests_meanwhile(server.base, 0.5, 6)
    )
    assert max(durations) < 1.0, durations
    for outcome in outcomes[:30]:
        assert outcome.closed_after is not None, "a slow-header client was never cut off"
        # the server starts its clock at accept, a moment before the client starts its own
        assert HEADER_TIMEOUT_S - 0.1 <= outcome.closed_after <= HEADER_TIMEOUT_S + 1.5
        assert outcome.status == 408, outcome.received[:200]
        assert b"application/problem+json" in outcome.received
        assert b"request_timeout" in outcome.received
    for outcome in outcomes[30:]:
        assert outcome.closed_after is not None, "an idle new connection was never closed"
        assert outcome.closed_after <= HEADER_TIMEOUT_S + 1.5
        assert outcome.received == b""  # nothing asked, nothing answered
    assert '"reason": "header_timeout"' in server.tail(1_000_000)  # the operator sees why


async def test_a_slow_body_is_cut_off_at_the_body_timeout(server: Server) -> None:
    head = (
        b"POST /v1/warehouses HTTP/1.1\r\nHost: oms\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    slow = [_slow_client(server.port, head, b'{"code": "') for _ in range(20)]
    *outcomes, durations = await asyncio.gather(
        *slow, _normal_requests_meanwhile(server.base, 0.5, 6)
    )
    assert max(durations) < 1.0, durations
    for outcome in outcomes:
        assert outcome.closed_after is not None, "a slow-body client was never cut off"
        assert BODY_TIMEOUT_S - 0.1 <= outcome.closed_after <= BODY_TIMEOUT_S + 1.5
        assert outcome.status == 408, outcome.received[:200]
    log = server.tail(1_000_000)
    assert '"reason": "body_timeout"' in log
    # each abandoned request has its access line, with the status its client was sent
    cut_off = [
        entry
        for line in log.splitlines()
        if line.startswith("{")
        and (entry := json.loads(line)).get("logger") == "oms.access"
        and entry.get("path") == "/v1/warehouses"
    ]
    assert len(cut_off) == len(outcomes) and {e["status"] for e in cut_off} == {408}
    # the server is still fine, and a body sent at a normal pace is served as usual
    async with httpx.AsyncClient(base_url=server.base, timeout=5) as client:
        resp = await client.post("/v1/warehouses", json={"code": "X"})
        assert resp.status_code == 401  # read in full, then refused for want of a key


async def test_a_200_kb_header_gets_431_and_harms_no_one(server: Server) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: oms\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"

    async def oversized() -> Outcome:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        start = time.monotonic()
        try:
            writer.write(big)
            await writer.drain()
        except ConnectionError:
            pass
        received = bytearray()
        try:
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    received.extend(chunk)
            closed: float | None = time.monotonic() - start
        except (ConnectionError, TimeoutError):
            closed = None if not received else time.monotonic() - start
        writer.close()
        return Outcome(closed, bytes(received))

    *outcomes, durations = await asyncio.gather(
        *(oversized() for _ in range(5)), _normal_requests_meanwhile(server.base, 0.1, 6)
    )
    assert max(durations) < 1.0, durations
    for outcome in outcomes:
        assert outcome.status == 431, outcome.received[:200]
        assert b"headers_too_large" in outcome.received
        assert outcome.closed_after is not None
    assert '"reason": "headers_too_large"' in server.tail(1_000_000)
    # headers within the limit are still fine
    async with httpx.AsyncClient(base_url=server.base, timeout=5) as client:
        resp = await client.get("/healthz", headers={"X-Fine": "a" * 8000})
        assert resp.status_code == 200


async def test_a_client_leaving_mid_body_changes_nothing(server: Server) -> None:
    head = (
        b"POST /v1/warehouses HTTP/1.1\r\nHost: oms\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: left-mid-body\r\nContent-Length: 100\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head + b'{"code": "HALF",')
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [
            entry
            for line in server.tail(1_000_000).splitlines()
            if line.startswith("{")
            and (entry := json.loads(line)).get("request_id") == "left-mid-body"
        ]
        if lines:
            break
        await asyncio.sleep(0.1)
    # the application never ran on half a body: one access line, "client closed request"
    assert [(e["logger"], e["status"]) for e in lines] == [("oms.access", 499)]


async def test_beyond_the_connection_limit_requests_get_503_server_busy(
    migrated: str, tmp_path: Path
) -> None:
    limit = 5
    srv = Server(
        migrated, log_path=tmp_path / "serve.log", env={"OMS_HTTP_MAX_CONNECTIONS": str(limit)}
    ).start()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(limit)]
        await asyncio.sleep(0.2)  # accepted by the server
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as client:
            busy = await client.get("/healthz")
            assert busy.status_code == 503
            assert busy.headers["content-type"] == "application/problem+json"
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["code"] == "server_busy"
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        srv.stop()
