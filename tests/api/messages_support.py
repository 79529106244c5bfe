"""Support for the customer-message tests: a real SMTP server (aiosmtpd, in its own thread, on a
free 127.0.0.1 port) whose replies a test can script, and a recording SMS provider endpoint."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cr3t-SMTP-pw-7f1c"
SMS_TOKEN = "sk_test_SMS-token-93ab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: ``refusals`` are answered (in order) to DATA before accepting."""

    refusals: list[str] = field(default_factory=list)
    received: list[EmailMessage] = field(default_factory=list)
    authenticated: list[bool] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            self.refused += 1
            return self.refusals.pop(0)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.received.append(msg)
        self.authenticated.append(bool(session.authenticated))
        self.tls.append(session.ssl is not None)
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


class SmtpServer:
    """Plain by default (``auth_require_tls=False``: a local test server); ``starttls``: offers
    and requires STARTTLS, AUTH only after it; ``tls``: implicit TLS (``ssl_context``)."""

    def __init__(
        self,
        handler: SmtpRecorder | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler or SmtpRecorder()
        self.port = free_port()
        options: dict[str, Any] = {"auth_require_tls": starttls is not None}
        if starttls is not None:
            options |= {"tls_context": starttls, "require_starttls": True}
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_authenticator,
            ssl_context=tls,
            **options,
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class SmsStub:
    """What an SMS provider received (``httpx.MockTransport``); ``fail`` answers first."""

    requests: list[httpx.Request] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)  # refused ones too

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.fail:
            return httpx.Response(self.fail.pop(0), json={"error": "busy"})
        self.requests.append(request)
        return httpx.Response(201, json={"id": f"sms-{len(self.requests)}"})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def drain(run: Callable[[], Any], rounds: int = 10) -> int:
    """Run a job until a round does nothing (an order's messages go one after another)."""
    total = 0
    for _ in range(rounds):
        done = await run()
        total += done
        if not done:
            return total
    raise AssertionError("the message job did not settle")
