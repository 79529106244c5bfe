"""Customer messages and tracking links under attack (review of #22): the SMS provider URL is
held to the outbound-target policy of webhooks (no internal addresses, checked when saved and
pinned at every send), templates cannot spin or bloat the API or the worker, a silent or slow
SMTP server (or an endless SMS answer) costs one bounded attempt, backoff stays within its cap,
the tracking JSON is not cached, bad input is a 4xx."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.messages import delivery
from oms.messages.context import sample
from oms.messages.job import MessageJob
from oms.messages.providers import OutgoingEmail, OutgoingSms
from oms.messages.providers.sms_http import HttpSmsProvider, HttpSmsSettings
from oms.messages.providers.smtp import SmtpProvider, SmtpSettings, build_message
from oms.messages.rendering import TemplateSource, render
from oms.shared.targets import TargetGuard
from oms.tracking import service as tracking
from tests.api.messages_support import (
    SMS_TOKEN,
    Clock,
    SmsStub,
)
from tests.helpers import auth, order_body


class FakeDns:
    """The job's resolver seam: answers per host name, and every question asked."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers[host.replace(".", "_")]


@pytest.fixture
def sms() -> SmsStub:
    return SmsStub()


@pytest.fixture
async def sms_client(sms: SmsStub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(sms.handler)) as c:
        yield c


@pytest.fixture
def strict_targets(app: FastAPI) -> Iterator[None]:
    """The production default: no private targets (the API checks with app settings)."""
    before = app.state.settings
    app.state.settings = before.model_copy(update={"webhook_allow_private_targets": False})
    try:
        yield
    finally:
        app.state.settings = before


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


async def _put_sms(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> httpx.Response:
    return await client.put(
        "/v1/messages/providers/sms",
        json={"url": url, "sender": "SHOP", "token": SMS_TOKEN},
        headers=admin,
    )


async def _sms_order(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    rule = await client.put(
        "/v1/messages/rules/web",
        json={"default_language": "en", "events": {"order.placed": {"sms": True}}},
        headers=admin,
    )
    assert rule.status_code == 200, rule.text
    body = order_body(customer={"id": "c1", "email": "a@example.com", "phone": "+393330000001"})
    resp = await client.post("/v1/orders", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _job(
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    *,
    allow_private: bool,
    resolver: Any,
    clock: Clock | None = None,
    **overrides: Any,
) -> MessageJob:
    settings = app.state.settings.model_copy(
        update={"webhook_allow_private_targets": allow_private} | overrides
    )
    return MessageJob(
        sessionmaker=sessionmaker,
        settings=settings,
        client=client,
        worker="sec-1",
        clock=clock or Clock(),
        resolver=resolver,
    )


@pytest.mark.usefixtures("strict_targets")
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9000/sms", "loopback"),
        ("http://2130706433/sms", "loopback"),
        ("http://localhost/sms", "loopback"),
        ("http://10.1.2.3/sms", "private"),
        ("http://[::ffff:169.254.169.254]/latest", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://user:pw@sms.example.com/send", "credentials"),
    ],
)
async def test_an_internal_sms_url_is_refused_when_saved(
    client: httpx.AsyncClient, admin: dict[str, str], url: str, reason: str
) -> None:
    resp = await _put_sms(client, admin, url)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "sms_url_not_allowed" and problem["reason"] == reason
    assert "pw@" not in resp.text and SMS_TOKEN not in resp.text
    shown = await client.get("/v1/messages/providers/sms", headers=admin)
    assert shown.json()["source"] == "none"  # nothing was saved


async def test_local_development_setting_allows_loopback_but_never_metadata(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI
) -> None:
    before = app.state.settings
    app.state.settings = before.model_copy(update={"webhook_allow_private_targets": True})
    try:
        ok = await _put_sms(client, admin, "http://127.0.0.1:9000/sms")
        assert ok.status_code == 200, ok.text
        metadata = await _put_sms(client, admin, "http://169.254.169.254/latest/meta-data/")
        assert metadata.status_code == 422 and metadata.json()["reason"] == "metadata"
    finally:
        app.state.settings = before


@pytest.mark.usefixtures("strict_targets")
async def test_every_resolved_address_is_checked_when_an_sms_is_sent(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    sms: SmsStub,
    sms_client: httpx.AsyncClient,
) -> None:
    """A name that looked public when saved may resolve to an internal address later (DNS
    rebinding): the send connects to nothing, and the message says why."""
    assert (await _put_sms(client, admin, "http://sms.rebind.test/v1/send")).status_code == 200
    order = await _sms_order(client, admin)
    dns = FakeDns(sms_rebind_test=["93.184.215.14", "10.0.0.7"])
    await _job(app, sessionmaker, sms_client, allow_private=False, resolver=dns).run_once()
    assert dns.asked == [("sms.rebind.test", 80)]
    assert sms.seen == []  # nothing was connected to
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=admin)).json()
    [message] = log
    assert message["status"] == "failed"  # retried: fixing the URL or DNS resumes sending
    assert message["last_error"] == (
        "refused: sms.rebind.test resolves to 10.0.0.7, a private-network address "
        "(OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
    )


@pytest.mark.usefixtures("strict_targets")
async def test_the_sms_goes_to_the_address_that_was_checked(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    sms: SmsStub,
    sms_client: httpx.AsyncClient,
) -> None:
    assert (await _put_sms(client, admin, "https://sms.rebind.test/v1/send")).status_code == 200
    order = await _sms_order(client, admin)
    dns = FakeDns(sms_rebind_test=["93.184.215.14"])
    await _job(app, sessionmaker, sms_client, allow_private=False, resolver=dns).run_once()
    [request] = sms.requests
    assert str(request.url) == "https://93.184.215.14/v1/send"
    assert request.headers["host"] == "sms.rebind.test"
    assert request.extensions["sni_hostname"] == "sms.rebind.test"
    assert request.headers["authorization"] == f"Bearer {SMS_TOKEN}"
    [message] = (await client.get(f"/v1/orders/{order['id']}/messages", headers=admin)).json()
    assert message["status"] == "sent"


async def test_a_private_sms_url_saved_while_allowed_is_refused_once_the_setting_is_off(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    sms: SmsStub,
    sms_client: httpx.AsyncClient,
) -> None:
    before = app.state.settings
    app.state.settings = before.model_copy(update={"webhook_allow_private_targets": True})
    try:
        assert (await _put_sms(client, admin, "http://127.0.0.1:9/sms")).status_code == 200
    finally:
        app.state.settings = before
    order = await _sms_order(client, admin)
    dns = FakeDns()
    await _job(app, sessionmaker, sms_client, allow_private=False, resolver=dns).run_once()
    assert sms.seen == [] and dns.asked == []
    [message] = (await client.get(f"/v1/orders/{order['id']}/messages", headers=admin)).json()
    assert message["last_error"].startswith("refused: 127.0.0.1 is a loopback address")
    # with the setting on (local development), the 127.0.0.1 stub gets it
    await _job(
        app, sessionmaker, sms_client, allow_private=True, resolver=dns, clock=_later()
    ).run_once()
    [request] = sms.requests
    assert str(request.url) == "http://127.0.0.1:9/sms"


def _later() -> Clock:
    clock = Clock()
    clock.advance(3600 * 24)
    return clock


async def test_saving_or_previewing_a_spinning_template_is_a_quick_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The API renders a template against a sample when it is saved, in the request: three
    nested loops of 1000 used to hold the API process for minutes."""
    spin = (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}x"
    )
    started = time.monotonic()
    resp = await client.put(
        "/v1/messages/templates/order.placed/sms/en", json={"body_text": spin}, headers=admin
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "template_invalid" and "too much work" in resp.json()["reason"]
    order = (await client.post("/v1/orders", json=order_body(), headers=admin)).json()
    resp = await client.post(
        "/v1/messages/preview",
        json={
            "order_id": order["id"],
            "event_type": "order.placed",
            "channel": "sms",
            "template": {"body_text": spin},
        },
        headers=admin,
    )
    assert resp.status_code == 422 and resp.json()["code"] == "template_invalid"
    assert time.monotonic() - started < 5.0


async def test_tracking_json_is_never_cached_nor_leaks_its_link(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The JSON answer carries the same credential in its URL as the page: shared caches must
    not keep it, and it sends no Referer onwards."""
    order = (await client.post("/v1/orders", json=order_body(), headers=admin)).json()
    async with sessionmaker() as session, session.begin():
        url = await tracking.link_for(
            session,
            settings=app.state.settings,
            order_id=uuid.UUID(order["id"]),
            now=datetime.now(UTC),
        )
    token = url.rsplit("/", 1)[1]
    for path in (f"/v1/tracking/{token}", f"/track/{token}"):
        resp = await client.get(path)
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-store", path
        assert resp.headers["referrer-policy"] == "no-referrer", path
        assert resp.headers["x-robots-tag"] == "noindex, nofollow", path
    for path in (f"/v1/tracking/{token[:-2]}xx", f"/track/{token[:-2]}xx"):
        resp = await client.get(path)
        assert resp.status_code == 404
        assert resp.headers["cache-control"] == "no-store", path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/messages/opt-outs/email/a%00b%40example.com", None),
        ("GET", "/v1/messages/opt-outs/sms/%2B39%00333", None),
        ("PUT", "/v1/messages/templates/order.placed/sms/en", {"body_text": "Hi\u0000there"}),
        ("PUT", "/v1/messages/rules/web", {"events": {"order.placed\u0000": {"sms": True}}}),
        ("PUT", "/v1/messages/providers/sms", {"url": "https://sms.example.com/\u0000"}),
        (
            "PUT",
            "/v1/messages/providers/email",
            {"host": "smtp.example.com", "sender": "a\u0000@b.c"},
        ),
        ("POST", "/v1/messages/preview", {"order_id": "nope", "event_type": "x", "channel": "sms"}),
        ("POST", "/v1/messages/preview", [1, 2]),
        ("PUT", "/v1/messages/templates/order.placed/fax/en", {"body_text": "x"}),
        ("PUT", "/v1/messages/templates/order.placed/sms/e", {"body_text": "x"}),
        ("GET", "/v1/orders/not-a-uuid/messages", None),
        ("GET", "/v1/messages/providers/pigeon", None),
        ("PUT", "/v1/messages/rules/web", {"events": {"order.placed": {"sms": "maybe"}}}),
        ("GET", "/v1/tracking/" + "A" * 129, None),
    ],
)
async def test_bad_input_is_a_problem_never_a_500(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str, body: Any
) -> None:
    resp = await client.request(method, path, json=body, headers=admin)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")


class SlowSmtp:
    """An SMTP server on 127.0.0.1 that greets at once, then answers each command after
    ``delay`` seconds (``hang``: never says anything at all)."""

    def __init__(self, *, delay: float = 0.0, hang: bool = False) -> None:
        self.delay = delay
        self.hang = hang
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> SlowSmtp:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.hang:
                await reader.read()  # until the client gives up
                return
            writer.write(b"220 slow.test ESMTP\r\n")
            await writer.drain()
            in_data = False
            while line := await reader.readline():
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        await asyncio.sleep(self.delay)
                        writer.write(b"250 2.0.0 queued\r\n")
                    continue
                await asyncio.sleep(self.delay)
                verb = line[:4].upper()
                if verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def _mail() -> OutgoingEmail:
    return OutgoingEmail(
        to="a@example.com", subject="s", text="t", html=None, message_id="<m1@shop.example>"
    )


def _smtp(port: int) -> SmtpProvider:
    return SmtpProvider(
        SmtpSettings(
            host="127.0.0.1", port=port, security="none", sender="o@shop.example", timeout_s=1.0
        )
    )


async def test_one_smtp_session_is_bounded_by_the_timeout_not_each_command() -> None:
    """A server answering each command just inside the timeout would otherwise hold one send
    for (commands x timeout), past the message's lease: another worker would send it again
    while the first is still talking."""
    async with SlowSmtp(delay=0.35) as server:
        started = time.monotonic()
        outcome = await _smtp(server.port).send(_mail())
        took = time.monotonic() - started
    assert took < 1.6, took
    assert not outcome.ok and outcome.retry and "timed out" in (outcome.error or "")


async def test_a_silent_or_dead_smtp_server_is_a_bounded_retryable_failure() -> None:
    async with SlowSmtp(hang=True) as server:
        started = time.monotonic()
        outcome = await _smtp(server.port).send(_mail())
        assert time.monotonic() - started < 1.6
    assert not outcome.ok and outcome.retry
    dead_port = server.port  # closed now: nothing listens
    outcome = await _smtp(dead_port).send(_mail())
    assert not outcome.ok and outcome.retry


def test_backoff_stays_within_its_bounds_at_any_attempt() -> None:
    """Capped means capped (the jitter included), and a large attempt number (a generous
    ``OMS_MESSAGE_MAX_ATTEMPTS``) neither overflows nor stops the attempt being recorded."""
    policy = delivery.RetryPolicy(max_attempts=5000, backoff_base_s=30.0, backoff_max_s=3600.0)
    for attempt in (1, 2, 8, 60, 1100, 5000):
        for _ in range(50):
            delay = delivery.backoff(attempt, policy).total_seconds()
            assert 0 < delay <= 3600.0, (attempt, delay)
    first = [delivery.backoff(1, policy).total_seconds() for _ in range(50)]
    assert all(24.0 <= d <= 36.0 for d in first)


async def test_channel_bound_keys_cannot_preview_nor_read_message_logs(
    client: httpx.AsyncClient, keys: dict[str, str], admin: dict[str, str]
) -> None:
    """Previews render a real order's data: admin only, so a storefront key bound to one sales
    channel never reads another channel's customer through them."""
    resp = await client.post("/v1/orders", json=order_body(channel="b2b"), headers=admin)
    assert resp.status_code == 201, resp.text
    order = resp.json()
    bound = auth(keys["storefront_web"])
    preview = await client.post(
        "/v1/messages/preview",
        json={"order_id": order["id"], "event_type": "order.placed", "channel": "email"},
        headers=bound,
    )
    assert preview.status_code == 403 and preview.json()["code"] == "role_not_allowed"
    log = await client.get(f"/v1/orders/{order['id']}/messages", headers=bound)
    assert log.status_code == 403
    assert "Ada" not in preview.text + log.text


def test_no_header_can_be_injected_through_a_name_or_an_address() -> None:
    """A customer name with CR/LF in a subject collapses to one line; an address with CR/LF
    (or two addresses) is refused by the message builder, not sent to someone else."""
    context = sample("order.placed")
    context["order"]["customer_name"] = "Ada\r\nBcc: victim@evil.example\r\n"
    rendered = render(
        TemplateSource("Hi {{ order.customer_name }}", "x", None), context, channel="email"
    )
    assert rendered.subject == "Hi Ada Bcc: victim@evil.example"
    settings = SmtpSettings(host="h", port=25, security="none", sender="o@shop.example")
    for to in ("a@example.com\r\nBcc: victim@evil.example", "a@example.com\nX: y"):
        with pytest.raises(ValueError, match="linefeed|carriage"):
            build_message(
                settings,
                OutgoingEmail(to=to, subject="s", text="t", html=None, message_id="<m@x>"),
            )


async def test_an_sms_provider_answering_without_end_is_read_only_so_far() -> None:
    """The provider's answer is read up to a bound (its id, or an error's first characters),
    not whole: an endpoint streaming megabytes cannot fill the worker's memory."""

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(400):  # 100 MB, produced as it is read
            yield b"x" * 250_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=endless())

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    settings = HttpSmsSettings(url="https://sms.example.com/send", token=SMS_TOKEN)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        provider = HttpSmsProvider(
            settings, http, guard=TargetGuard(allow_private=False, resolver=public)
        )
        tracemalloc.start()
        try:
            outcome = await provider.send(OutgoingSms(to="+39333", text="t", idempotency_key="k"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not outcome.ok and outcome.retry and outcome.error is not None
    assert outcome.error.startswith("HTTP 500: xxx") and len(outcome.error) < 400
    assert peak < 5_000_000, peak
