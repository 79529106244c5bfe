"""Kept-alive connections are never dropped with a request on them (issue 23).

A client that reuses an idle keep-alive connection may send its request at the very moment the
server's idle timeout fires. uvicorn's event loop (uvloop) runs due timers before it reads the
sockets, so a request that reached the server's kernel buffer just before the timeout ran was
closed away unread: the client saw its connection reset and no answer (``httpx.ReadError``, about
one request in 12,000 under load). These tests put a request in the server's buffer and fire the
idle timeout before the event loop reads it, deterministically: the request must be answered.

The server is the real app behind uvicorn with oms's HTTP protocol (``oms.server``), in this
process, on a real socket; the client is a plain blocking socket.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from oms.config import Settings
from oms.server import GuardedHttpToolsProtocol, uvicorn_options

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: oms\r\n\r\n"


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options(Settings()) | {"lifespan": "off", "log_config": None}
    srv = uvicorn.Server(uvicorn.Config(app, **options))
    srv.config.load()
    srv.lifespan = srv.config.lifespan_class(srv.config)
    await srv.startup(sockets=[sock])
    try:
        yield srv, port
    finally:
        await srv.shutdown()
        sock.close()


async def _answer(client: socket.socket) -> bytes:
    """Everything the server sends until a complete /healthz answer (or the connection ends)."""
    loop = asyncio.get_running_loop()
    received = b""
    while not (b"\r\n\r\n" in received and received.endswith(b"}")):
        try:
            async with asyncio.timeout(5.0):
                chunk = await loop.sock_recv(client, 65536)
        except ConnectionResetError:
            return received + b"<reset>"
        if not chunk:
            return received + b"<closed>"
        received += chunk
    return received


def _protocol(srv: uvicorn.Server) -> Any:
    (protocol,) = srv.server_state.connections
    assert isinstance(protocol, GuardedHttpToolsProtocol)
    return protocol


async def _connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.setblocking(False)
    await asyncio.sleep(0.05)  # the server accepts it
    return client


async def test_a_request_arriving_as_the_keepalive_timeout_fires_is_answered(
    server: tuple[uvicorn.Server, int],
) -> None:
    srv, port = server
    client = await _connect(port)
    try:
        client.send(REQUEST)
        assert (await _answer(client)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.05)  # idle now: the keep-alive timer runs
        protocol = _protocol(srv)
        assert protocol.timeout_keep_alive_task is not None
        # The next request reaches the server's socket; before the event loop reads it, the
        # idle timeout fires (what a busy loop does when both are due at once).
        client.send(REQUEST)
        _in_the_servers_buffer()  # no await: the event loop does not get to read it
        protocol.timeout_keep_alive_task.cancel()
        protocol.timeout_keep_alive_handler()
        answer = await _answer(client)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        # and the connection is still kept alive for the next one
        client.send(REQUEST)
        assert (await _answer(client)).startswith(b"HTTP/1.1 200 ")
    finally:
        client.close()


async def test_an_idle_connection_is_still_closed_at_the_keepalive_timeout(
    server: tuple[uvicorn.Server, int],
) -> None:
    srv, port = server
    client = await _connect(port)
    try:
        client.send(REQUEST)
        assert (await _answer(client)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.05)
        protocol = _protocol(srv)
        protocol.timeout_keep_alive_task.cancel()
        protocol.timeout_keep_alive_handler()  # nothing unread: closed
        assert await _answer(client) == b"<closed>"
    finally:
        client.close()


async def test_a_first_request_arriving_as_the_header_deadline_fires_is_answered(
    server: tuple[uvicorn.Server, int],
) -> None:
    """A new connection that sent nothing is closed at the header deadline; one whose request
    arrived just then, not yet read, is answered."""
    srv, port = server
    client = await _connect(port)
    try:
        protocol = _protocol(srv)
        client.send(REQUEST)
        _in_the_servers_buffer()  # no await: the event loop does not get to read it
        protocol._disarm()  # the header deadline fires now
        protocol._header_timed_out()
        answer = await _answer(client)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        client.close()


def test_the_default_keepalive_outlasts_common_clients_idle_timeouts() -> None:
    """The server must not be the side that closes an idle connection first: clients close
    theirs after 5 s (httpx, Node's agent), 15 s (aiohttp), 60 s (nginx upstreams, AWS ALB)."""
    assert uvicorn_options(Settings())["timeout_keep_alive"] > 60


def _in_the_servers_buffer() -> None:
    """Block the event loop a moment, as busy work would, while the kernel moves the bytes
    sent to the server's socket (on loopback it does so within ``send``)."""
    time.sleep(0.02)
