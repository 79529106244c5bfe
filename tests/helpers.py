"""Helpers shared by the API tests."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.shared.roles import Role


async def make_key(
    sessionmaker: async_sessionmaker[AsyncSession], role: Role, channel: str | None = None
) -> str:
    from oms.auth.service import create_api_key

    async with sessionmaker() as session, session.begin():
        _, token = await create_api_key(session, name=f"test-{role}", role=role, channel=channel)
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ORDER: dict[str, Any] = {
    "channel": "web",
    "currency": "EUR",
    "customer": {"id": "cus_1", "email": "Ada@Example.com"},
    "shipping_address": {
        "name": "Ada Lovelace",
        "lines": ["Unter den Linden 1"],
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "payment_method": "card",
    "shipping_fee": 495,
    "lines": [
        {"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900},
        {"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
    ],
}


def order_body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ORDER)
    body.update(changes)
    return body


async def stock(
    sessionmaker: async_sessionmaker[AsyncSession],
    warehouse: str,
    levels: dict[str, int],
    **warehouse_fields: Any,
) -> None:
    """Create the warehouse if needed and receive the given units."""
    from oms.inventory import service as inv
    from oms.shared.errors import Conflict

    fields = {"name": warehouse, "country": "DE", "priority": 100} | warehouse_fields
    async with sessionmaker() as session, session.begin():
        try:
            async with session.begin_nested():
                await inv.create_warehouse(session, values={"code": warehouse, **fields})
        except Conflict:
            pass
        for sku, qty in levels.items():
            await inv.adjust_stock(
                session,
                warehouse_code=warehouse,
                sku=sku,
                kind="receive",
                quantity=qty,
                actor="test",
            )


CUSTOMER_ORDER_TOTALS = """
    SELECT currency, customer_id IS NULL AS guest, coalesce(customer_id, customer_email)
           AS customer_key, count(*) AS orders, sum(total_amount) AS amount
    FROM orders WHERE customer_id IS NOT NULL OR customer_email IS NOT NULL GROUP BY 1, 2, 3"""
"""``customer_order_totals`` as it must be: every order placed, per customer and currency
(orders of guests known only by phone, and anonymous ones, are not totalled)."""

FILL_CUSTOMER_ORDER_TOTALS = (
    "INSERT INTO customer_order_totals (currency, guest, customer_key, orders, amount) "
    + CUSTOMER_ORDER_TOTALS
)

INVARIANTS_SQL = {
    "negative or over-reserved stock": """
        SELECT count(*) FROM stock_levels
        WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand""",
    "reserved differs from open allocations": """
        SELECT count(*) FROM stock_levels s
        LEFT JOIN (SELECT warehouse_id, sku, sum(quantity) q FROM allocations
                   WHERE status = 'open' GROUP BY warehouse_id, sku) a
          ON a.warehouse_id = s.warehouse_id AND a.sku = s.sku
        WHERE s.reserved <> coalesce(a.q, 0)""",
    "ledger sum differs from on hand": """
        SELECT count(*) FROM stock_levels s
        LEFT JOIN (SELECT warehouse_id, sku, sum(quantity) q FROM inventory_movements
                   GROUP BY warehouse_id, sku) m
          ON m.warehouse_id = s.warehouse_id AND m.sku = s.sku
        WHERE s.on_hand <> coalesce(m.q, 0)""",
    "open allocation of a closed order": """
        SELECT count(*) FROM allocations a JOIN orders o ON o.id = a.order_id
        WHERE a.status = 'open'
          AND o.status IN ('cancelled', 'shipped', 'delivered', 'returned')""",
    # the counts kept on the order row for the reports (migration 0008)
    "order fulfilment counts differ from lines, allocations, shipments, returns": """
        SELECT count(*) FROM orders o
        WHERE (o.units_ordered, o.units_shipped, o.live_shipments, o.units_returned)
              IS DISTINCT FROM (
            (SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE order_id = o.id),
            (SELECT coalesce(sum(quantity), 0) FROM allocations
             WHERE order_id = o.id AND status = 'consumed'),
            (SELECT count(*) FROM shipments WHERE order_id = o.id AND status <> 'cancelled'),
            (SELECT coalesce(sum(rl.quantity), 0) FROM returns r
             JOIN return_lines rl ON rl.return_id = r.id
             WHERE r.order_id = o.id AND r.status <> 'rejected'))""",
    # the copies and totals kept for the reports (migration 0009)
    "allocation copies differ from their order": """
        SELECT count(*) FROM allocations a JOIN orders o ON o.id = a.order_id
        WHERE (a.placed_at, a.channel, a.currency)
              IS DISTINCT FROM (o.created_at, o.channel, o.currency)""",
    "customer order totals differ from the orders": f"""
        SELECT count(*) FROM (
            (TABLE customer_order_totals EXCEPT {CUSTOMER_ORDER_TOTALS})
            UNION ALL
            ({CUSTOMER_ORDER_TOTALS} EXCEPT TABLE customer_order_totals)) d""",
}


async def assert_stock_invariants(engine: Any) -> None:
    """on hand >= 0, 0 <= reserved <= on hand, reserved = open allocations, ledger = on hand;
    each order's fulfilment counts match its lines, allocations, shipments and returns; and
    the reports' copies (allocations) and customer totals match the orders."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        for name, sql in INVARIANTS_SQL.items():
            bad = (await conn.execute(text(sql))).scalar_one()
            assert bad == 0, f"invariant broken: {name} ({bad} rows)"


@asynccontextmanager
async def app_client(database_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with settings of its own (e.g. a tight admission gate), over httpx."""
    from oms.config import Settings
    from oms.main import create_app

    application = create_app(Settings(database_url=database_url, **settings))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as client:
            yield client


async def until_waiting_for_a_lock(engine: Any, *, tries: int = 200) -> None:
    """Return once a statement of this database waits for a lock (raise if none ever does)."""
    for _ in range(tries):
        async with engine.connect() as probe:  # (a transaction sees one stats snapshot)
            waiting = await probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no statement ever waited for a lock")
