"""Customer messages end to end: real orders, the outbox, the message job, a real SMTP server
(aiosmtpd) and an SMS provider endpoint (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.messages.job import MessageJob
from oms.messages.models import Message
from oms.worker import Relay
from tests.api.messages_support import (
    SMS_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    Clock,
    SmsStub,
    SmtpRecorder,
    SmtpServer,
    drain,
)
from tests.helpers import auth, order_body, stock

SMS_URL = "http://sms.test/v1/messages"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sms() -> SmsStub:
    return SmsStub()


@pytest.fixture
async def sms_client(sms: SmsStub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(sms.handler)) as c:
        yield c


@pytest.fixture
async def providers(
    client: httpx.AsyncClient, keys: dict[str, str], smtp: SmtpServer
) -> dict[str, str]:
    admin = auth(keys["admin"])
    resp = await client.put(
        "/v1/messages/providers/email",
        json={
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
            "sender": "Shop <orders@shop.example>",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
        },
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    resp = await client.put(
        "/v1/messages/providers/sms",
        json={"url": SMS_URL, "sender": "SHOP", "token": SMS_TOKEN},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    return admin


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_job(
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    sms_client: httpx.AsyncClient,
    clock: Clock,
) -> Any:
    async def local_dns(host: str, port: int) -> list[str]:
        assert host == "sms.test"
        return ["127.0.0.1"]

    def make(name: str = "worker-1") -> MessageJob:
        # the SMS stub is on 127.0.0.1: allowed by the local-development setting
        settings = app.state.settings.model_copy(update={"webhook_allow_private_targets": True})
        return MessageJob(
            sessionmaker=sessionmaker,
            settings=settings,
            client=sms_client,
            worker=name,
            clock=clock,
            resolver=local_dns,
        )

    return make


async def place(client: httpx.AsyncClient, keys: dict[str, str], **changes: Any) -> dict[str, Any]:
    resp = await client.post("/v1/orders", json=order_body(**changes), headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def ship(
    client: httpx.AsyncClient, keys: dict[str, str], order_id: str, tracking: str
) -> None:
    admin = auth(keys["admin"])
    for step in ("paid", "picked", "packed"):
        resp = await client.post(
            f"/v1/orders/{order_id}/transitions", json={"to": step}, headers=admin
        )
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"/v1/orders/{order_id}/transitions",
        json={"to": "shipped", "carrier": "DHL", "tracking_number": tracking},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text


def italian_customer() -> dict[str, Any]:
    return {"id": "cus_it", "email": "giulia@example.it", "phone": "+393331234567"}


async def test_each_event_sends_the_right_message_in_the_customers_language(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    sms: SmsStub,
    make_job: Any,
) -> None:
    it = await place(client, keys, customer=italian_customer(), locale="it")
    en = await place(client, keys, customer={"id": "cus_en", "email": "bob@example.com"})
    assert (it["locale"], en["locale"]) == ("it", None)
    await ship(client, keys, it["id"], "JD0146000038")
    job = make_job()
    await drain(job.run_once)

    mails = {(m["X-Envelope-To"], str(m["Subject"])) for m in smtp.handler.received}
    assert mails == {
        ("giulia@example.it", f"Ordine {it['number']} confermato"),
        ("giulia@example.it", f"Il tuo ordine {it['number']} è stato spedito"),
        ("bob@example.com", f"Order {en['number']} confirmed"),
    }
    assert all(smtp.handler.authenticated)  # AUTH with the stored password
    shipped = next(m for m in smtp.handler.received if "spedito" in str(m["Subject"]))
    text_part = shipped.get_body(("plain",))
    html_part = shipped.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert "JD0146000038" in text_part.get_content()
    assert "/track/" in html_part.get_content()
    assert str(shipped["Message-ID"]).endswith("@shop.example>")
    # the order's SMS: only shipped sends one by default, in Italian, to the order's phone
    assert [b["to"] for b in sms.bodies] == ["+393331234567"]
    assert "spedito" in sms.bodies[0]["text"] and "JD0146000038" in sms.bodies[0]["text"]
    assert sms.requests[0].headers["Authorization"] == f"Bearer {SMS_TOKEN}"
    assert sms.requests[0].headers["Idempotency-Key"].startswith("oms-")

    log = (await client.get(f"/v1/orders/{it['id']}/messages", headers=providers)).json()
    assert [(m["event_type"], m["channel"], m["status"], m["language"]) for m in log] == [
        ("order.placed", "email", "sent", "it"),
        ("shipment.shipped", "email", "sent", "it"),
        ("shipment.shipped", "sms", "sent", "it"),
    ]
    assert log[2]["attempts"][0]["provider_message_id"] == "sms-1"
    assert log[0]["attempts"][0]["provider_message_id"].startswith("2.0.0 Ok: queued as")

    # the link in the message opens the customer's tracking page (no API key)
    url = sms.bodies[0]["text"].split()[-1]
    assert url.startswith("http://127.0.0.1:8000/track/")
    page = await client.get(url.removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200 and "JD0146000038" in page.text

    # nothing is sent twice: another round and another worker find nothing to do
    assert await make_job("worker-2").run_once() == 0
    assert len(smtp.handler.received) == 3 and len(sms.requests) == 1


async def test_channel_rules_and_default_language(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    sms: SmsStub,
    make_job: Any,
) -> None:
    resp = await client.put(
        "/v1/messages/rules/web",
        json={"default_language": "it", "events": {"order.placed": {"sms": True}}},
        headers=providers,
    )
    assert resp.status_code == 200, resp.text
    order = await place(client, keys, customer={"phone": "+393330000001", "email": "x@y.it"})
    await drain(make_job().run_once)
    assert smtp.handler.received == []  # the rule sends no email for it
    assert [b["text"] for b in sms.bodies] == [
        f"Ordine {order['number']} confermato. Seguilo: " + sms.bodies[0]["text"].split()[-1]
    ]
    bad = await client.put(
        "/v1/messages/rules/web",
        json={"events": {"order.teleported": {"sms": True}}},
        headers=providers,
    )
    assert bad.status_code == 422 and bad.json()["code"] == "unknown_event_type"


async def test_refused_then_accepted_is_retried_with_backoff(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
    clock: Clock,
) -> None:
    smtp.handler.refusals = ["451 4.3.0 Try again later"]
    order = await place(client, keys)
    job = make_job()
    await job.run_once()
    assert smtp.handler.refused == 1 and smtp.handler.received == []
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    assert log[0]["status"] == "failed"
    assert log[0]["attempts"][0]["outcome"] == "retry"
    assert log[0]["attempts"][0]["error"].startswith("451")

    assert await job.run_once() == 0  # not due yet: backoff
    clock.advance(60)
    await drain(job.run_once)
    assert len(smtp.handler.received) == 1
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    assert log[0]["status"] == "sent"
    assert [a["outcome"] for a in log[0]["attempts"]] == ["retry", "sent"]
    exported = (await client.get("/metrics")).text
    assert 'oms_message_attempts_total{channel="email",outcome="retry"}' in exported


async def test_permanent_refusal_is_dead_and_not_retried(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
    clock: Clock,
) -> None:
    smtp.handler.refusals = ["554 5.7.1 Rejected"]
    order = await place(client, keys)
    job = make_job()
    await job.run_once()
    clock.advance(7200)
    await drain(job.run_once)
    assert smtp.handler.received == [] and smtp.handler.refused == 1
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    assert log[0]["status"] == "dead" and log[0]["last_error"].startswith("554")


async def test_no_duplicate_after_a_worker_dies_mid_send(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
    clock: Clock,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await place(client, keys)
    crashed = make_job("crashed")
    # two producers at once (two workers): one message per (event, recipient, channel)
    await asyncio.gather(crashed.produce(), make_job("other").produce())
    # the first worker claims the message, then dies before sending or recording anything
    claimed = await crashed.claim(channels=["email"])
    assert len(claimed) == 1

    survivor = make_job("survivor")
    assert await drain(survivor.run_once) == 0  # its lease holds: nobody sends it meanwhile
    assert smtp.handler.received == []

    clock.advance(survivor.lease.total_seconds() + 1)
    await drain(survivor.run_once)
    await drain(survivor.run_once)
    assert len(smtp.handler.received) == 1
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    assert len(log) == 1
    assert [a["outcome"] for a in log[0]["attempts"]] == ["lease_expired", "sent"]
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Message))
    assert count == 1


async def test_two_workers_at_once_send_each_message_once(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
) -> None:
    orders = [await place(client, keys, customer={"email": f"c{i}@example.com"}) for i in range(6)]
    a, b = make_job("a"), make_job("b")
    for _ in range(4):
        await asyncio.gather(a.run_once(), b.run_once())
    to = sorted(m["X-Envelope-To"] for m in smtp.handler.received)
    assert to == sorted(f"c{i}@example.com" for i in range(len(orders)))


async def test_two_workers_keep_each_orders_messages_in_event_order(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
) -> None:
    """Three events of each of four orders, two workers claiming at once: every customer gets
    their order's messages in the order of its events (the next one is leased only after the
    previous one is sent)."""
    orders = [await place(client, keys, customer={"email": f"o{i}@example.com"}) for i in range(4)]
    for i, order in enumerate(orders):
        await ship(client, keys, order["id"], f"TRK{i}")
        resp = await client.post(
            f"/v1/orders/{order['id']}/transitions", json={"to": "delivered"}, headers=providers
        )
        assert resp.status_code == 200, resp.text
    a, b = make_job("a"), make_job("b")
    for _ in range(8):
        await asyncio.gather(a.run_once(), b.run_once())
    for i in range(len(orders)):
        got = [
            str(m["Subject"])
            for m in smtp.handler.received
            if m["X-Envelope-To"] == f"o{i}@example.com"
        ]
        assert [g.split()[-1] for g in got] == ["confirmed", "shipped", "delivered"], got


async def test_opt_out_is_honoured_per_channel(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    sms: SmsStub,
    make_job: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oms.access")
    resp = await client.put("/v1/messages/opt-outs/email/Giulia@Example.it", headers=providers)
    assert resp.status_code == 200 and resp.json()["opted_out"] is True
    # the address is personal data: the access log has the route's template, not the address
    [logged] = [getattr(r, "path", "") for r in caplog.records if r.name == "oms.access"]
    assert logged == "/v1/messages/opt-outs/{message_channel}/{address}"
    order = await place(client, keys, customer=italian_customer(), locale="it")
    await ship(client, keys, order["id"], "TRK-OPT")
    await drain(make_job().run_once)
    assert smtp.handler.received == []  # email opted out
    assert [b["to"] for b in sms.bodies] == ["+393331234567"]  # SMS still goes
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    skipped = [m for m in log if m["channel"] == "email"]
    assert {m["status"] for m in skipped} == {"skipped"}
    assert "opted out" in skipped[0]["last_error"]

    back = await client.delete("/v1/messages/opt-outs/email/giulia@example.it", headers=providers)
    assert back.json()["opted_out"] is False
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions", json={"to": "delivered"}, headers=providers
    )
    assert resp.status_code == 200, resp.text
    await drain(make_job().run_once)
    assert [str(m["Subject"]) for m in smtp.handler.received] == [
        f"Ordine {order['number']} consegnato"
    ]


@pytest.mark.parametrize(
    ("part", "source"),
    [
        ("body_text", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
        ("body_text", "{{ order.__class__ }}"),
        ("body_text", "{{ cycler.__init__.__globals__ }}"),
        ("body_text", "{{ config }}"),
        ("body_text", "{% for x in range(10) %}{{ x.__class__ }}{% endfor %}"),
        ("body_html", "<p>Hi</p><script>alert(1)</script>"),
        ("body_html", '<a href="javascript:alert(1)">x</a>'),
        ("body_html", '<img src=x onerror="alert(1)">'),
        ("body_text", "{{ order.number "),
        # unbounded sizes: the worker would allocate gigabytes
        ("body_text", "{{ 'x' * 100000000 }}"),
        ("body_text", "{{ '{:>100000000}'.format(1) }}"),
        ("body_text", "{{ 'x'|center(100000000) }}"),
        ("body_text", "{{ 9 ** 100000000 }}"),
        ("body_text", "{% for i in range(999) %}{{ 'x' * 9000 }}{% endfor %}"),
    ],
)
async def test_template_injection_is_refused_when_saved(
    client: httpx.AsyncClient, keys: dict[str, str], part: str, source: str
) -> None:
    body = {"subject": "Order {{ order.number }}", "body_text": "ok {{ order.number }}"}
    body[part] = source
    resp = await client.put(
        "/v1/messages/templates/order.placed/email/en", json=body, headers=auth(keys["admin"])
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "template_invalid"
    listed = await client.get(
        "/v1/messages/templates?event_type=order.placed&channel=email&language=en",
        headers=auth(keys["admin"]),
    )
    assert [t["source"] for t in listed.json()] == ["default"]  # nothing was saved


async def test_customer_data_is_escaped_in_html_and_templates_preview_on_real_orders(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
) -> None:
    admin = providers
    saved = await client.put(
        "/v1/messages/templates/order.placed/email/en",
        json={
            "subject": "Thanks {{ order.customer_name }}",
            "body_text": "Order {{ order.number }} for {{ order.customer_name }}",
            "body_html": "<p>Dear {{ order.customer_name }}, order {{ order.number }}</p>",
        },
        headers=admin,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["source"] == "saved"
    evil = "<script>alert(1)</script>{{ 7*7 }}"
    address = order_body()["shipping_address"] | {"name": evil}
    order = await place(client, keys, shipping_address=address)

    preview = await client.post(
        "/v1/messages/preview",
        json={"order_id": order["id"], "event_type": "order.placed", "channel": "email"},
        headers=admin,
    )
    assert preview.status_code == 200, preview.text
    html = preview.json()["body_html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in html  # escaped, not evaluated
    assert "<script>" not in html and "49" not in html
    assert preview.json()["recipient"] == "ada@example.com"

    italian = await client.post(
        "/v1/messages/preview",
        json={
            "order_id": order["id"],
            "event_type": "order.cancelled",
            "channel": "sms",
            "language": "it",
        },
        headers=admin,
    )
    assert italian.json()["body_text"].startswith(f"Ordine {order['number']} annullato.")
    unsafe = await client.post(
        "/v1/messages/preview",
        json={
            "order_id": order["id"],
            "event_type": "order.placed",
            "channel": "sms",
            "template": {"body_text": "{{ ''.__class__.__base__ }}"},
        },
        headers=admin,
    )
    assert unsafe.status_code == 422 and unsafe.json()["code"] == "template_invalid"

    await drain(make_job().run_once)
    [mail] = smtp.handler.received
    body = mail.get_body(("html",))
    assert body is not None and "&lt;script&gt;" in body.get_content()
    assert "<script>" not in body.get_content()


async def test_secrets_are_write_only_and_never_logged(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    sms: SmsStub,
    make_job: Any,
    caplog: pytest.LogCaptureFixture,
    clock: Clock,
) -> None:
    caplog.set_level(logging.DEBUG)
    for channel in ("email", "sms"):
        resp = await client.get(f"/v1/messages/providers/{channel}", headers=providers)
        assert resp.status_code == 200
        assert resp.json()["secret_set"] is True and resp.json()["source"] == "api"
        assert SMTP_PASSWORD not in resp.text and SMS_TOKEN not in resp.text
    # updating without the secret keeps it; null clears it
    kept = await client.put(
        "/v1/messages/providers/sms", json={"url": SMS_URL, "sender": "SHOP2"}, headers=providers
    )
    assert kept.json()["secret_set"] is True and kept.json()["settings"]["sender"] == "SHOP2"

    sms.fail = [503]
    order = await place(client, keys, customer=italian_customer(), locale="it")
    await ship(client, keys, order["id"], "SECRET-TEST")
    job = make_job()
    await drain(job.run_once)
    clock.advance(120)
    await drain(job.run_once)
    assert len(smtp.handler.received) == 2 and len(sms.requests) == 1
    assert sms.requests[0].headers["Authorization"] == f"Bearer {SMS_TOKEN}"
    # the refused attempt and its retry carry one Idempotency-Key: the provider can dedupe
    assert len({r.headers["Idempotency-Key"] for r in sms.seen}) == 1 and len(sms.seen) == 2
    # every attempt was logged (with its extras), and no record carries a secret
    attempts = [r for r in caplog.records if getattr(r, "event", None) == "message.attempt"]
    assert len(attempts) == 4  # two emails, the refused SMS, the SMS
    dumped = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert SMTP_PASSWORD not in dumped and SMS_TOKEN not in dumped
    log = await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)
    assert SMTP_PASSWORD not in log.text and SMS_TOKEN not in log.text

    cleared = await client.put(
        "/v1/messages/providers/sms", json={"url": SMS_URL, "token": None}, headers=providers
    )
    assert cleared.json()["secret_set"] is False


async def test_messages_are_produced_after_commit_in_event_order(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    make_job: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await place(client, keys, locale="en-GB")
    # placing the order wrote no message: the worker produces them from the outbox
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions", json={"to": "cancelled"}, headers=providers
    )
    assert resp.status_code == 200, resp.text
    await drain(make_job().run_once)
    assert [str(m["Subject"]) for m in smtp.handler.received] == [
        f"Order {order['number']} confirmed",
        f"Order {order['number']} cancelled",
    ]
    async with sessionmaker() as session:
        langs = (await session.execute(text("SELECT DISTINCT language FROM messages"))).all()
    assert langs == [("en",)]  # en-GB has no template: its base language


async def test_bad_requests_change_nothing(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = auth(keys["admin"])
    resp = await client.put(
        "/v1/messages/templates/order.placed/sms/it",
        json={"subject": "x", "body_text": "{{ order.number }}"},
        headers=admin,
    )
    assert resp.status_code == 422 and resp.json()["code"] == "template_invalid"
    resp = await client.put(
        "/v1/messages/templates/nope.nope/email/it",
        json={"subject": "x", "body_text": "x"},
        headers=admin,
    )
    assert resp.status_code == 422 and resp.json()["code"] == "unknown_event_type"
    resp = await client.delete("/v1/messages/templates/order.placed/email/it", headers=admin)
    assert resp.status_code == 404 and resp.json()["code"] == "template_not_found"
    resp = await client.post(
        "/v1/messages/preview",
        json={"order_id": str(uuid.uuid4()), "event_type": "order.placed", "channel": "email"},
        headers=admin,
    )
    assert resp.status_code == 404
    resp = await client.get("/v1/messages/templates", headers=auth(keys["storefront"]))
    assert resp.status_code == 403
    for locale in ("italiano!", "i", "x" * 40, 7):
        resp = await client.post("/v1/orders", json=order_body(locale=locale), headers=admin)
        assert resp.status_code == 422, locale
    listed = await client.get("/v1/orders", headers=admin)
    assert listed.json()["items"] == []


async def test_the_worker_sends_with_the_smtp_settings(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    smtp: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """``oms worker`` (the Relay) runs the message job; no provider saved: OMS_SMTP_* apply."""
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "smtp_username": SMTP_USER,
            "smtp_password": SecretStr(SMTP_PASSWORD),
            "message_sender": "orders@shop.example",
            "worker_poll_interval_s": 0.05,
        }
    )
    shown = await client.get("/v1/messages/providers/email", headers=auth(keys["admin"]))
    assert shown.json()["source"] == "none"  # the API's app has no SMTP settings
    order = await place(client, keys, locale="it")
    async with httpx.AsyncClient() as http:
        relay = Relay(sessionmaker=sessionmaker, client=http, settings=configured)
        await relay.run(once=True)
    [mail] = smtp.handler.received
    assert str(mail["Subject"]) == f"Ordine {order['number']} confermato"
    assert mail["X-Envelope-To"] == "ada@example.com"
    assert smtp.handler.authenticated == [True]


class StallingRecorder(SmtpRecorder):
    """Accepts the message, then holds its reply until released: the worker is cut off while
    the server already has the message (the case SMTP cannot make exactly-once)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        self.in_data.set()
        await asyncio.to_thread(self.release.wait, 30)
        return reply


async def test_a_send_cut_off_mid_session_is_sent_again_once_with_the_same_message_id(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    make_job: Any,
    clock: Clock,
    request: pytest.FixtureRequest,
) -> None:
    stalling = StallingRecorder()
    server = SmtpServer(stalling)
    server.start()
    request.addfinalizer(server.stop)
    resp = await client.put(
        "/v1/messages/providers/email",
        json={"host": "127.0.0.1", "port": server.port, "security": "none", "sender": "a@b.c"},
        headers=providers,
    )
    assert resp.status_code == 200, resp.text
    order = await place(client, keys)
    dying = make_job("dying")
    await dying.produce()
    task = asyncio.create_task(dying.send_due())
    assert await asyncio.to_thread(stalling.in_data.wait, 10)
    task.cancel()  # the worker dies while the server holds the message...
    stalling.release.set()  # ...which the server then accepts
    with pytest.raises(asyncio.CancelledError):
        await task

    survivor = make_job("survivor")
    assert await survivor.run_once() == 0  # within the lease: not sent again
    clock.advance(survivor.lease.total_seconds() + 1)
    await drain(survivor.run_once)
    assert await survivor.run_once() == 0
    # at least once: the customer's server got it twice, with one Message-ID to dedupe on
    assert len(stalling.received) == 2
    assert stalling.received[0]["Message-ID"] == stalling.received[1]["Message-ID"]
    log = (await client.get(f"/v1/orders/{order['id']}/messages", headers=providers)).json()
    assert [a["outcome"] for a in log[0]["attempts"]] == ["lease_expired", "sent"]


async def test_ready_for_pickup_tells_the_customer_the_collection_code(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    providers: dict[str, str],
    smtp: SmtpServer,
    sms: SmsStub,
    make_job: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await stock(
        sessionmaker, "STORE-MI", {"MUG-01": 10}, city="Milano", country="IT", is_pickup_store=True
    )
    body = order_body(
        customer=italian_customer(),
        locale="it",
        pickup_store="STORE-MI",
        lines=[{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
    )
    resp = await client.post("/v1/orders", json=body, headers=providers)
    assert resp.status_code == 201, resp.text
    order = resp.json()
    [shipment] = order["shipments"]
    pay = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": "pi_pickup_1",
        "amount": order["totals"]["total"],
        "currency": "EUR",
        "status": "captured",
    }
    resp = await client.post(f"/v1/orders/{order['id']}/payments", json=pay, headers=providers)
    assert resp.status_code == 201, resp.text
    resp = await client.post(
        f"/v1/shipments/{shipment['id']}/transitions", json={"to": "picked"}, headers=providers
    )
    assert resp.status_code == 200, resp.text
    ready = await client.post(f"/v1/pickups/{shipment['id']}/ready", headers=providers)
    assert ready.status_code == 200, ready.text
    assert "code" not in ready.json()  # the API does not show it: the message carries it
    async with sessionmaker() as session:
        code = await session.scalar(
            text("SELECT code FROM pickups WHERE shipment_id = :s"), {"s": shipment["id"]}
        )
    assert code

    await drain(make_job().run_once)
    [text_message] = sms.bodies
    assert text_message["to"] == "+393331234567"
    assert "pronto per il ritiro in STORE-MI" in text_message["text"]
    assert f"Codice {code}." in text_message["text"]
    subjects = [str(m["Subject"]) for m in smtp.handler.received]
    assert f"L'ordine {order['number']} è pronto per il ritiro" in subjects
