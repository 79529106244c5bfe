"""Back-testing a routing policy: a window of a channel's past orders replayed under its current
policy and under a proposed one (``POST /v1/routing/simulations``). Reads only.

**How the stock of that time is rebuilt** (the rule of ``oms.inventory.asof``), for the SKUs of
the replayed orders:

* when the window opens (``T0``), per (warehouse, SKU): on hand = the sum of the ledger's
  movements stamped at or before ``T0``; reserved = the allocations created at or before
  ``T0`` and not closed by then; available = on hand - reserved - the level's *current* safety
  stock (safety stock is not historised), never below 0;
* then, in time order between the orders: every ledger movement in the window except
  shipments (receipts, counts, corrections, returns, transfers, till sales: their units), and
  the allocations of orders that are *not* replayed (other channels, orders placed before the
  window): created in the window -> their units leave, released in the window -> they come
  back. Shipments change nothing available (on hand and reserved fall together), so they are
  skipped; the replayed orders' own allocations are replaced by the replay's.

Simplifications, said plainly: each replayed order is routed with its lines as placed
(quantities before partial cancellations), keeps its units through the window (a later
cancellation is not replayed), and click-and-collect orders are left out; warehouses (active,
ships-to, coordinates, priority) are taken as they are now; stock blocks are not applied.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from oms.inventory import service as inventory_service
from oms.inventory.models import Allocation as AllocationRow
from oms.inventory.models import InventoryMovement, StockLevel
from oms.orders.domain import Priority
from oms.orders.models import Order
from oms.orders.plans import route_address
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine, RoutingPolicy
from oms.routing.simulation import (
    SimOrder,
    StockDelta,
    WaveSetting,
    changed_orders,
    replay,
    summarise,
)
from oms.shared.errors import Unprocessable
from oms.waves import service as waves_service

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ProposedPolicy:
    """What the proposed policy changes; ``_UNSET`` fields keep the channel's current value.
    ``ships_to``: per warehouse code, the countries it would ship to (``None``: everywhere)."""

    warehouse_codes: list[str] | None = _UNSET
    ships_to: dict[str, list[str] | None] | None = None
    max_shipments: int | None = _UNSET
    allow_line_split: bool = _UNSET
    waves: bool = _UNSET
    wave_size: int | None = _UNSET


def _describe(
    policy: RoutingPolicy, codes: dict[str, str], waves: WaveSetting | None
) -> dict[str, Any]:
    return {
        "warehouse_codes": None
        if policy.allowed_warehouse_ids is None
        else sorted(codes.get(w, w) for w in policy.allowed_warehouse_ids),
        "max_shipments": policy.max_shipments,
        "allow_line_split": policy.allow_line_split,
        "waves": waves is not None,
        "wave_size": None if waves is None else waves.size,
    }


async def _stock_then(
    session: AsyncSession,
    *,
    skus: list[str],
    start: datetime,
    end: datetime,
    replayed: set[uuid.UUID],
) -> tuple[dict[tuple[str, str], int], list[StockDelta]]:
    """Available units per (warehouse, SKU) at ``start``, and the changes up to ``end`` that
    did not come from the replayed orders (see the module docstring)."""
    on_hand: dict[tuple[str, str], int] = defaultdict(int)
    rows = await session.execute(
        select(
            InventoryMovement.warehouse_id,
            InventoryMovement.sku,
            func.sum(InventoryMovement.quantity),
        )
        .where(InventoryMovement.sku.in_(skus), InventoryMovement.created_at <= start)
        .group_by(InventoryMovement.warehouse_id, InventoryMovement.sku)
    )
    for wid, sku, qty in rows:
        on_hand[(str(wid), sku)] = int(qty or 0)
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    rows = await session.execute(
        select(AllocationRow.warehouse_id, AllocationRow.sku, func.sum(AllocationRow.quantity))
        .where(
            AllocationRow.sku.in_(skus),
            AllocationRow.created_at <= start,
            or_(AllocationRow.closed_at.is_(None), AllocationRow.closed_at > start),
        )
        .group_by(AllocationRow.warehouse_id, AllocationRow.sku)
    )
    for wid, sku, qty in rows:
        reserved[(str(wid), sku)] = int(qty or 0)
    safety = {
        (str(wid), sku): int(s)
        for wid, sku, s in await session.execute(
            select(StockLevel.warehouse_id, StockLevel.sku, StockLevel.safety_stock).where(
                StockLevel.sku.in_(skus)
            )
        )
    }
    initial = {
        k: max(0, on_hand[k] - reserved[k] - safety.get(k, 0)) for k in set(on_hand) | set(reserved)
    }
    deltas: list[StockDelta] = []
    moves = await session.execute(
        select(
            InventoryMovement.created_at,
            InventoryMovement.warehouse_id,
            InventoryMovement.sku,
            InventoryMovement.quantity,
        ).where(
            InventoryMovement.sku.in_(skus),
            InventoryMovement.created_at > start,
            InventoryMovement.created_at <= end,
            InventoryMovement.movement_type != "shipment",
        )
    )
    for at, wid, sku, qty in moves:
        deltas.append(StockDelta(at, str(wid), sku, int(qty)))
    others = await session.execute(
        select(
            AllocationRow.order_id,
            AllocationRow.created_at,
            AllocationRow.closed_at,
            AllocationRow.status,
            AllocationRow.warehouse_id,
            AllocationRow.sku,
            AllocationRow.quantity,
        ).where(
            AllocationRow.sku.in_(skus),
            or_(
                and_(AllocationRow.created_at > start, AllocationRow.created_at <= end),
                and_(
                    AllocationRow.status == "released",
                    AllocationRow.closed_at > start,
                    AllocationRow.closed_at <= end,
                ),
            ),
        )
    )
    for oid, created, closed, status, wid, sku, qty in others:
        if oid in replayed:
            continue
        if start < created <= end:
            deltas.append(StockDelta(created, str(wid), sku, -int(qty)))
        if status == "released" and closed is not None and start < closed <= end:
            deltas.append(StockDelta(closed, str(wid), sku, int(qty)))
    return initial, deltas


async def simulate(
    session: AsyncSession,
    *,
    channel: str,
    start: datetime,
    end: datetime,
    proposed: ProposedPolicy,
    max_orders: int,
    changed_limit: int,
) -> dict[str, Any]:
    """Replay ``channel``'s orders placed in [start, end) under its current policy and under
    ``proposed``; the figures of both and the orders planned differently."""
    if end <= start:
        raise Unprocessable("the window ends before it starts", code="invalid_window")
    stmt = (
        select(Order)
        .options(selectinload(Order.lines))
        .where(
            Order.channel == channel,
            Order.created_at >= start,
            Order.created_at < end,
            Order.pickup_warehouse_code.is_(None),
        )
        .order_by(Order.created_at, Order.id)
        .limit(max_orders + 1)
    )
    rows = list((await session.scalars(stmt)).all())
    truncated = len(rows) > max_orders
    rows = rows[:max_orders]
    skus = sorted({ln.sku for o in rows for ln in o.lines})
    snapshot = await inventory_service.routing_snapshot(session, skus=skus)
    codes = {str(w.id): w.code for w in snapshot}
    ids_by_code = {w.code: str(w.id) for w in snapshot}
    current = replace(
        await routing_service.channel_policy(session, channel=channel, snapshot=snapshot),
        blocked=frozenset(),
    )
    wave_policy = await waves_service.get_policy(session, channel=channel)
    current_waves = None
    if wave_policy is not None and wave_policy.enabled:
        current_waves = WaveSetting(
            wave_policy.max_pool, wave_policy.time_limit_s, wave_policy.express_skips
        )
    named = set(proposed.ships_to or {})
    if proposed.warehouse_codes is not _UNSET:
        named |= set(proposed.warehouse_codes or [])
    unknown = sorted(c for c in named if c not in ids_by_code)
    if unknown:
        raise Unprocessable(
            f"unknown warehouse codes: {', '.join(unknown)}", code="warehouse_not_found"
        )
    overrides: dict[str, Any] = {}
    if proposed.warehouse_codes is not _UNSET:
        overrides["allowed_warehouse_ids"] = (
            None
            if proposed.warehouse_codes is None
            else frozenset(ids_by_code[c] for c in proposed.warehouse_codes)
        )
    if proposed.max_shipments is not _UNSET:
        overrides["max_shipments"] = proposed.max_shipments
    if proposed.allow_line_split is not _UNSET:
        overrides["allow_line_split"] = proposed.allow_line_split
    proposed_waves = current_waves
    if proposed.waves is not _UNSET:
        proposed_waves = None
        if proposed.waves:
            size = proposed.wave_size if proposed.wave_size is not _UNSET else None
            base = current_waves or WaveSetting(None)
            proposed_waves = WaveSetting(size, base.time_limit_s, base.express_skips)
    elif proposed.wave_size is not _UNSET and current_waves is not None:
        proposed_waves = replace(current_waves, size=proposed.wave_size)

    def policy_of(_: RoutingPolicy) -> RoutingPolicy:
        return replace(current, **overrides)

    def same(_: RoutingPolicy) -> RoutingPolicy:
        return current

    orders = [
        SimOrder(
            order_id=str(o.id),
            placed_at=o.created_at,
            lines=tuple(
                RouteLine(str(ln.id), ln.sku, ln.quantity + ln.cancelled)
                for ln in o.lines
                if ln.quantity + ln.cancelled > 0
            ),
            destination=routing_service.destination_for(route_address(o)),
            policy=current,
            express=o.priority == Priority.EXPRESS.value,
        )
        for o in rows
    ]
    last = max((o.created_at for o in rows), default=start)
    initial, deltas = await _stock_then(
        session, skus=skus, start=start, end=last, replayed={o.id for o in rows}
    )
    warehouses = routing_service.candidates(snapshot)
    proposed_warehouses = warehouses
    if proposed.ships_to:
        by_id = {
            ids_by_code[c]: None if v is None else frozenset(v)
            for c, v in proposed.ships_to.items()
        }
        proposed_warehouses = [
            replace(w, ships_to=by_id[w.id]) if w.id in by_id else w for w in warehouses
        ]

    def run() -> dict[str, Any]:
        now_run = replay(orders, warehouses, initial, deltas, policy_of=same, waves=current_waves)
        new_run = replay(
            orders, proposed_warehouses, initial, deltas, policy_of=policy_of, waves=proposed_waves
        )
        n_changed, changes = changed_orders(now_run, new_run, orders, codes, limit=changed_limit)
        return {
            "current": {
                "policy": _describe(current, codes, current_waves),
                "figures": summarise(now_run, orders, codes),
            },
            "proposed": {
                "policy": _describe(policy_of(current), codes, proposed_waves),
                "figures": summarise(new_run, orders, codes),
            },
            "changed_orders": n_changed,
            "changes": changes,
        }

    # every read is done: end the (read-only) transaction so that the connection goes back to
    # the pool while the replay computes (seconds to minutes with waves), not idle in it
    await session.commit()
    result = await asyncio.to_thread(run)
    return {
        "channel": channel,
        "window": {"from": start, "to": end, "orders": len(rows), "truncated": truncated},
        **result,
    }
