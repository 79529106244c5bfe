"""Order edits and partial cancellation: changing the unpicked units of a placed or paid order.

One writer for both. Under THE order lock (``locking.lock_order``) it checks what may change
(only lines none of whose units are in a shipment past pending; the address only while every
shipment is pending), releases the allocations of the pending shipments affected (cancelling
them), writes the lines' new quantities (``cancelled`` keeps the units taken away; a removed
line stays with a quantity of 0), plans only the units left unallocated with the channel's
routing policy (``plans.plan_rows``), and reserves them last (``inventory.reserve``; a stock
move rolls the savepoint back and plans again, as ``reroute`` does).

A preview runs the same writer inside a savepoint that is always rolled back: what it answers
is exactly what applying would do now, and nothing is written (the row locks it took on stock
are released with the savepoint). Money that changes hands (a refund due) is the business of
``oms.flows.order_changes``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Numeric,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.inventory import service as inventory_service
from oms.orders import domain, promising
from oms.orders.domain import OrderStatus, ShipmentStatus
from oms.orders.events import order_summary
from oms.orders.locking import lock_order, version_conflict
from oms.orders.models import (
    CustomerOrderTotal,
    IdempotencyKey,
    Order,
    OrderEvent,
    OrderLine,
    Shipment,
)
from oms.orders.plans import (
    changed_routing,
    insert_shipments,
    insufficient_stock,
    plan_rows,
    route_address,
    stock_contention,
    unknown_sku,
)
from oms.orders.schemas import Address, OrderLineCreate, TransitionRequest
from oms.orders.transitions import transition_order
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Unprocessable

MAX_ROUTE_ATTEMPTS = 3
MAX_LINES = 250
"""Lines an order may have with units, as when it is placed (``OrderCreate.lines``)."""
MAX_BIGINT = 2**63 - 1
EDITABLE_STATUSES = (OrderStatus.PLACED, OrderStatus.PAID)
"""An order may be edited (or lines cancelled) only before it is picked as a whole."""


@dataclass(frozen=True, slots=True)
class EditSpec:
    """What to change: new quantities of existing lines (0 removes one), lines to add, and a
    new shipping address."""

    quantities: dict[uuid.UUID, int] = field(default_factory=dict)
    add: tuple[OrderLineCreate, ...] = ()
    address: Address | None = None
    add_external_ids: tuple[str | None, ...] = ()
    """The sales channel's line id of each of ``add`` (a connector's edit), if any."""


@dataclass(slots=True)
class EditResult:
    """What an edit changes (or would change): plain data, the same for a preview."""

    order_id: uuid.UUID
    version_before: int
    version_after: int
    status: str
    lines: list[dict[str, Any]]
    totals_before: dict[str, int]
    totals_after: dict[str, int]
    shipments_cancelled: list[dict[str, Any]]
    shipments_planned: list[dict[str, Any]]
    routing: dict[str, Any] | None
    stock: list[dict[str, Any]]
    address_before: dict[str, Any] | None
    address_after: dict[str, Any] | None
    order_cancelled: bool = False

    def difference(self) -> dict[str, Any]:
        """The event's and the history row's account of the change."""
        return {
            "lines": [ln for ln in self.lines if ln["change"] != "unchanged"],
            "totals_before": self.totals_before,
            "totals_after": self.totals_after,
            "address_before": self.address_before,
            "address_after": self.address_after,
            "shipments_cancelled": [s["id"] for s in self.shipments_cancelled],
            "shipments_planned": [s["id"] for s in self.shipments_planned],
        }


class _StockMoved(Exception):
    """A reservation lost a race after routing: roll back the savepoint and plan again."""


class _Preview(Exception):  # noqa: N818 - control flow, not an error
    """Raised at the end of a preview to roll its savepoint back, carrying the result."""

    def __init__(self, result: EditResult) -> None:
        self.result = result


def address_of(order: Order) -> dict[str, Any]:
    """The order's shipping address as the API's ``Address`` dumps it."""
    return {
        "name": order.ship_name,
        "lines": list(order.ship_lines),
        "city": order.ship_city,
        "postal_code": order.ship_postal_code,
        "region": order.ship_region,
        "country": order.ship_country,
        "latitude": order.ship_latitude,
        "longitude": order.ship_longitude,
    }


def saturating_total(column: Any, delta: int) -> ColumnElement[Any]:
    """``column + delta`` kept within 0 and the bigint range (a report's running total)."""
    total = column.cast(Numeric) + delta
    return func.greatest(func.least(total, MAX_BIGINT), 0).cast(BigInteger)


def _totals(order: Order) -> dict[str, int]:
    return {
        "subtotal": order.subtotal_amount,
        "tax_total": order.tax_amount,
        "shipping_fee": order.shipping_fee,
        "total": order.total_amount,
    }


async def edit_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    spec: EditSpec,
    principal: Principal,
    expected_version: int | None,
    reason: str | None,
    request_id: str | None,
    dry_run: bool,
    kind: str = "edited",
) -> EditResult:
    """Apply ``spec`` to the order atomically (or, ``dry_run``, say what it would do and write
    nothing). ``kind``: ``edited`` (event ``order.edited``) or ``lines_cancelled`` (event
    ``order.lines_cancelled``; the order is cancelled when no unit is left)."""
    order = await lock_order(session, order_id=order_id, principal=principal)
    if expected_version is not None and expected_version != order.version:
        raise version_conflict(order, expected_version)
    shipments = list(
        (
            await session.scalars(
                select(Shipment)
                .where(Shipment.order_id == order_id)
                .order_by(Shipment.seq)
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    live = [sh for sh in shipments if sh.status != ShipmentStatus.CANCELLED.value]
    status = OrderStatus(order.status)
    if status not in EDITABLE_STATUSES:
        if status in domain.FULFILMENT_STATUSES:
            raise Conflict(
                f"the order is '{status}': its units are picked or shipped and cannot be edited",
                code="units_not_editable",
                current_status=status.value,
                shipments=[{"id": str(sh.id), "status": sh.status} for sh in live],
            )
        raise Conflict(
            f"a '{status}' order cannot be edited", code="edit_not_allowed", current_status=status
        )
    lines = {ln.id: ln for ln in order.lines}
    unknown = [str(lid) for lid in spec.quantities if lid not in lines]
    if unknown:
        raise Unprocessable(
            "no such line on this order: " + ", ".join(unknown),
            code="unknown_line",
            unknown_lines=unknown,
        )
    allocations = [
        a
        for a in await inventory_service.allocations_for_orders(session, order_ids=[order_id])
        if a.status in ("open", "consumed")
    ]
    by_id = {sh.id: sh for sh in live}
    # units of each line per live shipment
    held: dict[uuid.UUID, dict[uuid.UUID, int]] = defaultdict(lambda: defaultdict(int))
    for a in allocations:
        if a.shipment_id in by_id:
            held[a.order_line_id][a.shipment_id] += a.quantity
    changed = {lid: qty for lid, qty in spec.quantities.items() if qty != lines[lid].quantity}
    new_address = None
    if spec.address is not None:
        candidate = spec.address.model_dump(mode="json")
        if candidate != address_of(order):
            new_address = candidate
    if not changed and not spec.add and new_address is None:
        raise Unprocessable("the edit changes nothing", code="empty_edit")
    frozen: list[dict[str, Any]] = []
    for lid in changed:
        past = [
            {"shipment_id": str(sid), "status": by_id[sid].status, "units": units}
            for sid, units in held[lid].items()
            if by_id[sid].status != ShipmentStatus.PENDING.value
        ]
        if past:
            ln = lines[lid]
            frozen.append({"line_id": str(lid), "sku": ln.sku, "shipments": past})
    picked_shipments = [
        {"id": str(sh.id), "status": sh.status}
        for sh in live
        if sh.status != ShipmentStatus.PENDING.value
    ]
    if frozen or (new_address is not None and picked_shipments):
        raise Conflict(
            "picked or shipped units cannot be edited: "
            + (
                ", ".join(f"line {f['sku']}" for f in frozen)
                if frozen
                else "the address of picked shipments"
            ),
            code="units_not_editable",
            lines=frozen,
            shipments=picked_shipments if new_address is not None else [],
        )
    affected = [
        sh
        for sh in live
        if sh.status == ShipmentStatus.PENDING.value
        and (new_address is not None or any(held[lid].get(sh.id) for lid in changed))
    ]
    kept = [sh for sh in live if sh not in affected]
    remaining = sum(changed.get(lid, ln.quantity) for lid, ln in lines.items()) + sum(
        ln.quantity for ln in spec.add
    )
    if remaining == 0 and kind == "edited":
        raise Unprocessable(
            "an edit cannot take away every unit; cancel the order (or its lines) instead",
            code="empty_order",
        )
    lines_left = sum(1 for lid, ln in lines.items() if changed.get(lid, ln.quantity))
    if lines_left + len(spec.add) > MAX_LINES:  # as when placed: the totals fit their columns
        raise Unprocessable(
            f"an order has at most {MAX_LINES} lines; this edit would leave "
            f"{lines_left + len(spec.add)}",
            code="too_many_lines",
        )
    for attempt in range(MAX_ROUTE_ATTEMPTS):
        try:
            async with session.begin_nested():
                result = await _write(
                    session,
                    order=order,
                    lines=lines,
                    changed=changed,
                    spec=spec,
                    new_address=new_address,
                    affected=affected,
                    kept=kept,
                    held=held,
                    allocations=allocations,
                    remaining=remaining,
                )
                if dry_run:
                    raise _Preview(result)
        except _Preview as preview:
            return preview.result
        except _StockMoved:
            if attempt + 1 < MAX_ROUTE_ATTEMPTS:
                continue
            raise stock_contention() from None
        break
    order = await lock_order(session, order_id=order_id, principal=principal)
    data = result.difference()
    now = utcnow()
    session.add(
        OrderEvent(
            order_id=order_id,
            kind=kind,
            from_status=status.value,
            to_status=status.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=now,
        )
    )
    await record_event(
        session,
        type=f"order.{kind}",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={**order_summary(order), "changes": data},
    )
    return result


async def _write(
    session: AsyncSession,
    *,
    order: Order,
    lines: dict[uuid.UUID, OrderLine],
    changed: dict[uuid.UUID, int],
    spec: EditSpec,
    new_address: dict[str, Any] | None,
    affected: list[Shipment],
    kept: list[Shipment],
    held: dict[uuid.UUID, dict[uuid.UUID, int]],
    allocations: list[Any],
    remaining: int,
) -> EditResult:
    """Every write of an edit, with Core statements only (a rolled-back savepoint leaves the
    session's objects as they were); the stock reservation last."""
    now = utcnow()
    order_id = order.id
    # 0. every stock row the edit may release or reserve, locked first in the fixed order
    await inventory_service.lock_stock_of_skus(
        session, skus={ln.sku for ln in lines.values()} | {new.sku for new in spec.add}
    )
    # 1. the pending shipments affected: their allocations released, in the stock lock order
    released: dict[tuple[str, str], int] = defaultdict(int)
    affected_ids = {sh.id for sh in affected}
    for a in allocations:
        if a.shipment_id in affected_ids and a.status == "open":
            code = next(sh.warehouse_code for sh in affected if sh.id == a.shipment_id)
            released[(code, a.sku)] += a.quantity
    for sh in sorted(affected, key=lambda s: str(s.warehouse_id)):
        await inventory_service.release(session, order_id=order_id, shipment_id=sh.id)
    if affected:
        await session.execute(
            update(Shipment)
            .where(Shipment.id.in_(affected_ids))
            .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    # 2. the lines: new quantities and amounts, new lines
    line_rows: list[dict[str, Any]] = []
    amounts: list[domain.LineAmounts] = []
    new_qty: dict[uuid.UUID, int] = {}
    skus: dict[uuid.UUID, str] = {}
    for lid, ln in lines.items():
        qty = changed.get(lid, ln.quantity)
        new_qty[lid], skus[lid] = qty, ln.sku
        la = domain.line_amounts(qty, ln.unit_price, ln.tax_rate_bps)
        amounts.append(la)
        change = "unchanged"
        if lid in changed:
            change = "removed" if qty == 0 else "quantity"
            await session.execute(
                update(OrderLine)
                .where(OrderLine.id == lid)
                .values(
                    quantity=qty,
                    cancelled=ln.cancelled + max(0, ln.quantity - qty),
                    subtotal_amount=la.subtotal,
                    tax_amount=la.tax,
                    total_amount=la.total,
                )
                .execution_options(synchronize_session=False)
            )
        line_rows.append(
            {
                "line_id": str(lid),
                "sku": ln.sku,
                "change": change,
                "quantity_before": ln.quantity,
                "quantity_after": qty,
                "cancelled": ln.cancelled + max(0, ln.quantity - qty),
                "unit_price": ln.unit_price,
                "tax_rate_bps": ln.tax_rate_bps,
                "subtotal": la.subtotal,
                "tax": la.tax,
                "total": la.total,
            }
        )
    next_no = max((ln.line_no for ln in lines.values()), default=0) + 1
    added: list[tuple[uuid.UUID, int, OrderLineCreate]] = []
    external_ids: dict[uuid.UUID, str | None] = {}
    for i, new in enumerate(spec.add):
        lid = uuid.uuid4()
        la = domain.line_amounts(new.quantity, new.unit_price, new.tax_rate_bps)
        amounts.append(la)
        new_qty[lid], skus[lid] = new.quantity, new.sku
        added.append((lid, next_no + i, new))
        external_ids[lid] = spec.add_external_ids[i] if i < len(spec.add_external_ids) else None
        line_rows.append(
            {
                "line_id": str(lid),
                "sku": new.sku,
                "change": "added",
                "quantity_before": 0,
                "quantity_after": new.quantity,
                "cancelled": 0,
                "unit_price": new.unit_price,
                "tax_rate_bps": new.tax_rate_bps,
                "subtotal": la.subtotal,
                "tax": la.tax,
                "total": la.total,
            }
        )
    if added:
        await session.execute(
            insert(OrderLine),
            [
                {
                    "id": lid,
                    "order_id": order_id,
                    "line_no": no,
                    "sku": new.sku,
                    "name": new.name,
                    "quantity": new.quantity,
                    "unit_price": new.unit_price,
                    "tax_rate_bps": new.tax_rate_bps,
                    "backordered": 0,
                    "cancelled": 0,
                    "subtotal_amount": domain.line_amounts(
                        new.quantity, new.unit_price, new.tax_rate_bps
                    ).subtotal,
                    "tax_amount": domain.line_amounts(
                        new.quantity, new.unit_price, new.tax_rate_bps
                    ).tax,
                    "total_amount": domain.line_amounts(
                        new.quantity, new.unit_price, new.tax_rate_bps
                    ).total,
                    "placed_at": order.created_at,
                    "channel": order.channel,
                    "currency": order.currency,
                    "external_line_id": external_ids[lid],
                }
                for lid, no, new in added
            ],
        )
    totals = domain.order_totals(amounts, order.shipping_fee)
    # 3. plan the units no kept shipment holds
    kept_ids = {sh.id for sh in kept}
    to_plan = {
        lid: qty - sum(u for sid, u in held.get(lid, {}).items() if sid in kept_ids)
        for lid, qty in new_qty.items()
    }
    route_lines = [
        RouteLine(line_id=str(lid), sku=skus[lid], quantity=n)
        for lid, n in to_plan.items()
        if n > 0
    ]
    dest = route_address(order)
    if new_address is not None:
        dest = routing_service.Address(
            country=new_address["country"],
            postal_code=new_address["postal_code"],
            city=new_address["city"],
            latitude=new_address["latitude"],
            longitude=new_address["longitude"],
        )
    backordered = dict.fromkeys(new_qty, 0)
    planned: list[dict[str, Any]] = []
    reservations: list[inventory_service.Reservation] = []
    routing = order.routing
    explanation: dict[str, Any] | None = None  # of the plan of the units planned again
    if route_lines:
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=dest,
            channel=order.channel,
            pickup_code=order.pickup_warehouse_code,
        )
        if not plan.acceptable or plan.unknown_skus:
            if plan.unknown_skus:
                numbers = {lid: no for lid, no, _ in added} | {
                    lid: ln.line_no for lid, ln in lines.items()
                }
                raise unknown_sku(
                    (numbers[uuid.UUID(r.line_id)], r.sku, r.quantity)
                    for r in route_lines
                    if r.sku in plan.unknown_skus
                )
            raise insufficient_stock(plan)
        first_seq = 1 + (
            await session.scalar(
                select(func.coalesce(func.max(Shipment.seq), 0)).where(
                    Shipment.order_id == order_id
                )
            )
            or 0
        )
        rows = plan_rows(
            plan,
            order_id=order_id,
            line_ids={r.line_id: uuid.UUID(r.line_id) for r in route_lines},
            first_seq=first_seq,
            now=now,
        )
        backordered.update(rows.backordered)
        reservations = rows.reservations
        explanation = rows.routing["explanation"]
        # the re-planned parcels: a fresh promise from now, to the (new) address
        await promising.promise_new_shipments(
            session, plan, rows.shipments, order=order, at=now, country=dest.country
        )
        await insert_shipments(session, rows.shipments)
        await promising.announce_promise_changes(
            session, order=order, before=affected, shipments=rows.shipments, cause="order_edited"
        )
        planned = [
            {
                "id": str(sh.id),
                "seq": sh.seq,
                "warehouse": sh.warehouse_code,
                "lines": [
                    {
                        "order_line_id": str(c["order_line_id"]),
                        "sku": c["sku"],
                        "quantity": c["quantity"],
                    }
                    for c in rows.carried[sh.id]
                ],
            }
            for sh in rows.shipments
        ]
    # the stored routing decision: the order's plan now, placement's kept (plans.changed_routing)
    waiting = [
        {"line_id": str(lid), "sku": skus[lid], "quantity": q}
        for lid, q in backordered.items()
        if q > 0
    ]
    if route_lines or routing is not None:
        routing = changed_routing(
            order.routing,
            kind="order_edited",
            at=now,
            warehouses=list(
                dict.fromkeys(
                    [sh.warehouse_code for sh in kept] + [s["warehouse"] for s in planned]
                )
            ),
            backorders=waiting,
            explanation=explanation,
        )
    await session.execute(
        update(OrderLine),
        [{"id": lid, "backordered": units} for lid, units in backordered.items()],
    )
    for row in line_rows:
        row["backordered"] = backordered[uuid.UUID(row["line_id"])]
    values: dict[str, Any] = {
        "version": order.version + 1,
        "updated_at": now,
        "subtotal_amount": totals.subtotal,
        "tax_amount": totals.tax_total,
        "total_amount": totals.total,
        "units_ordered": remaining,
        "live_shipments": len(kept) + len(planned),
        "routing": routing,
    }
    if new_address is not None:
        values |= {f"ship_{k}": v for k, v in new_address.items()}
    bumped = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.version == order.version)
        .values(**values)
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    )
    if bumped.first() is None:  # pragma: no cover - the order lock is held
        raise Conflict("the order changed concurrently; retry", code="concurrent_modification")
    delta = totals.total - order.total_amount
    if delta and (order.customer_id or order.customer_email):
        await session.execute(
            update(CustomerOrderTotal)
            .where(
                CustomerOrderTotal.currency == order.currency,
                CustomerOrderTotal.guest == (order.customer_id is None),
                CustomerOrderTotal.customer_key
                == (order.customer_id or order.customer_email or ""),
            )
            .values(amount=saturating_total(CustomerOrderTotal.amount, delta))
            .execution_options(synchronize_session=False)
        )
    if (
        remaining
        and kept
        and not planned
        and all(sh.status != ShipmentStatus.PENDING.value for sh in kept)
    ):
        raise Conflict(
            "after this change only picked shipments would be left: move the order on to "
            "picked first",
            code="units_not_editable",
            lines=[],
            shipments=[{"id": str(sh.id), "status": sh.status} for sh in kept],
        )
    # 4. the contended stock rows last
    if not await inventory_service.reserve(session, reservations=reservations):
        raise _StockMoved
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    codes = {sh["id"]: sh["warehouse"] for sh in planned}
    for r in reservations:
        reserved[(codes[str(r.shipment_id)], r.sku)] += r.quantity
    stock = [
        {
            "warehouse": wh,
            "sku": sku,
            "reserved": reserved.get((wh, sku), 0),
            "released": released.get((wh, sku), 0),
        }
        for wh, sku in sorted(set(reserved) | set(released))
    ]
    return EditResult(
        order_id=order_id,
        version_before=order.version,
        version_after=order.version + 1,
        status=order.status,
        lines=line_rows,
        totals_before=_totals(order),
        totals_after={
            "subtotal": totals.subtotal,
            "tax_total": totals.tax_total,
            "shipping_fee": totals.shipping_fee,
            "total": totals.total,
        },
        shipments_cancelled=[
            {"id": str(sh.id), "seq": sh.seq, "warehouse": sh.warehouse_code} for sh in affected
        ],
        shipments_planned=planned,
        routing=routing if route_lines else None,
        stock=stock,
        address_before=address_of(order) if new_address is not None else None,
        address_after=new_address,
        order_cancelled=remaining == 0,
    )


async def cancel_lines(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    cancel: dict[uuid.UUID, int],
    principal: Principal,
    expected_version: int | None,
    reason: str | None,
    request_id: str | None,
) -> EditResult:
    """Cancel ``cancel[line]`` units of each line (their allocations released, totals
    recomputed); when no unit is left the order is cancelled through the state machine."""
    order = await lock_order(session, order_id=order_id, principal=principal)
    lines = {ln.id: ln for ln in order.lines}
    unknown = [str(lid) for lid in cancel if lid not in lines]
    if unknown:
        raise Unprocessable(
            "no such line on this order: " + ", ".join(unknown),
            code="unknown_line",
            unknown_lines=unknown,
        )
    over = [
        {"line_id": str(lid), "sku": lines[lid].sku, "quantity": lines[lid].quantity, "cancel": n}
        for lid, n in cancel.items()
        if n > lines[lid].quantity
    ]
    if over:
        raise Unprocessable(
            "cannot cancel more units than a line has: "
            + ", ".join(f"{o['sku']} ({o['cancel']} of {o['quantity']})" for o in over),
            code="cancel_exceeds_quantity",
            lines=over,
        )
    result = await edit_order(
        session,
        order_id=order_id,
        spec=EditSpec(quantities={lid: lines[lid].quantity - n for lid, n in cancel.items()}),
        principal=principal,
        expected_version=expected_version,
        reason=reason,
        request_id=request_id,
        dry_run=False,
        kind="lines_cancelled",
    )
    if result.order_cancelled:
        order = await transition_order(
            session,
            order_id=order_id,
            change=TransitionRequest(
                to=OrderStatus.CANCELLED, reason=reason or "every unit was cancelled"
            ),
            principal=principal,
            request_id=request_id,
        )
        result.status, result.version_after = order.status, order.version
    return result


async def store_response(
    session: AsyncSession, *, scope: str, key: str, status: int, body: dict[str, Any]
) -> None:
    """Keep the response of a request claimed with an Idempotency-Key (``idempotency``) for
    its retries to replay."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(response_status=status, response_body=body)
        .execution_options(synchronize_session=False)
    )


# ---- what a connector's edits need -----------------------------------------------------------


async def set_external_line_ids(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    line_ids: Sequence[str | None],
    channel_updated_at: datetime | None,
) -> None:
    """Remember the sales channel's id of each line of an order just placed from a connector
    (``line_ids[i]``: of line number i + 1) and the channel's time of the order."""
    rows = [
        {"oid": order_id, "no": no, "ext": ext}
        for no, ext in enumerate(line_ids, start=1)
        if ext is not None
    ]
    if rows:
        lines = cast(Table, OrderLine.__table__)  # Core: one statement run for every line
        await session.execute(
            update(lines)
            .where(lines.c.order_id == bindparam("oid"), lines.c.line_no == bindparam("no"))
            .values(external_line_id=bindparam("ext")),
            rows,
        )
    if channel_updated_at is not None:
        await record_channel_update(session, order_id=order_id, at=channel_updated_at)


async def record_channel_update(
    session: AsyncSession, *, order_id: uuid.UUID, at: datetime
) -> None:
    """The channel's state of the order as of ``at`` is applied (never moves back)."""
    await session.execute(
        update(Order)
        .where(
            Order.id == order_id,
            or_(Order.channel_updated_at.is_(None), Order.channel_updated_at < at),
        )
        .values(channel_updated_at=at)
        .execution_options(synchronize_session=False)
    )
