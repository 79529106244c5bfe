"""Waves: a channel's waiting orders re-optimised together, then released to the pick queue.

While a channel's wave policy is enabled (``oms.waves``), its orders are still routed and
reserved at placement as always, but stay out of the pick queue until a wave releases them
(``oms.waves.service.waiting_for_wave``). A wave:

1. **reads** the pool in one short transaction: the channel's waiting orders (placed or paid),
   their open allocations, versions and destinations, the channel's routing policy, and the
   stock: the free units plus the units the pool's orders hold (what the wave may hand out);
2. **solves** it outside any transaction (``oms.routing.wave.solve_wave``, HiGHS in a thread,
   with the policy's time limit): each order keeps exactly the units it holds per line; a
   proven optimum that costs less is used, or, when the time limit stops the solver, its best
   plan if it passes the same checks and costs less; otherwise every order keeps its plan;
3. **applies** it in ONE transaction, in the core's lock order: every pool order's row first,
   through THE order lock, in id order; then the order is checked again, and one that changed
   while the wave was solving (version, status, a shipment no longer pending, other
   allocations) or that another wave released meanwhile is *skipped*: never moved. Then every
   stock row of the pool's SKUs, in (warehouse, SKU) order (``lock_stock_of_skus``), before any
   release; moved orders release their reservations, their pending shipments are cancelled, the
   new ones written and reserved (all or nothing, in a savepoint: when the stock moved since
   the read, nothing moves and the wave says so). The order's history, ``orders.routing`` (the
   placement plan kept under ``placement``, the wave's plan and what it saved under ``wave``)
   and ``order.rerouted`` for each moved order; a ``waves`` row, one ``wave_orders`` row per
   released order and ``wave.completed``.

Between 2 and 3 a test can run code (``between``): the seam where orders are cancelled, edited
or picked while the wave solves.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from oms.inventory import service as inventory_service
from oms.orders import backorders, promising
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, ShipmentStatus
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import NewShipment, insert_shipments, route_address
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import Allocation, RouteLine, WarehouseCandidate
from oms.routing.wave import OrderChange, WaveOrder, WaveResult, solve_wave
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound
from oms.waves import service as waves_service
from oms.waves.models import Wave, WavePolicy
from oms.waves.models import WaveOrder as WaveOrderRow

log = logging.getLogger("oms.waves")

_OPEN = (OrderStatus.PLACED.value, OrderStatus.PAID.value)

Between = Callable[[], Awaitable[None]]
"""Awaited after the solve and before the apply transaction (tests: change orders there)."""


@dataclass(frozen=True, slots=True)
class _Seen:
    """An order as the wave read it: what must still hold when it applies."""

    version: int
    status: str
    allocations: tuple[tuple[str, str, str, int], ...]  # (line, warehouse, sku, units), sorted
    backordered: tuple[tuple[str, int], ...] = ()  # (line, units) of lines waiting, sorted


@dataclass(slots=True)
class _Pool:
    channel: str
    order_ids: list[uuid.UUID]  # every waiting order, id order
    seen: dict[uuid.UUID, _Seen]
    solvable: list[WaveOrder]  # the ones the wave may move
    warehouses: list[WarehouseCandidate]
    codes: dict[str, str]  # warehouse id -> code


# --------------------------------------------------------------------------------------------
# 1. read
# --------------------------------------------------------------------------------------------


def _seen_allocations(allocs: Sequence[Any]) -> tuple[tuple[str, str, str, int], ...]:
    return tuple(
        sorted(
            (str(a.order_line_id), str(a.warehouse_id), a.sku, a.quantity)
            for a in allocs
            if a.status == "open"
        )
    )


def _seen_backorders(lines: Sequence[Any]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(ln.id), ln.backordered) for ln in lines if ln.backordered > 0))


async def _read_pool(
    session: AsyncSession, *, policy: WavePolicy, order_ids: Sequence[uuid.UUID] | None
) -> _Pool:
    """The channel's waiting orders (only ``order_ids`` of them, when given), what each holds,
    and the stock the wave may hand out."""
    stmt = (
        select(Order)
        .options(selectinload(Order.lines))
        .where(
            Order.channel == policy.channel,
            Order.status.in_(_OPEN),
            waves_service.waiting_for_wave(
                order_id=Order.id,
                channel=Order.channel,
                priority=Order.priority,
                created_at=Order.created_at,
            ),
        )
        .order_by(Order.id)
    )
    if order_ids is not None:
        stmt = stmt.where(Order.id.in_(list(order_ids)))
    orders = list((await session.scalars(stmt)).all())
    ids = [o.id for o in orders]
    allocs = await inventory_service.allocations_for_orders(session, order_ids=ids) if ids else []
    by_order: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for a in allocs:
        by_order[a.order_id].append(a)
    not_pending: set[uuid.UUID] = set()
    if ids:
        rows = await session.execute(
            select(Shipment.order_id).where(
                Shipment.order_id.in_(ids),
                Shipment.status.notin_(
                    [ShipmentStatus.PENDING.value, ShipmentStatus.CANCELLED.value]
                ),
            )
        )
        not_pending = {r[0] for r in rows}
    seen = {
        o.id: _Seen(
            o.version, o.status, _seen_allocations(by_order[o.id]), _seen_backorders(o.lines)
        )
        for o in orders
    }
    skus = sorted({ln.sku for o in orders for ln in o.lines})
    snapshot = await inventory_service.routing_snapshot(session, skus=skus) if skus else []
    held: dict[tuple[str, str], int] = defaultdict(int)
    solvable: list[WaveOrder] = []
    routing_policy = await routing_service.channel_policy(
        session, channel=policy.channel, snapshot=snapshot
    )
    for o in orders:
        open_allocs = [a for a in by_order[o.id] if a.status == "open"]
        backordered = tuple(
            RouteLine(str(ln.id), ln.sku, ln.backordered) for ln in o.lines if ln.backordered > 0
        )
        if (
            o.id in not_pending
            or o.pickup_warehouse_code is not None
            or not (open_allocs or backordered)
            or any(a.shipment_id is None for a in open_allocs)
        ):
            continue  # picking started, click and collect, nothing to place: released as is
        units: dict[str, int] = defaultdict(int)
        for a in open_allocs:
            units[str(a.order_line_id)] += a.quantity
            held[(str(a.warehouse_id), a.sku)] += a.quantity
        lines = tuple(
            RouteLine(str(ln.id), ln.sku, units[str(ln.id)])
            for ln in o.lines
            if units.get(str(ln.id), 0) > 0
        )
        current = tuple(
            Allocation(str(a.order_line_id), a.sku, str(a.warehouse_id), a.quantity)
            for a in open_allocs
        )
        destination = routing_service.destination_for(route_address(o))
        solvable.append(
            WaveOrder(str(o.id), lines, destination, routing_policy, current, backordered)
        )
    warehouses = [
        replace(
            c,
            available={
                s: c.available.get(s, 0) + held.get((c.id, s), 0)
                for s in {*c.available, *(s for (w, s) in held if w == c.id)}
            },
        )
        for c in routing_service.candidates(snapshot)
    ]
    return _Pool(
        channel=policy.channel,
        order_ids=ids,
        seen=seen,
        solvable=solvable,
        warehouses=warehouses,
        codes={str(w.id): w.code for w in snapshot},
    )


# --------------------------------------------------------------------------------------------
# 3. apply
# --------------------------------------------------------------------------------------------


async def _unchanged(session: AsyncSession, *, order: Order, seen: _Seen) -> str | None:
    """Why the order may not be moved now (it changed under the wave), or None."""
    if order.version != seen.version or order.status != seen.status:
        return f"changed while the wave solved (version {seen.version} -> {order.version})"
    if order.status not in _OPEN:
        return f"no longer open ({order.status})"
    moving = await session.scalar(
        select(func.count())
        .select_from(Shipment)
        .where(
            Shipment.order_id == order.id,
            Shipment.status.notin_([ShipmentStatus.PENDING.value, ShipmentStatus.CANCELLED.value]),
        )
    )
    if moving:
        return "a shipment is being picked"
    allocs = await inventory_service.allocations_for_orders(session, order_ids=[order.id])
    if _seen_allocations(allocs) != seen.allocations:
        return "its reservations changed while the wave solved"
    if _seen_backorders(order.lines) != seen.backordered:
        return "its backorders changed while the wave solved"
    return None


async def _move(
    session: AsyncSession,
    *,
    order: Order,
    change: OrderChange,
    codes: dict[str, str],
    now: datetime,
) -> list[inventory_service.Reservation]:
    """Cancel the order's pending shipments and give back its units, write the wave's
    shipments; returns the reservations to make (the caller reserves them all at once)."""
    await inventory_service.release(session, order_id=order.id)
    promised = await promising.pending_promise(session, order_id=order.id)  # the wave keeps it
    await session.execute(
        update(Shipment)
        .where(Shipment.order_id == order.id, Shipment.status == ShipmentStatus.PENDING.value)
        .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
    )
    first_seq = 1 + (
        await session.scalar(
            select(func.coalesce(func.max(Shipment.seq), 0)).where(Shipment.order_id == order.id)
        )
        or 0
    )
    used = list(dict.fromkeys(a.warehouse_id for a in change.after))
    shipments = {
        wid: NewShipment(
            id=uuid.uuid4(),
            order_id=order.id,
            seq=seq,
            warehouse_id=uuid.UUID(wid),
            warehouse_code=codes[wid],
            created_at=now,
        )
        for seq, wid in enumerate(used, start=first_seq)
    }
    promising.set_promise(shipments.values(), promised)
    await insert_shipments(session, list(shipments.values()))
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(version=order.version + 1, updated_at=now, live_shipments=len(shipments))
        .execution_options(synchronize_session=False)
    )
    filled = _filled_units(change)
    if filled:  # backordered units the wave fills: the lines wait for fewer (as a fill does)
        lines = {str(ln.id): ln for ln in order.lines}
        left = {lid: lines[lid].backordered - units for lid, units in filled.items()}
        await session.execute(
            update(OrderLine), [{"id": uuid.UUID(lid), "backordered": q} for lid, q in left.items()]
        )
        for lid, q in left.items():
            set_committed_value(lines[lid], "backordered", q)
    return [
        inventory_service.Reservation(
            order_id=order.id,
            order_line_id=uuid.UUID(a.line_id),
            shipment_id=shipments[a.warehouse_id].id,
            warehouse_id=uuid.UUID(a.warehouse_id),
            sku=a.sku,
            quantity=a.quantity,
        )
        for a in change.after
    ]


def _filled_units(change: OrderChange) -> dict[str, int]:
    """Per line, the units the wave's plan gives beyond what the order held (its backordered
    units the wave fills)."""
    got: dict[str, int] = defaultdict(int)
    for a in change.after:
        got[a.line_id] += a.quantity
    for a in change.before:
        got[a.line_id] -= a.quantity
    return {lid: q for lid, q in got.items() if q > 0}


def _wave_routing(
    before: dict[str, Any] | None,
    *,
    wave_id: uuid.UUID,
    warehouses: list[str],
    plan: dict[str, Any],
    now: datetime,
    backorders: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``orders.routing`` after a wave moved the order: the plan of placement kept under
    ``placement`` (as ``oms.orders.plans.changed_routing`` does for shipment changes), the
    wave's plan and what it saved under ``wave``."""
    current = dict(before or {})
    placement = current.get("placement") or {
        k: current.get(k) for k in ("warehouses", "fully_filled", "backorders", "explanation")
    }
    waiting = current.get("backorders", []) if backorders is None else backorders
    return {
        "warehouses": warehouses,
        "fully_filled": current.get("fully_filled", True) or not waiting,
        "backorders": waiting,
        "explanation": current.get("explanation"),
        "change": {"kind": "wave", "at": now.isoformat()},
        "placement": placement,
        "wave": {"wave_id": str(wave_id), **plan},
    }


def wave_payload(wave: Wave) -> dict[str, Any]:
    """The ``wave.completed`` event's data (the one builder)."""
    return {
        "wave_id": str(wave.id),
        "channel": wave.channel,
        "trigger": wave.trigger,
        "pool_size": wave.pool_size,
        "moved": wave.moved,
        "skipped": wave.skipped,
        "applied": wave.applied,
        "solver_status": wave.solver_status,
        "objective_before": round(wave.objective_before, 4),
        "objective_after": round(wave.objective_after, 4),
        "solve_seconds": round(wave.solve_seconds, 3),
    }


async def _apply(
    session: AsyncSession,
    *,
    pool: _Pool,
    result: WaveResult,
    trigger: str,
    requested_by: str | None,
    started_at: datetime,
) -> Wave:
    now = utcnow()
    wave_id = uuid.uuid4()
    changes = {c.order_id: c for c in result.changed}
    moved: list[tuple[Order, OrderChange]] = []
    outcome: dict[uuid.UUID, tuple[str, str | None]] = {}
    locked: dict[uuid.UUID, Order] = {}
    # 1. the order rows, in id order (THE order lock, then the state read after it)
    for oid in sorted(pool.order_ids):
        try:
            order = await orders_service.lock_order(session, order_id=oid)
        except NotFound:
            continue  # deleted meanwhile
        locked[oid] = order
    released = set(
        (
            await session.scalars(
                select(WaveOrderRow.order_id).where(WaveOrderRow.order_id.in_(list(locked)))
            )
        ).all()
    )
    for oid, order in locked.items():
        if oid in released:
            continue  # another wave released it meanwhile
        if order.status not in _OPEN:
            continue  # cancelled (or picked) meanwhile: nothing to release
        why = await _unchanged(session, order=order, seen=pool.seen[oid])
        if why is not None:
            outcome[oid] = ("skipped", why)
        elif str(oid) in changes:
            moved.append((order, changes[str(oid)]))
        else:
            outcome[oid] = ("kept", None)
    notes = list(result.notes)
    if moved and len(moved) < len(changes):
        # part of the wave's plan cannot be applied (orders changed under it): the rest alone
        # must still save, or nothing moves (the plan may make one order dearer for another)
        delta = sum(c.delta for _, c in moved)
        if delta >= -1e-6:
            notes.append("the orders the wave's plan relied on changed: every order kept")
            for order, _ in moved:
                outcome[order.id] = ("kept", "the wave's plan relied on orders that changed")
            moved = []
    # 2. the stock rows of every SKU the moves may release or reserve, in the fixed order
    shipment_of: dict[tuple[str, str], uuid.UUID] = {}  # (line, warehouse) -> new shipment
    if moved:
        skus = {a.sku for _, c in moved for a in (*c.before, *c.after)}
        await inventory_service.lock_stock_of_skus(session, skus=skus)
        try:
            async with session.begin_nested():
                reservations = []
                for order, change in moved:
                    made = await _move(
                        session, order=order, change=change, codes=pool.codes, now=now
                    )
                    shipment_of.update(
                        {
                            (str(r.order_line_id), str(r.warehouse_id)): r.shipment_id
                            for r in made
                            if r.shipment_id is not None
                        }
                    )
                    reservations += made
                if not await inventory_service.reserve(session, reservations=reservations):
                    raise _StockMoved
        except _StockMoved:
            notes.append("stock moved since the wave read it: every order keeps its plan")
            for order, _ in moved:
                outcome[order.id] = ("kept", "stock moved while the wave solved")
            moved = []
    for order, change in moved:
        outcome[order.id] = ("moved", None)
        plan = change.to_dict(pool.codes)
        warehouses = list(dict.fromkeys(pool.codes[a.warehouse_id] for a in change.after))
        before_codes = list(order.routing["warehouses"]) if order.routing else []
        filled = _filled_units(change)
        backorders = None
        if filled:
            backorders = [
                {"line_id": str(ln.id), "sku": ln.sku, "quantity": ln.backordered}
                for ln in sorted(order.lines, key=lambda ln: ln.line_no)
                if ln.backordered > 0
            ]
        routing = _wave_routing(
            order.routing,
            wave_id=wave_id,
            warehouses=warehouses,
            plan=plan,
            now=now,
            backorders=backorders,
        )
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(routing=routing)
            .execution_options(synchronize_session=False)
        )
        data = {"from_warehouses": before_codes, "to_warehouses": warehouses}
        session.add(
            OrderEvent(
                order_id=order.id,
                kind="rerouted",  # as a re-route: the same history and event
                from_status=order.status,
                to_status=order.status,
                actor=requested_by or "wave",
                actor_role=None,
                reason=f"wave {wave_id}: saved {plan['saved']['parcels']} parcel(s), "
                f"{plan['saved']['band_sum']} band(s), cost {plan['saved']['cost']}",
                data={**data, "wave_id": str(wave_id), "saved": plan["saved"]},
                request_id=None,
                created_at=now,
            )
        )
        order.version += 1
        await record_event(
            session,
            type="order.rerouted",
            aggregate_type="order",
            aggregate_id=str(order.id),
            data={**orders_service.order_summary(order), **data},
        )
        if filled:
            await _record_fill(
                session,
                order=order,
                change=change,
                filled=filled,
                codes=pool.codes,
                shipment_of=shipment_of,
                wave_id=wave_id,
                actor=requested_by or "wave",
                now=now,
            )
    by_order = {c.order_id: c for c in result.changes}
    applied = bool(moved)
    # what the pool costs now: the moved orders' new plans, everyone else's as before
    objective_after = result.objective_before + sum(c.delta for _, c in moved)
    if result.applied and not applied and not any(o == "moved" for o, _ in outcome.values()):
        if not notes:
            notes.append("the orders to move changed while the wave solved")
    wave = Wave(
        id=wave_id,
        channel=pool.channel,
        trigger=trigger,
        solver_status=result.status[:64],
        proven=result.proven,
        applied=applied,
        pool_size=len(pool.order_ids),
        moved=sum(1 for o, _ in outcome.values() if o == "moved"),
        skipped=sum(1 for o, _ in outcome.values() if o == "skipped"),
        objective_before=result.objective_before,
        objective_after=objective_after,
        solve_seconds=result.seconds,
        notes=notes,
        requested_by=requested_by,
        started_at=started_at,
        completed_at=now,
    )
    session.add(wave)
    await session.flush()
    rows = []
    for oid, (kind, why) in outcome.items():
        solved = by_order.get(str(oid))
        plan_doc = None
        if solved is not None:
            plan_doc = solved.to_dict(pool.codes)
            if kind != "moved":
                plan_doc = {"before": plan_doc["before"]}
        rows.append(
            WaveOrderRow(
                order_id=oid,
                wave_id=wave_id,
                outcome=kind,
                reason=why,
                plan=plan_doc,
                released_at=now,
            )
        )
    session.add_all(rows)
    await session.flush()
    await record_event(
        session,
        type="wave.completed",
        aggregate_type="wave",
        aggregate_id=str(wave_id),
        data=wave_payload(wave),
    )
    return wave


async def _record_fill(
    session: AsyncSession,
    *,
    order: Order,
    change: OrderChange,
    filled: dict[str, int],
    codes: dict[str, str],
    shipment_of: dict[tuple[str, str], uuid.UUID],
    wave_id: uuid.UUID,
    actor: str,
    now: datetime,
) -> None:
    """The backordered units the wave filled, recorded as a backorder fill records them
    (``oms.orders.backorders``): the history row ``backorder_filled`` and
    ``order.backorder_filled`` with the fills and what still waits."""
    # the new units of a line are counted at the warehouses where it gets more than it held
    more: dict[tuple[str, str], int] = defaultdict(int)
    for a in change.after:
        more[(a.line_id, a.warehouse_id)] += a.quantity
    for a in change.before:
        more[(a.line_id, a.warehouse_id)] -= a.quantity
    left = dict(filled)
    sku_of = {a.line_id: a.sku for a in change.after}
    fills: list[dict[str, Any]] = []
    for (line_id, wid), extra in sorted(more.items()):
        take = min(extra, left.get(line_id, 0))
        if take <= 0:
            continue
        left[line_id] -= take
        fills.append(
            {
                "line_id": line_id,
                "sku": sku_of[line_id],
                "quantity": take,
                "warehouse": codes[wid],
                "shipment_id": str(shipment_of[(line_id, wid)]),
                "new_shipment": True,  # a wave writes every parcel of a moved order anew
            }
        )
    await backorders.record_fill(
        session,
        order=order,
        fills=fills,
        warehouses=list(dict.fromkeys(f["warehouse"] for f in fills)),
        reason=f"wave {wave_id}: stock its new plan left for backordered lines",
        actor=actor,
        actor_role=None,
        request_id=None,
        now=now,
    )


class _StockMoved(Exception):
    """A reservation of the wave's plan lost a race: roll back the savepoint, move nothing."""


# --------------------------------------------------------------------------------------------
# the whole wave
# --------------------------------------------------------------------------------------------


async def run_wave(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    channel: str,
    trigger: str,
    requested_by: str | None = None,
    between: Between | None = None,
    order_ids: Sequence[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> uuid.UUID:
    """Read, solve and apply one wave of ``channel`` (three steps, see the module docstring);
    returns the wave's id. 404 ``wave_policy_not_found`` when the channel has no enabled
    wave policy. ``order_ids``: a wave of these waiting orders only (the race matrix).
    ``now``: the wave's start as the caller's clock has it (the worker's, injected in tests)."""
    started_at = now or utcnow()
    async with sessionmaker() as session, session.begin():
        policy = await waves_service.get_policy(session, channel=channel)
        if policy is None or not policy.enabled:
            raise NotFound(
                f"channel '{channel}' has no enabled wave policy", code="wave_policy_not_found"
            )
        pool = await _read_pool(session, policy=policy, order_ids=order_ids)
        time_limit = policy.time_limit_s
    result = await asyncio.to_thread(
        solve_wave, pool.solvable, pool.warehouses, time_limit_s=time_limit
    )
    if between is not None:
        await between()
    async with sessionmaker() as session, session.begin():
        wave = await _apply(
            session,
            pool=pool,
            result=result,
            trigger=trigger,
            requested_by=requested_by,
            started_at=started_at,
        )
    log.info(
        "wave completed",
        extra={
            "wave_id": str(wave.id),
            "channel": channel,
            "pool_size": wave.pool_size,
            "moved": wave.moved,
            "solver_status": wave.solver_status,
        },
    )
    return wave.id


async def released_by(
    session: AsyncSession, *, wave_id: uuid.UUID, order_id: uuid.UUID
) -> str | None:
    """The outcome of ``order_id`` in wave ``wave_id`` (moved, kept, skipped), or None when
    that wave did not release it."""
    return await session.scalar(
        select(WaveOrderRow.outcome).where(
            WaveOrderRow.wave_id == wave_id, WaveOrderRow.order_id == order_id
        )
    )


async def due_waves(session: AsyncSession, *, now: datetime) -> list[tuple[str, str]]:
    """(channel, trigger) of every channel whose next wave is due at ``now``: ``size`` when
    ``max_pool`` orders wait, ``schedule`` when ``interval_s`` passed since its last wave (or
    since waves were enabled), ``cutoff`` when a daily cut-off passed since then. Channels with
    nobody waiting are never due."""
    out: list[tuple[str, str]] = []
    for policy in await waves_service.enabled_policies(session):
        waiting = await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(
                Order.channel == policy.channel,
                Order.status.in_(_OPEN),
                waves_service.waiting_for_wave(
                    order_id=Order.id,
                    channel=Order.channel,
                    priority=Order.priority,
                    created_at=Order.created_at,
                ),
            )
        )
        if not waiting:
            continue
        last = await waves_service.last_wave_at(session, channel=policy.channel)
        since = max(last or policy.enabled_at, policy.enabled_at)
        if policy.max_pool is not None and waiting >= policy.max_pool:
            out.append((policy.channel, "size"))
        elif policy.interval_s is not None and now - since >= timedelta(seconds=policy.interval_s):
            out.append((policy.channel, "schedule"))
        elif any(since < t <= now for t in waves_service.cutoff_times(policy, since, now)):
            out.append((policy.channel, "cutoff"))
    return out


async def run_due_waves(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime) -> int:
    """Run every wave due at ``now`` (the worker); returns how many ran."""
    async with sessionmaker() as session, session.begin():
        due = await due_waves(session, now=now)
    ran = 0
    for channel, trigger in due:
        try:
            await run_wave(
                sessionmaker, channel=channel, trigger=trigger, requested_by="worker", now=now
            )
            ran += 1
        except NotFound:
            continue  # disabled meanwhile
    return ran
