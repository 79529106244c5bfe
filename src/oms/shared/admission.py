"""Admission: how many requests one worker process runs at once, the rest waiting in order.

Without it every request a worker accepts starts at once: at 64 clients a worker with 8
database connections parses, validates and authenticates 32 requests, 24 of which then queue
for a connection in the middle of their work, all sharing one event loop. Each request's time
is then the sum of everyone's slices, and the order in which waiters get a connection is not
the order they came in (a request asking for a connection as one is released can take it
before the waiter woken for it runs): the tail grows (issue 23).

The gate lets ``limit`` requests in (by default the worker's pool size, so a request that
passes finds a connection free) and queues the others strictly first come, first served,
before any of their work; a request waits at most ``timeout_s`` and then answers ``503
server_busy`` with ``Retry-After`` (nothing was done: safe to retry). Health, readiness and
metrics pass by, so probes never wait behind load.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from oms.shared.errors import PROBLEM_JSON, ProblemError

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AdmissionGate:
    """Pure ASGI middleware: at most ``limit`` HTTP requests in the app at once; the others
    wait in arrival order up to ``timeout_s``. ``limit`` 0 lets every request in."""

    def __init__(self, app: ASGIApp, *, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a turn now."""
        return sum(1 for f in self._waiters if not f.done())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not await self._acquire():
            await _busy(scope, send, self.timeout_s)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _acquire(self) -> bool:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(self.timeout_s):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():  # handed a turn as the wait ended
                self._release()
            else:
                turn.cancel()  # skipped by _release
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def _release(self) -> None:
        """Hand the turn to the longest waiter, else free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


async def _busy(scope: Scope, send: Send, waited_s: float) -> None:
    problem = ProblemError(
        f"the server is busy: no turn within {waited_s:g} s; nothing was done, retry shortly",
        status=503,
        code="server_busy",
        title="Server busy",
    )
    payload = json.dumps(problem.to_dict(instance=scope["path"])).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
