"""A small fixed order history, inserted directly, with every figure hand-computable.

Times are UTC. The main window W is [2025-03-01T00:00Z, 2025-03-04T00:00Z).

====  ==================  ===  ======  ==  ==========  =========  ==============================
id    placed (UTC)        cur  chan    to  customer    status     lines (sku qty x price)
====  ==================  ===  ======  ==  ==========  =========  ==============================
O1    03-01 10:00         EUR  web     DE  cus_1       delivered  A-1 2x1000, B-2 1x500 (+500 fee)
O2    03-01 23:30 (*)     EUR  web     DE  cus_1       shipped    A-1 1x1000, C-3 2x250 (1 back-
                                                                  ordered); split: BER + AMS
O3    03-02 12:00         USD  app     US  cus_2       returned   A-1 3x1100 (+700 fee)
O4    03-02 08:00         EUR  web     FR  cus_3       cancelled  B-2 4x500
O5    03-03 09:00         EUR  amazon  AT  guest       paid       D-4 3x200 (1 backordered)
                                                                  (+400 fee)
O6    03-04 00:00 (= to)  EUR  web     DE  cus_1       delivered  A-1 1x1000 (outside W)
O7    02-28 23:30 (**)    GBP  web     GB  cus_4       placed     E-5 1x900 (outside W)
====  ==================  ===  ======  ==  ==========  =========  ==============================

(*) 03-02 00:30 in Berlin. (**) 03-01 00:30 in Berlin.

Steps after placement: O1 paid +1 h, shipped +25 h, delivered +73 h; O2 paid +2 h, shipped
+50 h; O3 paid +3 h, shipped +5 h, delivered +29 h; O4 cancelled +1 h; O5 paid +30 min;
O6 paid +1 h, shipped +10 h, delivered +30 h.

Returns: O3 all 3 x A-1 back (received, size_or_fit); O1 1 x B-2 requested (damaged); O1
1 x A-1 rejected (other: does not count).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.inventory.models import Allocation, Warehouse
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.returns.models import Return, ReturnLine
from tests.helpers import FILL_CUSTOMER_ORDER_TOTALS

W_FROM = "2025-03-01T00:00:00Z"
W_TO = "2025-03-04T00:00:00Z"
WAREHOUSES = {"BER": uuid.UUID(int=1), "AMS": uuid.UUID(int=2)}


def t(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Line:
    sku: str
    quantity: int
    unit_price: int
    backordered: int = 0
    warehouse: str = "BER"
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Spec:
    key: str
    placed: datetime
    currency: str
    channel: str
    country: str
    customer: tuple[str | None, str]
    status: str
    lines: list[Line]
    fee: int = 0
    paid: timedelta | None = None
    shipped: timedelta | None = None
    delivered: timedelta | None = None
    cancelled: timedelta | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def total(self) -> int:
        return sum(ln.quantity * ln.unit_price for ln in self.lines) + self.fee


H = timedelta(hours=1)

SPECS = [
    Spec(
        "O1", t(1, 10), "EUR", "web", "DE", ("cus_1", "ada@example.com"), "delivered",
        [Line("A-1", 2, 1000), Line("B-2", 1, 500)],
        fee=500, paid=H, shipped=25 * H, delivered=73 * H,
    ),
    Spec(
        "O2", t(1, 23, 30), "EUR", "web", "DE", ("cus_1", "ada@example.com"), "shipped",
        [Line("A-1", 1, 1000), Line("C-3", 2, 250, backordered=1, warehouse="AMS")],
        paid=2 * H, shipped=50 * H,
    ),
    Spec(
        "O3", t(2, 12), "USD", "app", "US", ("cus_2", "bob@example.com"), "returned",
        [Line("A-1", 3, 1100)],
        fee=700, paid=3 * H, shipped=5 * H, delivered=29 * H,
    ),
    Spec(
        "O4", t(2, 8), "EUR", "web", "FR", ("cus_3", "cy@example.com"), "cancelled",
        [Line("B-2", 4, 500)],
        cancelled=H,
    ),
    Spec(
        "O5", t(3, 9), "EUR", "amazon", "AT", (None, "guest@example.com"), "paid",
        [Line("D-4", 3, 200, backordered=1)],
        fee=400, paid=H / 2,
    ),
    Spec(
        "O6", t(4, 0), "EUR", "web", "DE", ("cus_1", "ada@example.com"), "delivered",
        [Line("A-1", 1, 1000)],
        paid=H, shipped=10 * H, delivered=30 * H,
    ),
    Spec(
        "O7", t(28, 23, 30, month=2), "GBP", "web", "GB", ("cus_4", "dee@example.com"), "placed",
        [Line("E-5", 1, 900)],
    ),
]  # fmt: skip
BY_KEY = {s.key: s for s in SPECS}

# (order, status, [(sku, quantity, reason)])
RETURNS = [
    ("O3", "received", [("A-1", 3, "size_or_fit")]),
    ("O1", "requested", [("B-2", 1, "damaged")]),
    ("O1", "rejected", [("A-1", 1, "other")]),
]


def _at(spec: Spec, delta: timedelta | None) -> datetime | None:
    return None if delta is None else spec.placed + delta


async def load(
    engine: AsyncEngine,
    *,
    specs: list[Spec] | None = None,
    returns: list[tuple[str, str, list[tuple[str, int, str]]]] | None = None,
) -> dict[str, Spec]:
    """Insert the data set (or the given orders); returns the specs by key."""
    specs = SPECS if specs is None else specs
    returns_spec = RETURNS if returns is None else returns
    by_key = {s.key: s for s in specs}
    orders: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    shipments: list[dict[str, Any]] = []
    allocations: list[dict[str, Any]] = []
    for s in specs:
        orders.append(
            {
                "id": s.id,
                "status": s.status,
                "version": 1,
                "channel": s.channel,
                "customer_id": s.customer[0],
                "customer_email": s.customer[1],
                "currency": s.currency,
                "payment_method": "card",
                "priority": "standard",
                "ship_lines": ["Street 1"],
                "ship_city": "City",
                "ship_country": s.country,
                "subtotal_amount": s.total - s.fee,
                "tax_amount": 0,
                "shipping_fee": s.fee,
                "total_amount": s.total,
                "created_at": s.placed,
                "updated_at": s.placed,
                "paid_at": _at(s, s.paid),
                "shipped_at": _at(s, s.shipped),
                "delivered_at": _at(s, s.delivered),
                "cancelled_at": _at(s, s.cancelled),
            }
        )
        shipment_ids: dict[str, uuid.UUID] = {}
        for ln in s.lines:
            shipment_ids.setdefault(ln.warehouse, uuid.uuid4())
        ship_status = {
            "delivered": "delivered",
            "returned": "delivered",
            "shipped": "shipped",
            "cancelled": "cancelled",
        }.get(s.status, "pending")
        for seq, (code, sid) in enumerate(shipment_ids.items(), start=1):
            shipments.append(
                {
                    "id": sid,
                    "order_id": s.id,
                    "seq": seq,
                    "warehouse_id": WAREHOUSES[code],
                    "warehouse_code": code,
                    "status": ship_status,
                    "version": 1,
                    "created_at": s.placed,
                    "updated_at": s.placed,
                    "shipped_at": _at(s, s.shipped),
                    "delivered_at": _at(s, s.delivered),
                    "cancelled_at": _at(s, s.cancelled),
                }
            )
        alloc_status = (
            "released"
            if s.status == "cancelled"
            else "consumed"
            if s.shipped is not None
            else "open"
        )
        for no, ln in enumerate(s.lines, start=1):
            lines.append(
                {
                    "id": ln.id,
                    "order_id": s.id,
                    "line_no": no,
                    "sku": ln.sku,
                    "name": f"Product {ln.sku}",
                    "quantity": ln.quantity,
                    "unit_price": ln.unit_price,
                    "tax_rate_bps": 0,
                    "backordered": ln.backordered,
                    "subtotal_amount": ln.quantity * ln.unit_price,
                    "tax_amount": 0,
                    "total_amount": ln.quantity * ln.unit_price,
                    "placed_at": s.placed,
                    "channel": s.channel,
                    "currency": s.currency,
                }
            )
            allocations.append(
                {
                    "id": uuid.uuid4(),
                    "order_id": s.id,
                    "order_line_id": ln.id,
                    "shipment_id": shipment_ids[ln.warehouse],
                    "warehouse_id": WAREHOUSES[ln.warehouse],
                    "sku": ln.sku,
                    "quantity": ln.quantity - ln.backordered,
                    "status": alloc_status,
                    "created_at": s.placed,
                    "placed_at": s.placed,
                    "channel": s.channel,
                    "currency": s.currency,
                }
            )
        # the counts placement, shipping and cancellation keep on the order row
        orders[-1] |= {
            "units_ordered": sum(ln.quantity for ln in s.lines),
            "units_shipped": sum(
                a["quantity"]
                for a in allocations
                if a["order_id"] == s.id and a["status"] == "consumed"
            ),
            "live_shipments": 0 if ship_status == "cancelled" else len(shipment_ids),
            "units_returned": 0,  # raised below by the returns that are not rejected
        }
    return_rows: list[dict[str, Any]] = []
    return_lines: list[dict[str, Any]] = []
    for key, status, items in returns_spec:
        spec = by_key[key]
        rid = uuid.uuid4()
        return_rows.append({"id": rid, "order_id": spec.id, "status": status, "created_by": "test"})
        for sku, qty, reason in items:
            line = next(ln for ln in spec.lines if ln.sku == sku)
            return_lines.append(
                {
                    "id": uuid.uuid4(),
                    "return_id": rid,
                    "order_line_id": line.id,
                    "sku": sku,
                    "quantity": qty,
                    "reason_code": reason,
                    "restocked_quantity": 0,
                    "discarded_quantity": 0,
                }
            )
    order_rows = {o["id"]: o for o in orders}
    for key, status, items in returns_spec:
        if status != "rejected":
            order_rows[by_key[key].id]["units_returned"] += sum(qty for _, qty, _ in items)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Warehouse),
            [
                {"id": wid, "code": code, "name": code, "country": "DE", "priority": 100,
                 "is_pickup_store": False, "active": True}
                for code, wid in WAREHOUSES.items()
            ],
        )  # fmt: skip
        await conn.execute(insert(Order), orders)
        await conn.execute(text(FILL_CUSTOMER_ORDER_TOTALS))  # what placement keeps up to date
        await conn.execute(insert(OrderLine), lines)
        await conn.execute(insert(Shipment), shipments)
        await conn.execute(insert(Allocation), allocations)
        if return_rows:
            await conn.execute(insert(Return), return_rows)
            await conn.execute(insert(ReturnLine), return_lines)
        events = [
            {
                "order_id": s.id,
                "kind": "transition",
                "from_status": "delivered",
                "to_status": "returned",
                "actor": "test",
                "reason": "every delivered unit came back",
                "created_at": s.placed + 40 * H,
            }
            for s in specs
            if s.status == "returned"
        ]
        if events:
            await conn.execute(insert(OrderEvent), events)
    return by_key
