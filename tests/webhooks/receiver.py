"""A real HTTP receiver on 127.0.0.1 for outbound webhook tests.

A tiny HTTP/1.1 server on ``asyncio.start_server`` (one request per connection): it records
every request, verifies its signature with the ``standardwebhooks`` library, and answers with
scripted statuses. It can be stopped and started again on the same port (endpoint outage), it
can hang on a request until released (worker crash mid-delivery), answer late (``delay``: the
status line after that many seconds) or send its status line and headers, then the body late
(``body_delay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Receipt:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)  # consumed first, then ``default_status``
    default_status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    respond: Callable[[Receipt], int] | None = None
    hang: asyncio.Event | None = None  # when set to an Event, requests wait until it is set
    delay: float = 0.0  # seconds before the status line (a slow endpoint)
    body_delay: float = 0.0  # seconds between the headers and the body
    receipts: list[Receipt] = field(default_factory=list)
    connections: int = 0  # connections accepted (each carries one request)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def by_type(self) -> list[str]:
        return [r.payload["type"] for r in self.receipts]

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.receipts]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        try:
            await self._handle(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        if self.hang is not None:
            self.arrived.set()
            await self.hang.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        receipt = Receipt(headers=headers, body=body, verified=verified, status=0)
        if self.respond is not None:
            status = self.respond(receipt)
        else:
            status = self.statuses.pop(0) if self.statuses else self.default_status
        receipt.status = status
        self.receipts.append(receipt)
        self.arrived.set()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers.items())
        payload = b'{"ok":true}'
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n{extra}\r\n".encode()
        )
        if self.body_delay:
            await writer.drain()
            await asyncio.sleep(self.body_delay)
        writer.write(payload)
        await writer.drain()
