"""Back-testing a routing policy (pure): past orders replayed in placement order against the
stock of their time, under a policy, with or without waves.

The caller (``oms.flows.simulations``) rebuilds the stock: what was available per (warehouse,
SKU) when the window opened, and every later change to it that did not come from the replayed
orders, as time-stamped deltas. :func:`replay` then walks the window: before each order, the
deltas stamped up to its placement are applied; the order is routed by the per-order router
(:func:`oms.routing.domain.plan_route`) under the policy and takes its units. With waves, the
non-express orders also join a pool, and each time the pool reaches the wave size (and once at
the end of the window) the pool is re-solved jointly (:func:`oms.routing.wave.solve_wave`).

Nothing here reads a clock or a database: the same input gives the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from oms.routing.domain import (
    Allocation,
    Destination,
    RouteLine,
    RoutingPolicy,
    WarehouseCandidate,
    plan_route,
)
from oms.routing.wave import DEFAULT_TIME_LIMIT_S, OrderChange, WaveOrder, solve_wave

__all__ = [
    "Replay",
    "SimOrder",
    "StockDelta",
    "WaveSetting",
    "changed_orders",
    "replay",
    "summarise",
]


@dataclass(frozen=True, slots=True)
class SimOrder:
    """A past order as placed: its lines, destination, time and its channel's policy then."""

    order_id: str
    placed_at: datetime
    lines: tuple[RouteLine, ...]
    destination: Destination
    policy: RoutingPolicy
    express: bool = False


@dataclass(frozen=True, slots=True)
class StockDelta:
    """Available units of (warehouse, SKU) changed by ``delta`` at ``at`` (a receipt, a count,
    another channel's reservation or its release...)."""

    at: datetime
    warehouse_id: str
    sku: str
    delta: int


@dataclass(frozen=True, slots=True)
class WaveSetting:
    """Waves in a replay: every ``size`` non-express orders (``None``: one wave at the end)."""

    size: int | None
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    express_skips: bool = True


@dataclass(slots=True)
class Replay:
    """One replay's plans and explanations per order, and the waves it ran."""

    allocations: dict[str, tuple[Allocation, ...]] = field(default_factory=dict)
    explanations: dict[str, dict[str, Any]] = field(default_factory=dict)
    wave_changes: dict[str, OrderChange] = field(default_factory=dict)
    waves: int = 0
    wave_seconds: list[float] = field(default_factory=list)
    wave_statuses: list[str] = field(default_factory=list)


def replay(
    orders: Sequence[SimOrder],
    warehouses: Sequence[WarehouseCandidate],
    initial: Mapping[tuple[str, str], int],
    deltas: Sequence[StockDelta],
    *,
    policy_of: Callable[[RoutingPolicy], RoutingPolicy] = lambda p: p,
    waves: WaveSetting | None = None,
) -> Replay:
    """Route ``orders`` (placement order) against ``initial`` stock moved by ``deltas``, each
    under ``policy_of(order.policy)``; ``warehouses``' own ``available`` is ignored."""
    avail: dict[tuple[str, str], int] = defaultdict(int, initial)
    pending = sorted(deltas, key=lambda d: d.at)
    out = Replay()
    pool: list[WaveOrder] = []
    di = 0
    for order in sorted(orders, key=lambda o: (o.placed_at, o.order_id)):
        while di < len(pending) and pending[di].at <= order.placed_at:
            d = pending[di]
            avail[(d.warehouse_id, d.sku)] += d.delta
            di += 1
        skus = {ln.sku for ln in order.lines}
        cands = [
            replace(w, available={s: avail[(w.id, s)] for s in skus if avail[(w.id, s)] > 0})
            for w in warehouses
        ]
        policy = policy_of(order.policy)
        plan = plan_route(order.lines, order.destination, cands, policy)
        for a in plan.allocations:
            avail[(a.warehouse_id, a.sku)] -= a.quantity
        out.allocations[order.order_id] = plan.allocations
        out.explanations[order.order_id] = plan.explanation.to_dict()
        if waves is None or (order.express and waves.express_skips):
            continue
        placed: dict[str, int] = defaultdict(int)
        for a in plan.allocations:
            placed[a.line_id] += a.quantity
        kept = tuple(
            RouteLine(ln.line_id, ln.sku, placed[ln.line_id])
            for ln in order.lines
            if placed[ln.line_id]
        )
        waiting = tuple(
            RouteLine(ln.line_id, ln.sku, ln.quantity - placed[ln.line_id])
            for ln in order.lines
            if ln.quantity > placed[ln.line_id]
        )
        if not (kept or waiting):
            continue
        pool.append(
            WaveOrder(order.order_id, kept, order.destination, policy, plan.allocations, waiting)
        )
        if waves.size is not None and len(pool) >= waves.size:
            _wave(pool, warehouses, avail, out, waves)
            pool = []
    if pool and waves is not None:
        _wave(pool, warehouses, avail, out, waves)
    return out


def _wave(
    pool: list[WaveOrder],
    warehouses: Sequence[WarehouseCandidate],
    avail: dict[tuple[str, str], int],
    out: Replay,
    waves: WaveSetting,
) -> None:
    """Solve the pool against the free stock plus what the pool holds; apply a cheaper plan."""
    held: dict[tuple[str, str], int] = defaultdict(int)
    for o in pool:
        for a in o.current:
            held[(a.warehouse_id, a.sku)] += a.quantity
    skus = {ln.sku for o in pool for ln in (*o.lines, *o.backordered)}
    stock = [
        replace(
            w,
            available={
                s: avail[(w.id, s)] + held[(w.id, s)]
                for s in skus
                if avail[(w.id, s)] + held[(w.id, s)] > 0
            },
        )
        for w in warehouses
    ]
    result = solve_wave(pool, stock, time_limit_s=waves.time_limit_s)
    out.waves += 1
    out.wave_seconds.append(result.seconds)
    out.wave_statuses.append(result.status)
    for change in result.changed:
        for a in change.before:
            avail[(a.warehouse_id, a.sku)] += a.quantity
        for a in change.after:
            avail[(a.warehouse_id, a.sku)] -= a.quantity
        out.allocations[change.order_id] = change.after
        out.wave_changes[change.order_id] = change


def _bands(explanation: Mapping[str, Any]) -> dict[str, int]:
    return {c["warehouse_id"]: c["band"] for c in explanation.get("candidates", [])}


def _units(allocs: Sequence[Allocation]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for a in allocs:
        out[(a.line_id, a.warehouse_id)] += a.quantity
    return dict(out)


def summarise(run: Replay, orders: Sequence[SimOrder], codes: Mapping[str, str]) -> dict[str, Any]:
    """A replay's figures: fill rate, parcels per order, split share, parcels per distance
    band, load per warehouse (parcels, units), parcel cost (6.0 + 1.5 per band, the routing
    benchmark's cost model) and the waves it ran."""
    units = placed = parcels = split = 0
    bands: dict[int, int] = defaultdict(int)
    load: dict[str, dict[str, int]] = {}
    cost = 0.0
    for o in orders:
        units += sum(ln.quantity for ln in o.lines)
        allocs = run.allocations.get(o.order_id, ())
        placed += sum(a.quantity for a in allocs)
        used = list(dict.fromkeys(a.warehouse_id for a in allocs))
        parcels += len(used)
        split += len(used) > 1
        band_of = _bands(run.explanations.get(o.order_id, {}))
        for w in used:
            b = band_of.get(w, 0)
            bands[b] += 1
            cost += 6.0 + 1.5 * b
            entry = load.setdefault(codes.get(w, w), {"parcels": 0, "units": 0})
            entry["parcels"] += 1
        for a in allocs:
            load[codes.get(a.warehouse_id, a.warehouse_id)]["units"] += a.quantity
    n = len(orders)
    seconds = sorted(run.wave_seconds)
    return {
        "orders": n,
        "units": units,
        "units_placed": placed,
        "fill_rate": round(placed / units, 4) if units else 1.0,
        "parcels": parcels,
        "parcels_per_order": round(parcels / n, 4) if n else 0.0,
        "split_share": round(split / n, 4) if n else 0.0,
        "parcels_by_band": {str(b): c for b, c in sorted(bands.items())},
        "load": dict(sorted(load.items())),
        "parcel_cost": round(cost, 2),
        "waves": run.waves,
        "wave_orders_moved": len(run.wave_changes),
        "wave_seconds_p95": round(seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))], 3)
        if seconds
        else None,
    }


def changed_orders(
    current: Replay,
    proposed: Replay,
    orders: Sequence[SimOrder],
    codes: Mapping[str, str],
    *,
    limit: int,
) -> tuple[int, list[dict[str, Any]]]:
    """How many orders the proposed policy plans differently, and the first ``limit`` of them
    (placement order) with both plans and both explanations (the router's, plus the wave's
    change when a wave moved it)."""

    def side(run: Replay, oid: str) -> dict[str, Any]:
        allocs = run.allocations.get(oid, ())
        band_of = _bands(run.explanations.get(oid, {}))
        used = list(dict.fromkeys(a.warehouse_id for a in allocs))
        wave = run.wave_changes.get(oid)
        return {
            "warehouses": [codes.get(w, w) for w in used],
            "parcels": len(used),
            "band_sum": sum(band_of.get(w, 0) for w in used),
            "units_placed": sum(a.quantity for a in allocs),
            "explanation": run.explanations.get(oid),
            "wave": None if wave is None else wave.to_dict(codes),
        }

    changed = [
        o
        for o in orders
        if _units(current.allocations.get(o.order_id, ()))
        != _units(proposed.allocations.get(o.order_id, ()))
    ]
    return len(changed), [
        {
            "order_id": o.order_id,
            "current": side(current, o.order_id),
            "proposed": side(proposed, o.order_id),
        }
        for o in changed[:limit]
    ]
