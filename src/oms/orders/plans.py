"""The one writer's first half: a routing plan turned into the rows an order gets (shipments,
reservations, backorders per line, the stored routing decision). Placement writes them in one
statement (``placement``), re-routing through the session (``reroute``); both start here.

The stored routing decision (``orders.routing``, what ``GET /v1/orders/{id}/routing`` answers)
is the order's *current* plan: placement writes it whole; a full re-route, a shipment
exception, move, split or merge, an edit, a partial cancellation or a backorder fill rewrites
it (:func:`changed_routing`) to the warehouses and backorders the order has now, with the
explanation of the latest routing decision, and keeps the plan decided at placement under
``placement``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.inventory.service import Reservation
from oms.orders.domain import ShipmentStatus
from oms.orders.models import Order, Shipment
from oms.routing import service as routing_service
from oms.routing.domain import RoutePlan
from oms.shared.errors import Conflict, Unprocessable

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(slots=True)
class NewShipment:
    """A shipment about to be written (the attributes of the `Shipment` row)."""

    id: uuid.UUID
    order_id: uuid.UUID
    seq: int
    warehouse_id: uuid.UUID
    warehouse_code: str
    created_at: datetime
    status: str = ShipmentStatus.PENDING.value
    version: int = 1
    carrier: str | None = None
    tracking_number: str | None = None
    picked_at: datetime | None = None
    packed_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    ship_by: datetime | None = None  # the delivery promise (oms.orders.promising, 0019)
    deliver_by: date | None = None


@dataclass(slots=True)
class NewOrderLine:
    """A line of an order being placed (plain data: what responses and events read)."""

    id: uuid.UUID
    order_id: uuid.UUID
    line_no: int
    sku: str
    name: str | None
    quantity: int
    unit_price: int
    tax_rate_bps: int
    backordered: int
    subtotal_amount: int
    tax_amount: int
    total_amount: int


@dataclass(slots=True)
class NewOrder:
    """An order as :func:`place_order` wrote it, with the attributes of the `Order` row.

    Order placement builds these instead of ORM objects: nothing goes through the session's
    unit of work, and a plain dataclass costs a fraction of an instrumented instance.
    """

    id: uuid.UUID
    number: int
    status: str
    version: int
    channel: str
    external_reference: str | None
    customer_id: str | None
    customer_email: str | None
    currency: str
    payment_method: str
    priority: str
    ship_name: str | None
    ship_lines: list[str]
    ship_city: str
    ship_postal_code: str | None
    ship_region: str | None
    ship_country: str
    ship_latitude: float | None
    ship_longitude: float | None
    subtotal_amount: int
    tax_amount: int
    shipping_fee: int
    total_amount: int
    fulfillment: str
    pickup_warehouse_code: str | None
    notes: str | None
    attributes: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    lines: list[NewOrderLine]
    routing: dict[str, Any] | None = None
    customer_phone: str | None = None
    customer_anonymous: bool = False
    locale: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ShipmentView:
    shipment: Shipment | NewShipment
    lines: list[dict[str, Any]]


def route_address(order: Order | NewOrder) -> routing_service.Address:
    return routing_service.Address(
        country=order.ship_country,
        postal_code=order.ship_postal_code,
        city=order.ship_city,
        latitude=order.ship_latitude,
        longitude=order.ship_longitude,
    )


def insufficient_stock(plan: RoutePlan) -> Conflict:
    """409 naming each short line: requested, and how many could be placed."""
    short = [
        {"line_id": s.line_id, "sku": s.sku, "requested": s.requested, "available": s.available}
        for s in plan.shortages
    ]
    return Conflict(
        "not enough stock for: "
        + ", ".join(
            f"{s['sku']} (requested {s['requested']}, available {s['available']})" for s in short
        ),
        code="insufficient_stock",
        title="Insufficient stock",
        short_lines=short,
    )


def unknown_sku(lines: Iterable[tuple[int, str, int]]) -> Unprocessable:
    """422 naming each line (number from 1, SKU, quantity) whose SKU no warehouse has a stock
    level for. oms has no product catalogue: a SKU is known once some warehouse has a level for
    it, even at 0 units (then a shortage is ``insufficient_stock``, or a backorder)."""
    unknown = [{"line_no": no, "sku": sku, "quantity": qty} for no, sku, qty in lines]
    return Unprocessable(
        "unknown SKU (no warehouse has a stock level for it): "
        + ", ".join(f"line {u['line_no']} {u['sku']}" for u in unknown),
        code="unknown_sku",
        title="Unknown SKU",
        unknown_lines=unknown,
    )


def stock_contention() -> Conflict:
    return Conflict(
        "stock kept moving while this order was being routed; retry",
        code="stock_contention",
        headers={"Retry-After": "1"},
    )


@dataclass(slots=True)
class PlanRows:
    shipments: list[NewShipment]
    reservations: list[Reservation]
    backordered: dict[uuid.UUID, int]
    """Units each order line waits for (every line of the order, 0 when fully allocated)."""
    routing: dict[str, Any]
    """What ``orders.routing`` stores: warehouses, fill, backorders and the explanation."""
    carried: dict[uuid.UUID, list[dict[str, Any]]] = field(default_factory=dict)
    """Per shipment id: the lines and units it carries (as responses show them)."""


def plan_rows(
    plan: RoutePlan,
    *,
    order_id: uuid.UUID,
    line_ids: dict[str, uuid.UUID],
    first_seq: int,
    now: datetime,
) -> PlanRows:
    """Rows for ``plan`` of the order's lines (``line_ids``: routing line id -> order line id);
    new shipments are numbered from ``first_seq``."""
    codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
    by_warehouse = {
        wid: NewShipment(
            id=uuid.uuid4(),
            order_id=order_id,
            seq=seq,
            warehouse_id=uuid.UUID(wid),
            warehouse_code=codes[wid],
            created_at=now,
        )
        for seq, wid in enumerate(plan.warehouses, start=first_seq)
    }
    reservations: list[Reservation] = []
    carried: dict[uuid.UUID, list[dict[str, Any]]] = {sh.id: [] for sh in by_warehouse.values()}
    for a in plan.allocations:
        shipment = by_warehouse[a.warehouse_id]
        line_id = line_ids[a.line_id]
        reservations.append(
            Reservation(
                order_id=order_id,
                order_line_id=line_id,
                shipment_id=shipment.id,
                warehouse_id=shipment.warehouse_id,
                sku=a.sku,
                quantity=a.quantity,
            )
        )
        carried[shipment.id].append(
            {"order_line_id": line_id, "sku": a.sku, "quantity": a.quantity}
        )
    backordered: dict[uuid.UUID, int] = defaultdict(int)
    for short in plan.backorders:
        backordered[line_ids[short.line_id]] += short.missing
    routing = {
        "warehouses": [codes[w] for w in plan.warehouses],
        "fully_filled": plan.fully_filled,
        "backorders": [
            {"line_id": s.line_id, "sku": s.sku, "quantity": s.missing} for s in plan.backorders
        ],
        "explanation": plan.explanation.to_dict(),
    }
    return PlanRows(
        shipments=list(by_warehouse.values()),
        reservations=reservations,
        backordered={line_id: backordered[line_id] for line_id in line_ids.values()},
        routing=routing,
        carried=carried,
    )


async def insert_shipments(session: AsyncSession, shipments: Sequence[NewShipment]) -> None:
    """The writer's second half for shipments: insert the plan's new pending shipments (one
    statement). Used by re-routing, edits and shipment exceptions and moves."""
    if not shipments:
        return
    await session.execute(
        insert(Shipment),
        [
            {
                "id": sh.id,
                "order_id": sh.order_id,
                "seq": sh.seq,
                "warehouse_id": sh.warehouse_id,
                "warehouse_code": sh.warehouse_code,
                "status": sh.status,
                "version": sh.version,
                "created_at": sh.created_at,
                "updated_at": sh.created_at,
                "ship_by": sh.ship_by,  # the delivery promise, when the caller made one
                "deliver_by": sh.deliver_by,
            }
            for sh in shipments
        ],
    )


ROUTING_CHANGES = (
    "shipment_exception",
    "shipment_moved",
    "shipment_split",
    "shipment_merged",
    "order_edited",
    "rerouted",
    "backorder_filled",
)
"""What may rewrite the stored routing decision after placement (``routing.change.kind``):
shipment exceptions, moves, splits, merges; edits and partial cancellations (``edits``); a
full re-route (``reroute``); backordered units filled as stock arrives (``backorders``)."""


def changed_routing(
    current: Mapping[str, Any] | None,
    *,
    kind: str,
    at: datetime,
    warehouses: list[str],
    backorders: list[dict[str, Any]],
    explanation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The routing document after ``kind`` changed the order's shipments: the current
    warehouses and backorders, the explanation of this change's routing decision (``None``:
    a split or merge decides nothing, the last explanation stays), what changed it and when,
    and the plan of placement kept under ``placement``."""
    if kind not in ROUTING_CHANGES:
        raise ValueError(f"unknown routing change {kind!r}")
    before = dict(current or {})
    placement = before.get("placement")
    if placement is None and before:
        placement = {
            "warehouses": before.get("warehouses") or [],
            "fully_filled": bool(before.get("fully_filled")),
            "backorders": before.get("backorders") or [],
            "explanation": before.get("explanation") or None,
        }
    return {
        "warehouses": warehouses,
        "fully_filled": not backorders,
        "backorders": backorders,
        "explanation": explanation
        if explanation is not None
        else before.get("explanation") or None,
        "change": {"kind": kind, "at": at.isoformat()},
        "placement": placement,
    }


async def store_current_routing(
    session: AsyncSession,
    *,
    order: Order,
    kind: str,
    at: datetime,
    explanation: dict[str, Any] | None,
) -> None:
    """Rewrite ``orders.routing`` to the order's plan as it is now (its live shipments'
    warehouses in order, its lines' backorders; :func:`changed_routing`). Under the order
    lock, after the shipments and lines were written."""
    codes = (
        await session.scalars(
            select(Shipment.warehouse_code)
            .where(
                Shipment.order_id == order.id,
                Shipment.status != ShipmentStatus.CANCELLED.value,
            )
            .order_by(Shipment.seq)
        )
    ).all()
    routing = changed_routing(
        order.routing,
        kind=kind,
        at=at,
        warehouses=list(dict.fromkeys(codes)),
        backorders=[
            {"line_id": str(ln.id), "sku": ln.sku, "quantity": ln.backordered}
            for ln in sorted(order.lines, key=lambda ln: ln.line_no)
            if ln.backordered > 0
        ],
        explanation=explanation,
    )
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(routing=routing)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(order, "routing", routing)
