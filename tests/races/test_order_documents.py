"""The order as reads show it (``GET /v1/orders/{id}``, the order lists: one statement,
``orders/sql/order_documents.sql``) is the order as requests that change it answer it (the
ORM read of ``read_orders``): the same document for an order in every state the race matrix
builds, and after a partial cancellation and a cancelled order (a shipment's units aside,
which the ORM read lists in no particular order when they were allocated together)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from oms.auth.service import Principal
from oms.orders import service, views
from oms.shared.roles import Role
from tests.races.conftest import STATES, Harness, RaceOrder

ADMIN = Principal(key_id=uuid.uuid4(), name="test", role=Role.ADMIN, channel=None)


async def _orm_document(harness: Harness, order_id: str) -> dict[str, Any]:
    """The document as the routes that change an order render it: ORM order with its lines,
    ``shipments_for`` and ``holds_for``."""
    async with harness.sessionmaker() as session:
        oid = uuid.UUID(order_id)
        order = await service.get_order(session, order_id=oid, principal=ADMIN)
        shipments = (await service.shipments_for(session, order_ids=[oid]))[oid]
        holds = (await service.holds_for(session, order_ids=[oid])).get(oid)
        return views.to_read(order, shipments, holds).model_dump(mode="json")


def _normal(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each shipment's lines sorted: the ORM read lists the units allocated in
    one transaction in no particular order (they share ``created_at``)."""
    return doc | {
        "shipments": [
            sh | {"lines": sorted(sh["lines"], key=lambda u: (u["order_line_id"], u["quantity"]))}
            for sh in doc["shipments"]
        ]
    }


def _in_line_order(doc: dict[str, Any]) -> None:
    """The one-statement read lists a shipment's units in the order of the order's lines."""
    position = {ln["id"]: i for i, ln in enumerate(doc["lines"])}
    for sh in doc["shipments"]:
        seen = [position[u["order_line_id"]] for u in sh["lines"]]
        assert seen == sorted(seen), sh


async def _read(harness: Harness, order: RaceOrder) -> dict[str, Any]:
    resp = await harness.client.get(f"/v1/orders/{order.id}", headers=harness.headers("admin"))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def _listed(harness: Harness, order: RaceOrder, doc: dict[str, Any]) -> dict[str, Any]:
    resp = await harness.client.get(
        "/v1/orders",
        params={"customer_id": doc["customer"]["id"], "limit": 200},
        headers=harness.headers("admin"),
    )
    assert resp.status_code == 200, resp.text
    found = [o for o in resp.json()["items"] if o["id"] == order.id]
    assert len(found) == 1
    listed: dict[str, Any] = found[0]
    return listed


@pytest.mark.parametrize("state", STATES)
async def test_reads_show_the_order_as_its_changes_do(harness: Harness, state: str) -> None:
    order = await harness.build(state)
    doc = await _read(harness, order)
    assert _normal(doc) == _normal(await _orm_document(harness, order.id))
    _in_line_order(doc)
    assert await _listed(harness, order, doc) == doc
    if state == "held":
        assert [h["reason"] for h in doc["holds"]] == ["fraud_review"]
    if state == "split":
        assert len(doc["shipments"]) == 3
        assert all(sh["lines"] for sh in doc["shipments"])


async def test_reads_after_edits_cancellations_and_cancelling(harness: Harness) -> None:
    order = await harness.build("paid")
    resp = await harness.post(
        f"/v1/orders/{order.id}/cancel-lines",
        "admin",
        {"lines": [{"line_id": order.lines["shirt"], "quantity": 1}], "refund": True},
    )
    assert resp.status_code == 200, resp.text
    doc = await _read(harness, order)
    assert [ln["quantity"] for ln in doc["lines"]] == [1, 1]  # one of two T-shirts cancelled
    assert _normal(doc) == _normal(await _orm_document(harness, order.id))
    resp = await harness.order_to(order, "cancelled")
    assert resp.status_code == 200, resp.text
    doc = await _read(harness, order)
    assert doc["status"] == "cancelled"
    assert _normal(doc) == _normal(resp.json())
    assert _normal(doc) == _normal(await _orm_document(harness, order.id))


async def test_a_missing_order_is_404(harness: Harness) -> None:
    resp = await harness.client.get(f"/v1/orders/{uuid.uuid4()}", headers=harness.headers("admin"))
    assert resp.status_code == 404
    assert resp.json()["code"] == "order_not_found"


async def test_a_column_added_by_a_later_migration_changes_no_read(harness: Harness) -> None:
    """Rolling deploys migrate under running code: the read names its columns, so a column
    added meanwhile (to any table it reads) neither breaks its prepared statement ("cached
    plan must not change result type") nor changes what it shows."""
    order = await harness.build("held")
    before = [await _read(harness, order) for _ in range(12)]  # prepared on pooled connections
    tables = ("orders", "order_lines", "shipments", "allocations", "order_holds")
    async with harness.engine.begin() as conn:
        for table in tables:
            await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN zz_later integer DEFAULT 7"))
    try:
        after = [await _read(harness, order) for _ in range(12)]
        listed = await _listed(harness, order, after[0])
    finally:
        async with harness.engine.begin() as conn:
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN zz_later"))
    assert after == before[:1] * 12
    assert listed == before[0]
