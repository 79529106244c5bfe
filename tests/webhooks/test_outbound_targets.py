"""Where oms may send webhooks: not to loopback, private, link-local or cloud metadata addresses
(in any spelling), checked when a subscription is saved and again, on the resolved addresses,
at every delivery (DNS rebinding); the connection goes to the address that was checked. URLs
with credentials are refused, and never shown. This module runs with the production default
(``webhook_allow_private_targets`` off); the local receivers are reached only with it on."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.webhooks.outbound.models import Subscription
from tests.webhooks.conftest import RelayFactory
from tests.webhooks.receiver import Receiver


@pytest.fixture
def private_targets_allowed() -> bool:
    return False


REFUSED = [
    ("http://127.0.0.1:5432/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://[fd00::1]/", "private"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1:8000/", "loopback"),
    ("http://localhost:8000/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://[::1]:8000/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 spelling of 127.0.0.1
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 spelling of 127.0.0.1
    ("http://169.254.1.1/", "link_local"),
    ("http://[fe80::1]/", "link_local"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://100.64.0.1/", "not_global"),
    ("http://224.0.0.1/", "multicast"),
]


async def _post(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> httpx.Response:
    return await client.post(
        "/v1/webhooks/subscriptions", json={"url": url, "event_types": ["*"]}, headers=admin
    )


async def test_internal_targets_are_refused_with_the_reason(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    seen: dict[str, Any] = {}
    for url, reason in REFUSED:
        resp = await _post(client, admin, url)
        seen[url] = (resp.status_code, resp.json().get("code"), resp.json().get("reason"))
        if resp.status_code == 422:
            assert resp.headers["content-type"] == "application/problem+json"
            # the way out, except for metadata addresses: those are never allowed
            allowed_locally = "OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS" in resp.json()["detail"]
            assert allowed_locally is (reason != "metadata"), resp.json()["detail"]
    assert seen == {url: (422, "webhook_url_not_allowed", reason) for url, reason in REFUSED}
    assert (await client.get("/v1/webhooks/subscriptions", headers=admin)).json() == []
    # a public URL is accepted; changing it to an internal one is refused and changes nothing
    ok = await _post(client, admin, "https://erp.example.com/oms")
    assert ok.status_code == 201, ok.text
    sub = ok.json()["id"]
    for url in ("http://10.0.0.1/", "http://[::ffff:169.254.169.254]/"):
        patched = await client.patch(
            f"/v1/webhooks/subscriptions/{sub}", json={"url": url}, headers=admin
        )
        assert patched.status_code == 422 and patched.json()["code"] == "webhook_url_not_allowed"
    got = await client.get(f"/v1/webhooks/subscriptions/{sub}", headers=admin)
    assert got.json()["url"] == "https://erp.example.com/oms"


async def test_credentials_in_urls_are_refused_and_never_shown(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    resp = await _post(client, admin, "https://erp:s3cret@erp.example.com/oms")
    problem = resp.json()
    assert resp.status_code == 422
    assert (problem["code"], problem["reason"]) == ("webhook_url_not_allowed", "credentials")
    assert "s3cret" not in resp.text
    # a subscription stored before this rule keeps working, but its credentials are not shown
    legacy = await _stored(sessionmaker, "https://erp:s3cret@erp.example.com/oms")
    listed = (await client.get("/v1/webhooks/subscriptions", headers=admin)).text
    one = (await client.get(f"/v1/webhooks/subscriptions/{legacy}", headers=admin)).json()
    assert "s3cret" not in listed and "erp:" not in listed
    assert one["url"] == "https://***@erp.example.com/oms"


async def test_urls_longer_than_stored_are_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A URL is stored in at most 2048 characters, as sent or once percent-encoded (each `é`
    takes 6): longer is 422 on create and update, not a 500 from the database."""
    created = await _post(client, admin, "https://erp.example.com/oms")
    assert created.status_code == 201, created.text
    for url in ("https://erp.example.com/" + "a" * 2100, "https://erp.example.com/" + "é" * 400):
        resp = await _post(client, admin, url)
        assert resp.status_code == 422, resp.text[:300]
        resp = await client.patch(
            f"/v1/webhooks/subscriptions/{created.json()['id']}", json={"url": url}, headers=admin
        )
        assert resp.status_code == 422, resp.text[:300]
    got = await client.get(f"/v1/webhooks/subscriptions/{created.json()['id']}", headers=admin)
    assert got.json()["url"] == "https://erp.example.com/oms"


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], url: str) -> uuid.UUID:
    """A subscription row written directly: one saved before the rules, or while the local
    development setting was on."""
    now = utcnow()
    sub = Subscription(
        id=uuid.uuid4(),
        url=url,
        event_types=["*"],
        secret="whsec_" + "A" * 32,
        enabled=True,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    async with sessionmaker() as session, session.begin():
        session.add(sub)
    return sub.id


async def _event(sessionmaker: async_sessionmaker[AsyncSession], name: str = "o1") -> None:
    async with sessionmaker() as session, session.begin():
        await record_event(
            session,
            type="return.requested",
            aggregate_type="order",
            aggregate_id=name,
            data={"return_id": name, "order_id": name, "lines": []},
        )


async def _attempts(client: httpx.AsyncClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    items = (await client.get("/v1/webhooks/deliveries", headers=admin)).json()["items"]
    out: list[dict[str, Any]] = []
    for item in reversed(items):
        detail = await client.get(f"/v1/webhooks/deliveries/{item['id']}", headers=admin)
        out.extend(detail.json()["attempt_log"])
    return out


async def test_a_delivery_to_a_forbidden_address_fails_without_connecting(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    async with Receiver() as receiver:
        await _stored(sessionmaker, receiver.url)  # http://127.0.0.1:<port>/hooks
        await _event(sessionmaker)
        await relay_factory().run_once()
    assert receiver.connections == 0
    [delivery] = (await client.get("/v1/webhooks/deliveries", headers=admin)).json()["items"]
    assert delivery["status"] == "dead"
    [attempt] = await _attempts(client, admin)
    assert attempt["outcome"] == "dead" and attempt["status_code"] is None
    assert attempt["error"].startswith("refused: 127.0.0.1 is a loopback address")
    assert attempt["response_body"] is None


class FakeDns:
    """The relay's resolver seam: answers per host name, and every question asked."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers[host.replace(".", "_")]


async def test_every_resolved_address_is_checked_at_delivery(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A name that resolved to a public address when it was saved may resolve to an internal
    one later (DNS rebinding): every address of the answer is checked at each attempt."""
    async with Receiver() as receiver:
        resp = await _post(client, admin, f"http://hooks.rebind.test:{receiver.port}/hooks")
        assert resp.status_code == 201, resp.text
        await _event(sessionmaker)
        dns = FakeDns(hooks_rebind_test=["93.184.215.14", "127.0.0.1"])
        await relay_factory(resolver=dns).run_once()
    assert dns.asked == [("hooks.rebind.test", receiver.port)]
    assert receiver.connections == 0
    [attempt] = await _attempts(client, admin)
    assert attempt["outcome"] == "dead"
    assert attempt["error"] == (
        "refused: hooks.rebind.test resolves to 127.0.0.1, a loopback address "
        "(OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
    )


async def test_the_connection_goes_to_the_address_that_was_checked(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    relay_factory: RelayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The checked address is the one connected to: the name is not resolved again (a second,
    rebound answer never gets a connection). TLS still verifies the name (SNI)."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="ok")

    resp = await _post(client, admin, "https://hooks.rebind.test/in")
    assert resp.status_code == 201, resp.text
    await _event(sessionmaker)
    dns = FakeDns(hooks_rebind_test=["93.184.215.14"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        await relay_factory(client=mock, resolver=dns).run_once()
    [request] = sent
    assert str(request.url) == "https://93.184.215.14/in"
    assert request.headers["host"] == "hooks.rebind.test"
    assert request.extensions["sni_hostname"] == "hooks.rebind.test"
    assert dns.asked == [("hooks.rebind.test", 443)]
    gone = await client.delete(f"/v1/webhooks/subscriptions/{resp.json()['id']}", headers=admin)
    assert gone.status_code == 204

    # with the local-development setting on, a name pinned to 127.0.0.1 reaches the receiver
    # there (the .test name itself resolves nowhere)
    async with Receiver() as receiver:
        await _stored(sessionmaker, f"http://hooks.rebind.test:{receiver.port}/hooks")
        await _event(sessionmaker, "o2")
        local = FakeDns(hooks_rebind_test=["127.0.0.1"])
        await relay_factory(resolver=local, webhook_allow_private_targets=True).run_once()
    assert [r.headers["host"] for r in receiver.receipts] == [f"hooks.rebind.test:{receiver.port}"]
