"""Pure ASGI middleware: request id, body size limit, access log and HTTP metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.shared import metrics
from oms.shared.errors import PROBLEM_JSON, ProblemError
from oms.shared.logging import request_id_var

access_log = logging.getLogger("oms.access")
CLIENT_CLOSED_REQUEST = 499
"""The access line's status of a request whose client left before its body arrived (nginx's)."""
CUT_OFF_SCOPE_KEY = "oms.cut_off"
"""``scope["extensions"]`` entry the HTTP server's guard (:mod:`oms.server`) sets on a request it
abandoned: ``{"status": 408, "reason": "body_timeout"}``."""


class ClientGone(Exception):
    """The connection ended before the request body was complete (or, raised by the admission
    gate, :mod:`oms.shared.admission`, before the request's turn came): the application is
    not run; the access line says 499."""


_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestContextMiddleware:
    """Tags each request with an id (``X-Request-ID``), caps the body, logs and measures it."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, raw_body_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # routes that take non-JSON bodies (e.g. form-encoded webhooks) skip the 415 check
        self.raw_prefixes = raw_body_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if scope["method"] not in _BODY_METHODS:
                await self.app(scope, receive, send_wrapper)
            elif _declared_length(scope) > self.max_body_bytes:
                await self._send_problem(send_wrapper, scope, 413)
            elif (body := await self._read_body(receive)) is None:
                await self._send_problem(send_wrapper, scope, 413)
            elif body and not _is_json(scope) and not scope["path"].startswith(self.raw_prefixes):
                await self._send_problem(send_wrapper, scope, 415)
            else:
                await self.app(scope, _replay(body, receive), send_wrapper)
        except ClientGone:
            # the body never arrived in full: the client left, or the server cut it off (and
            # answered it itself, e.g. 408 on the body timeout); the application is not run
            cut_off = scope.get("extensions", {}).get(CUT_OFF_SCOPE_KEY, {})
            status_holder[0] = int(cut_off.get("status", CLIENT_CLOSED_REQUEST))
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, template, str(status_holder[0])).inc()
            metrics.HTTP_LATENCY.labels(method, template).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": template,
                    "status": status_holder[0],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it grows past the limit (checked while streaming);
        raises ClientGone if the connection ends first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _send_problem(self, send: Send, scope: Scope, status: int) -> None:
        if status == 413:
            problem = ProblemError(
                f"the request body exceeds {self.max_body_bytes} bytes",
                status=413,
                code="body_too_large",
                title="Request body too large",
            )
        else:
            problem = ProblemError(
                "send the request body as application/json",
                status=415,
                code="unsupported_media_type",
                title="Unsupported media type",
            )
        body: dict[str, Any] = problem.to_dict(instance=scope["path"])
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
