"""The HTTP server `oms serve` runs: uvicorn's options, and a guard against slow and oversized
clients.

uvicorn bounds only the idle time between two requests of a connection (keep-alive). It has no
deadline for a request's headers or body, and its httptools parser (the default with
``uvicorn[standard]``) no limit on the size of the headers: a client sending one byte a second
holds a connection, and whatever it buffers, for as long as it likes.
:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with, per connection (settings
in :class:`oms.config.Settings`, ``http_*``):

* a **header deadline**: a request's line and headers must arrive within
  ``http_header_timeout_s`` of its first byte (for a new connection, of the connection), else
  ``408 request_timeout`` and the connection is closed (closed silently if nothing came);
* a **body deadline**: its body within ``http_body_timeout_s`` of the end of its headers, else
  408 and closed (the application sees the client gone and changes nothing);
* a **header size limit**: request line plus headers over ``http_max_header_bytes`` get
  ``431 headers_too_large`` and the connection is closed, checked as they arrive (so no
  client makes the server buffer much more than the limit);
* a **connection limit**: over ``http_max_connections`` open connections or requests in
  progress in the process, a request gets ``503 server_busy`` with ``Retry-After``;
* **no request dropped at an idle close**: when a kept-alive connection's idle time runs out
  (``http_keepalive_timeout_s``), or a new connection's header deadline with nothing read yet,
  the connection is closed only if the kernel holds no unread bytes of it. uvicorn's event loop
  (uvloop) runs due timers before it reads sockets, so a request that arrived while the loop
  was busy would otherwise be discarded by the close, unread, and the client sees its
  connection reset with no answer (``httpx.ReadError``). The request is read and answered
  instead, and the idle clock starts again.

Each cut-off writes a warning line (logger ``oms.http``) with its ``reason``. Answers are
problem+json, written straight to the socket (there is no ASGI request yet, or it is abandoned).
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from oms.config import Settings, get_settings
from oms.shared.errors import PROBLEM_JSON, ProblemError
from oms.shared.middleware import CUT_OFF_SCOPE_KEY

log = logging.getLogger("oms.http")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_header_bytes=settings.http_max_header_bytes,
            max_connections=settings.http_max_connections,
        )


@cache
def _process_limits() -> HttpLimits:
    return HttpLimits.from_settings(get_settings())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` besides the app, address, workers and logging."""
    return {
        # by name: uvicorn hands its configuration to spawned worker processes
        "http": f"{__name__}:GuardedHttpToolsProtocol",
        "ws": "none",  # the API has no WebSocket routes
        "timeout_keep_alive": settings.http_keepalive_timeout_s,
        "backlog": settings.http_backlog,
        "limit_concurrency": None,  # the guard's, answered as problem+json
        "timeout_graceful_shutdown": 10,
        "proxy_headers": True,
        "access_log": False,  # oms writes its own access line, with the request id
    }


Phase = Literal["headers", "body"]


def _unread_bytes(transport: asyncio.BaseTransport) -> bool:
    """Whether the kernel holds bytes (or the end) of this connection the server has not
    read yet: a request sent before an idle timeout fired, still waiting for the event loop."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
    except (OSError, ValueError):  # already closed
        return False
    return bool(poller.poll(0))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body deadlines and size and connection limits."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = _process_limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase = "headers"  # waiting for, or reading, a request's line and headers
        self._boundaries = 0  # parser events that change the phase (headers complete, message)
        self._raw_header_bytes = 0  # bytes read while a request's headers were incomplete
        self._header_bytes = 0  # its line and headers as parsed so far
        self._got_bytes = False  # something of the next request has arrived
        self._answered = False  # the guard answered; the connection is closing

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing() and _unread_bytes(self.transport):
            # a request arrived while the loop was busy: the loop reads it next (which cancels
            # this timer); closing now would discard it and reset the client's connection
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        if self._phase == "headers":
            self._got_bytes = True
            if self._deadline is None:  # the first byte of the next request starts its clock
                self._arm(self._limits.header_timeout_s, self._header_timed_out)
        phase, boundaries = self._phase, self._boundaries
        super().data_received(data)
        if self._answered or self._phase != "headers":
            return
        if phase == "headers" and boundaries == self._boundaries:  # all of it was header bytes
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self._limits.max_header_bytes:
                self._headers_too_large()

    def send_400_response(self, msg: str) -> None:
        if not self._answered:
            self._answered = True
            self._disarm()
            super().send_400_response(msg)

    # -- parser callbacks (no-ops once the guard has answered) -------------------------------

    def on_message_begin(self) -> None:
        if self._answered:
            return
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:
            self._arm(self._limits.header_timeout_s, self._header_timed_out)

    def on_url(self, url: bytes) -> None:
        if self._answered:
            return
        super().on_url(url)
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._answered:
            return
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        if self._answered:
            return
        self._disarm()
        self._boundaries += 1
        self._raw_header_bytes = 0
        self._got_bytes = False
        if self._header_bytes > self._limits.max_header_bytes:
            self._headers_too_large()
            return
        limit = self._limits.max_connections
        if len(self.connections) > limit or len(self.tasks) >= limit:
            self._answer(
                503,
                "server_busy",
                "Server busy",
                "too many connections; retry shortly",
                headers=[(b"retry-after", b"1")],
            )
            return
        self._phase = "body"
        super().on_headers_complete()
        if not self._queued():
            self._arm(self._limits.body_timeout_s, self._body_timed_out)

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answered:
            return
        self._disarm()
        self._boundaries += 1
        self._phase = "headers"
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # a pipelined request whose body is still to come starts now: so does its clock
        if self._phase == "body" and self._deadline is None and not self._answered:
            if not self._queued():
                self._arm(self._limits.body_timeout_s, self._body_timed_out)

    # -- deadlines ---------------------------------------------------------------------------

    def _queued(self) -> bool:
        """The request being read waits behind an earlier one (pipelining; reading paused)."""
        return any(cycle is self.cycle for cycle, _ in self.pipeline)

    def _busy(self) -> bool:
        """An earlier request of this connection is still being answered."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_timed_out(self) -> None:
        self._deadline = None
        if self._answered or self.transport.is_closing():
            return
        if self._busy():  # headers of a pipelined request: count from the earlier's answer
            self._arm(self._limits.header_timeout_s, self._header_timed_out)
            return
        if not self._got_bytes:  # an idle new connection: nothing asked, nothing to answer
            if _unread_bytes(self.transport):  # unless its request is there, not yet read
                self._arm(self._limits.header_timeout_s, self._header_timed_out)
                return
            self._answered = True
            self.transport.close()
            return
        self._answer(
            408,
            "request_timeout",
            "Request timeout",
            f"the request headers did not arrive within {self._limits.header_timeout_s:g} s",
            reason="header_timeout",
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self._answered or self.transport.is_closing():
            return
        self._answer(
            408,
            "request_timeout",
            "Request timeout",
            f"the request body did not arrive within {self._limits.body_timeout_s:g} s",
            reason="body_timeout",
        )

    def _headers_too_large(self) -> None:
        self._answer(
            431,
            "headers_too_large",
            "Request header fields too large",
            f"the request line and headers exceed {self._limits.max_header_bytes} bytes",
        )

    # -- answering ---------------------------------------------------------------------------

    def _peer(self) -> str | None:
        return f"{self.client[0]}:{self.client[1]}" if self.client else None

    def _answer(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        reason: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer with a problem and close the connection, abandoning the request being read.

        The answer is written only where it is the next thing the client expects: not after
        (or in the middle of) an answer to the request being read, nor before the answer to an
        earlier pipelined request; then the connection is just closed.
        """
        self._answered = True
        self._disarm()
        reason = reason or code
        cycle = self.cycle
        if self._phase == "body" and cycle is not None:  # the request being read has started
            write = not cycle.response_started
            if not cycle.response_complete:
                # the application sees the client gone, its answer is dropped, and the access
                # line (oms.shared.middleware) states what the client was sent
                extensions = cycle.scope.setdefault("extensions", {})
                extensions[CUT_OFF_SCOPE_KEY] = {"status": status, "reason": reason}
                cycle.disconnected = True
                cycle.message_event.set()
        else:
            write = not self._busy()
        log.warning(
            "request cut off", extra={"reason": reason, "status": status, "client": self._peer()}
        )
        if write:
            problem = ProblemError(detail, status=status, code=code, title=title)
            body = json.dumps(problem.to_dict()).encode()
            content = [STATUS_LINE[status]]
            for name, value in [*self.server_state.default_headers, *(headers or [])]:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
        self.transport.close()
