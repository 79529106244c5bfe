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

A waiter whose client goes away leaves the line at once (its request is not run, the access
line says 499), so a queue of clients that gave up does not hold up the ones still there. A
request that spends long without the database (running a wave: its solve takes up to the
policy's time limit) gives its turn back meanwhile with :func:`lent`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.shared import metrics
from oms.shared.errors import PROBLEM_JSON, ProblemError
from oms.shared.middleware import ClientGone

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SCOPE_KEY = "oms.admission"
"""``scope`` entry of a request let in: its :class:`_Turn` (for :func:`lent`)."""


class _Turn:
    """A request's turn: whether it holds it now (it lends it with :func:`lent`)."""

    __slots__ = ("gate", "held")

    def __init__(self, gate: AdmissionGate) -> None:
        self.gate = gate
        self.held = True


@asynccontextmanager
async def lent(scope: Scope) -> AsyncIterator[None]:
    """Give the request's turn back for the block (work that holds no database connection
    for long: a wave's solve), and take one again after it, ahead of the requests waiting
    (it is work in progress; no timeout). Raised out of the block, the turn is not taken back
    (the request is ending). Without a gate (limit 0, probes): nothing."""
    turn = scope.get(SCOPE_KEY)
    if not isinstance(turn, _Turn) or not turn.held:
        yield
        return
    turn.held = False
    turn.gate._release()  # noqa: SLF001 - the gate's own helper
    yield
    await turn.gate._reclaim()  # noqa: SLF001
    turn.held = True


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
        if self._free > 0 and not self.waiting:
            self._free -= 1
        else:
            received: list[Message] = []
            metrics.ADMISSION_WAITING.inc()
            waited_from = time.perf_counter()
            try:
                outcome = await self._wait(receive, received)
            finally:
                metrics.ADMISSION_WAITING.dec()
                metrics.ADMISSION_WAIT.observe(time.perf_counter() - waited_from)
            if outcome == "busy":
                metrics.ADMISSION_REJECTED.inc()
                await _busy(scope, send, self.timeout_s)
                return
            if outcome == "gone":
                raise ClientGone
            receive = _replaying(received, receive)
        turn = _Turn(self)
        scope[SCOPE_KEY] = turn
        try:
            await self.app(scope, receive, send)
        finally:
            if turn.held:
                self._release()

    async def _wait(self, receive: Receive, received: list[Message]) -> str:
        """Wait in line: ``in`` (a turn was handed over), ``busy`` (none within the timeout)
        or ``gone`` (the client went away first). What ``receive`` gave meanwhile (while
        watching for the client leaving) is put in ``received``, for the application."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        watcher = asyncio.ensure_future(_until_disconnect(receive, received))
        try:
            await asyncio.wait(
                (turn, watcher), timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            watcher.cancel()
            self._give_up(turn)
            raise
        watcher.cancel()  # (uvicorn's receive consumes nothing when cancelled)
        try:
            await asyncio.wait((watcher,))  # its end: the application reads receive next
        except BaseException:
            self._give_up(turn)
            raise
        if watcher.done() and not watcher.cancelled():
            self._give_up(turn)
            watcher.result()  # (an error of receive: raised)
            return "gone"
        if turn.done() and not turn.cancelled():
            return "in"
        self._give_up(turn)
        return "busy"

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        """Leave the line: a turn handed over as the wait ended goes to the next in line."""
        if turn.done() and not turn.cancelled():
            self._release()
        else:
            turn.cancel()  # skipped by _release

    async def _reclaim(self) -> None:
        """Take a turn again after :func:`lent`: ahead of everyone waiting, without a timeout."""
        if self._free > 0:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.appendleft(turn)
        try:
            await turn
        except BaseException:
            self._give_up(turn)
            raise

    def _release(self) -> None:
        """Hand the turn to the longest waiter, else free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


_WATCH_BYTES = 64 * 1024
"""Body bytes still arriving that a waiter's watch reads ahead at most (a body the body limit
does not cover, e.g. a DELETE's, is not buffered whole): then it stops watching for the client
leaving. (A POST's, PUT's or PATCH's body was read whole before the gate.)"""


async def _until_disconnect(receive: Receive, received: list[Message]) -> None:
    """Read ``receive`` into ``received`` until the client goes away."""
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            continue  # the body is complete (or was read already): only the leaving is next
        size += len(message.get("body", b""))
        if size > _WATCH_BYTES:
            await asyncio.Event().wait()  # until the wait ends (cancelled)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive``, after giving what was already read from it, in order."""

    async def replay() -> Message:
        if received:
            return received.pop(0)
        return await receive()

    return replay


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
