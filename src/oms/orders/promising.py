"""Delivery promises of a routing plan, the order side: each planned shipment's earliest ship
date and delivery window (from stock on hand), and each line's (the latest of its parts; for
backordered units, from the incoming supply they wait for). The dates are computed by the pure
:mod:`oms.promises.domain` from the per-process cached calendars and transit table
(``promises.service.tables``): placement pays no round trip for them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import service as inventory_service
from oms.orders.domain import OrderStatus
from oms.orders.models import Order, OrderLine
from oms.orders.plans import NewOrder, NewShipment
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
) -> None:
    """Set ``ship_by`` and ``deliver_by`` on the shipments about to be written for ``order``:
    promised from ``at`` (default: its placement time), from the cached tables (no round trip
    once they are loaded). Placement and full re-routes call it."""
    if not shipments:
        return
    tables = await promises_service.tables(session)
    promises = shipment_promises(
        tables,
        plan,
        at=order.created_at if at is None else at,
        country=order.ship_country,
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
