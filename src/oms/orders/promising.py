"""Delivery promises of a routing plan, the order side: each planned shipment's earliest ship
date and delivery window (from stock on hand), and each line's (the latest of its parts; for
backordered units, from the incoming supply they wait for). The dates are computed by the pure
:mod:`oms.promises.domain` from the per-process cached calendars and transit table
(``promises.service.tables``): placement pays no round trip for them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.inventory import service as inventory_service
from oms.orders.domain import OrderStatus, ShipmentStatus
from oms.orders.events import shipment_payload
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import NewOrder, NewShipment
from oms.outbox.service import record_event
from oms.promises import service as promises_service
from oms.promises.domain import (
    Promise,
    PromiseTables,
    Supply,
    latest,
    promise_backorder,
    promise_shipments,
)
from oms.routing.domain import RoutePlan
from oms.shared.clock import utcnow


def _bands(plan: RoutePlan) -> tuple[dict[str, int], dict[str, str]]:
    """Every candidate's distance band by code, and codes by warehouse id."""
    bands = {c.code: c.band for c in plan.explanation.candidates}
    codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
    return bands, codes


def shipment_promises(
    tables: PromiseTables, plan: RoutePlan, *, at: datetime, country: str, pickup: bool
) -> dict[str, Promise]:
    """The promise of each shipment of ``plan`` (units on hand), by warehouse id."""
    bands, codes = _bands(plan)
    by_code = promise_shipments(
        tables,
        at=at,
        country=country,
        bands={codes[w]: bands[codes[w]] for w in plan.warehouses},
        pickup=pickup,
    )
    return {w: by_code[codes[w]] for w in plan.warehouses}


async def promise_new_shipments(
    session: AsyncSession,
    plan: RoutePlan,
    shipments: Sequence[NewShipment],
    *,
    order: Order | NewOrder,
    at: datetime | None = None,
    country: str | None = None,
) -> None:
    """Set ``ship_by`` and ``deliver_by`` on the shipments about to be written for ``order``:
    promised from ``at`` (default: its placement time) to ``country`` (default: the order's),
    from the cached tables (no round trip once they are loaded). Placement, full re-routes,
    shipment exceptions and moves, and edits call it."""
    if not shipments:
        return
    tables = await promises_service.tables(session)
    promises = shipment_promises(
        tables,
        plan,
        at=order.created_at if at is None else at,
        country=order.ship_country if country is None else country,
        pickup=order.fulfillment == "pickup",
    )
    for sh in shipments:
        p = promises.get(str(sh.warehouse_id))
        if p is not None:
            sh.ship_by, sh.deliver_by = p.ship_by, p.deliver_by


async def promise_rows(
    session: AsyncSession,
    plan: RoutePlan,
    rows: Sequence[dict[str, Any]],
    *,
    order: Order,
    at: datetime,
) -> None:
    """Set ``ship_by`` and ``deliver_by`` on new shipment rows (``warehouse_id`` keyed) of a
    plan made after placement (a backorder fill), promised from ``at``."""
    if not rows:
        return
    tables = await promises_service.tables(session)
    promises = shipment_promises(
        tables, plan, at=at, country=order.ship_country, pickup=order.fulfillment == "pickup"
    )
    for row in rows:
        p = promises.get(str(row["warehouse_id"]))
        row["ship_by"], row["deliver_by"] = (None, None) if p is None else (p.ship_by, p.deliver_by)


# ---- promises of parcels made after placement (issue 18) ---------------------------------------


def earliest_promise(
    shipments: Iterable[Shipment | NewShipment],
) -> tuple[datetime | None, date | None]:
    """The earliest ``ship_by`` and ``deliver_by`` among ``shipments`` (``None`` where none has
    one): what the customer was promised for the units they carry."""
    parcels = list(shipments)
    ship_by = [sh.ship_by for sh in parcels if sh.ship_by is not None]
    deliver_by = [sh.deliver_by for sh in parcels if sh.deliver_by is not None]
    return min(ship_by, default=None), min(deliver_by, default=None)


def keep_promise(shipments: Sequence[NewShipment], *, of: Iterable[Shipment | NewShipment]) -> None:
    """Give the parcels about to be written the promise of the parcels whose units they carry
    (the earliest of them): a split or a wave does not move the date the customer was
    promised."""
    set_promise(shipments, earliest_promise(of))


async def pending_promise(
    session: AsyncSession, *, order_id: uuid.UUID
) -> tuple[datetime | None, date | None]:
    """The earliest promise of the order's pending parcels (what a wave that replaces them
    keeps: :func:`set_promise`)."""
    row = (
        await session.execute(
            select(func.min(Shipment.ship_by), func.min(Shipment.deliver_by)).where(
                Shipment.order_id == order_id, Shipment.status == ShipmentStatus.PENDING.value
            )
        )
    ).one()
    return row[0], row[1]


def set_promise(
    shipments: Iterable[NewShipment], promise: tuple[datetime | None, date | None]
) -> None:
    """Give the parcels about to be written this (kept) promise."""
    for sh in shipments:
        sh.ship_by, sh.deliver_by = promise


async def merge_promise(session: AsyncSession, *, into: Shipment, other: Shipment) -> None:
    """A merge: the parcel kept carries the units of both, so it keeps the earlier promise of
    the two (no unit's promise moves later)."""
    ship_by, deliver_by = earliest_promise([into, other])
    if (ship_by, deliver_by) == (into.ship_by, into.deliver_by):
        return
    await session.execute(
        update(Shipment)
        .where(Shipment.id == into.id)
        .values(ship_by=ship_by, deliver_by=deliver_by)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(into, "ship_by", ship_by)
    set_committed_value(into, "deliver_by", deliver_by)


def _later(
    new: tuple[datetime | None, date | None], old: tuple[datetime | None, date | None]
) -> bool:
    """Whether promise ``new`` is later than ``old``: by ``deliver_by`` when both have one,
    else by the ship date (``ship_by``)."""
    (new_ship, new_deliver), (old_ship, old_deliver) = new, old
    if new_deliver is not None and old_deliver is not None:
        return new_deliver > old_deliver
    if new_deliver is None and old_deliver is None and new_ship and old_ship:
        return new_ship > old_ship
    return False


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def announce_promise_changes(
    session: AsyncSession,
    *,
    order: Order,
    before: Iterable[Shipment],
    shipments: Sequence[NewShipment],
    cause: str,
    actor: str | None = None,
    request_id: str | None = None,
) -> list[dict[str, Any]]:
    """After a re-plan (``cause``: ``shipment_exception``, ``shipment_moved``,
    ``order_edited``, ``rerouted``): each new parcel promised later than the parcels it
    replaces (``before``; their earliest promise) is announced as ``shipment.promise_changed``,
    and the order's history gets one ``promise_changed`` row listing them. Returns them."""
    previous = earliest_promise(before)
    if previous == (None, None):
        return []  # nothing was promised for these units (e.g. added by an edit)
    changes: list[dict[str, Any]] = []
    for sh in shipments:
        if not _later((sh.ship_by, sh.deliver_by), previous):
            continue
        change = {
            "ship_by": _iso(sh.ship_by),
            "deliver_by": _iso(sh.deliver_by),
            "previous_ship_by": _iso(previous[0]),
            "previous_deliver_by": _iso(previous[1]),
            "cause": cause,
        }
        changes.append({"shipment_id": str(sh.id), **change})
        await record_event(
            session,
            type="shipment.promise_changed",
            aggregate_type="order",
            aggregate_id=str(order.id),
            data={**shipment_payload(sh), **change},
        )
    if changes:  # after the operation's own history row (it may have moved the status)
        session.add(
            OrderEvent(
                order_id=order.id,
                kind="promise_changed",
                from_status=order.status,
                to_status=order.status,
                actor=actor or "oms",
                actor_role=None,
                reason=f"delivery promise later after {cause}",
                data={"cause": cause, "shipments": changes},
                request_id=request_id,
                created_at=utcnow(),
            )
        )
    return changes


@dataclass(frozen=True, slots=True)
class PlanPromises:
    shipments: dict[str, Promise]
    """By warehouse id."""
    lines: dict[str, Promise | None]
    """By routing line id: the latest of its parts; ``None`` when some backordered units of it
    wait for supply that is not expected."""
    backorders: dict[str, Promise | None]
    """By routing line id, for lines with backordered units: their promise from incoming
    supply (``None``: not enough supply expected)."""


async def _waiting_units(session: AsyncSession, skus: Collection[str]) -> dict[str, int]:
    """Units of each SKU placed or paid orders already wait for (they are filled first)."""
    rows = await session.execute(
        select(OrderLine.sku, func.sum(OrderLine.backordered))
        .join(Order, Order.id == OrderLine.order_id)
        .where(
            OrderLine.sku.in_(sorted(skus)),
            OrderLine.backordered > 0,
            Order.status.in_((OrderStatus.PLACED.value, OrderStatus.PAID.value)),
        )
        .group_by(OrderLine.sku)
    )
    return {sku: int(q) for sku, q in rows.all()}


async def plan_promises(
    session: AsyncSession, plan: RoutePlan, *, at: datetime, country: str, pickup: bool
) -> PlanPromises:
    """Promises of a plan (a preview): per shipment, per backordered line (from the incoming
    supply of its SKU, after the units orders placed before wait for), per line."""
    tables = await promises_service.tables(session)
    shipments = shipment_promises(tables, plan, at=at, country=country, pickup=pickup)
    parts: dict[str, list[Promise]] = defaultdict(list)
    for a in plan.allocations:
        parts[a.line_id].append(shipments[a.warehouse_id])
    backorders: dict[str, Promise | None] = {}
    if plan.shortages:
        skus = {s.sku for s in plan.shortages}
        supplies: dict[str, list[Supply]] = defaultdict(list)
        for agg in await inventory_service.availability(session, skus=sorted(skus)):
            for item in agg.incoming_supply:
                supplies[agg.sku].append(
                    Supply(item["warehouse"], item["quantity"], _date_of(item["expected_on"]))
                )
        ahead = await _waiting_units(session, skus)
        bands, _ = _bands(plan)
        before: dict[str, int] = defaultdict(int)  # earlier lines of this order, same SKU
        for s in plan.shortages:
            backorders[s.line_id] = promise_backorder(
                tables,
                at=at,
                country=country,
                supplies=supplies[s.sku],
                bands=bands,
                missing=s.missing,
                ahead=ahead.get(s.sku, 0) + before[s.sku],
                pickup=pickup,
            )
            before[s.sku] += s.missing
    lines: dict[str, Promise | None] = {}
    for line_id in {a.line_id for a in plan.allocations} | set(backorders):
        if line_id in backorders and backorders[line_id] is None:
            lines[line_id] = None
            continue
        own = parts[line_id] + [p for p in [backorders.get(line_id)] if p is not None]
        lines[line_id] = latest(own)
    return PlanPromises(shipments=shipments, lines=lines, backorders=backorders)


def _date_of(value: str) -> date:
    return date.fromisoformat(value)


def promise_body(p: Promise | None) -> dict[str, object] | None:
    """A promise as answers show it (``DeliveryPromise``)."""
    return None if p is None else p.to_dict()


def line_bodies(
    plan: RoutePlan, promises: PlanPromises, requested: Sequence[tuple[str, int]]
) -> list[dict[str, object]]:
    """Per requested line (numbered from 1, as a preview numbers them): SKU, units, units
    backordered and its promise (``LinePromise``)."""
    short = {s.line_id: s.missing for s in plan.shortages}
    return [
        {
            "line_id": str(i),
            "sku": sku,
            "quantity": quantity,
            "backordered": short.get(str(i), 0),
            "promise": promise_body(promises.lines.get(str(i))),
        }
        for i, (sku, quantity) in enumerate(requested, 1)
    ]
