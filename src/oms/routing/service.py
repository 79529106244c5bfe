"""Routing in the order flow: build the snapshot, load the channel's policy, plan.

The planning itself is the pure :func:`oms.routing.domain.plan_route`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import after_commit, driver_connection
from oms.inventory import service as inventory_service
from oms.routing import geo
from oms.routing.domain import (
    Destination,
    GeoPoint,
    RouteLine,
    RoutePlan,
    RoutingPolicy,
    WarehouseCandidate,
    plan_route,
)
from oms.routing.models import RoutingPolicyRow
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound, Unprocessable


@dataclass(frozen=True, slots=True)
class Address:
    country: str
    postal_code: str | None
    city: str | None
    latitude: float | None
    longitude: float | None


async def get_policy_row(session: AsyncSession, *, channel: str) -> RoutingPolicyRow | None:
    """The stored policy of a channel, if any."""
    return await session.get(RoutingPolicyRow, channel)


async def put_policy(
    session: AsyncSession, *, channel: str, values: dict[str, Any]
) -> RoutingPolicyRow:
    """Create or replace a channel's routing policy."""
    codes = values.get("warehouse_codes")
    if codes:
        known = set(await inventory_service.warehouse_ids_by_code(session, codes=codes))
        unknown = sorted(set(codes) - known)
        if unknown:
            raise Unprocessable(
                f"unknown warehouse codes: {', '.join(unknown)}", code="warehouse_not_found"
            )
    row = {"channel": channel, "updated_at": utcnow(), **values}
    stmt = pg_insert(RoutingPolicyRow).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=["channel"], set_=row)
    await session.execute(stmt)
    forget_policies()
    after_commit(session, forget_policies)  # and once committed (a load in between saw the old)
    policy = await get_policy_row(session, channel=channel)
    assert policy is not None
    await session.refresh(policy)
    return policy


async def list_policies(session: AsyncSession) -> list[RoutingPolicyRow]:
    """Every stored channel policy."""
    return list(
        (await session.scalars(select(RoutingPolicyRow).order_by(RoutingPolicyRow.channel))).all()
    )


@dataclass(frozen=True, slots=True)
class _PolicyValues:
    """The columns of a channel's policy row that routing needs."""

    max_shipments: int | None
    allow_line_split: bool
    allow_backorder: bool
    warehouse_codes: list[str] | None
    distance_band_km: float
    exclude_pickup_stores: bool


_POLICY = """SELECT max_shipments, allow_line_split, allow_backorder, warehouse_codes,
       distance_band_km, exclude_pickup_stores
FROM routing_policies WHERE channel = $1"""


POLICY_CACHE_TTL_S = 5.0
"""How long a process reuses a channel's policy it read (this process's own changes apply as
soon as they commit; another process's within this many seconds)."""

_POLICIES: dict[str, tuple[float, _PolicyValues | None]] = {}
"""Per process: channel -> (when read, monotonic; its policy or None)."""

_FORGOTTEN = [0]
"""How many times the cache was dropped: a read that began before a drop is not cached (its
statement may have seen the row as it was before the change that dropped it committed)."""


def forget_policies() -> None:
    """Drop the process's cached policies (the next placement per channel reads its row)."""
    _FORGOTTEN[0] += 1
    _POLICIES.clear()


async def _policy_values(session: AsyncSession, *, channel: str) -> _PolicyValues | None:
    """The channel's policy: from the process's cache (:data:`POLICY_CACHE_TTL_S`), else read
    with one prepared statement (order placement's hot path: no round trip most of the time)."""
    now = time.monotonic()
    cached = _POLICIES.get(channel)
    if cached is not None and now - cached[0] <= POLICY_CACHE_TTL_S:
        return cached[1]
    forgotten = _FORGOTTEN[0]
    conn = await driver_connection(session)
    row = await conn.fetchrow(_POLICY, channel)
    values = None if row is None else _PolicyValues(**dict(row.items()))
    if forgotten != _FORGOTTEN[0]:  # a change committed (or is committing) meanwhile
        return values
    if len(_POLICIES) >= 10_000:  # channels are few; never let odd names grow it unbounded
        _POLICIES.clear()
    _POLICIES[channel] = (now, values)
    return values


def _policy(
    row: RoutingPolicyRow | _PolicyValues | None,
    snapshot: Sequence[inventory_service.WarehouseStock],
    pickup_code: str | None,
) -> RoutingPolicy:
    by_code = {w.code: str(w.id) for w in snapshot}
    pickup_id = None
    if pickup_code is not None:
        if pickup_code not in by_code:
            raise NotFound(
                f"pickup store '{pickup_code}' does not exist", code="warehouse_not_found"
            )
        pickup_id = by_code[pickup_code]
    if row is None:
        return RoutingPolicy(pickup_warehouse_id=pickup_id, exclude_pickup_stores=True)
    allowed = None
    if row.warehouse_codes:
        allowed = frozenset(by_code[c] for c in row.warehouse_codes if c in by_code)
    return RoutingPolicy(
        max_shipments=row.max_shipments,
        allow_line_split=row.allow_line_split,
        allow_backorder=row.allow_backorder,
        pickup_warehouse_id=pickup_id,
        allowed_warehouse_ids=allowed,
        distance_band_km=row.distance_band_km,
        exclude_pickup_stores=row.exclude_pickup_stores,
    )


def _candidate(w: inventory_service.WarehouseStock) -> WarehouseCandidate:
    point = None
    if w.latitude is not None and w.longitude is not None:
        point = GeoPoint(w.latitude, w.longitude)
    return WarehouseCandidate(
        id=str(w.id),
        code=w.code,
        point=point,
        priority=w.priority,
        active=w.active,
        ships_to=w.ships_to,
        is_pickup_store=w.is_pickup_store,
        available=w.available,
        country=w.country,
    )


def candidates(snapshot: Sequence[inventory_service.WarehouseStock]) -> list[WarehouseCandidate]:
    """The routing snapshot as the router's warehouse candidates."""
    return [_candidate(w) for w in snapshot]


async def channel_policy(
    session: AsyncSession,
    *,
    channel: str,
    snapshot: Sequence[inventory_service.WarehouseStock],
) -> RoutingPolicy:
    """The channel's routing policy as :func:`plan` uses it for a shipped order (the stock
    blocks standing in ``snapshot`` included): what waves and simulations route under."""
    policy = _policy(await _policy_values(session, channel=channel), snapshot, None)
    blocked = {(str(w.id), sku) for w in snapshot for sku in w.blocked}
    return replace(policy, blocked=frozenset(blocked)) if blocked else policy


def destination_for(address: Address) -> Destination:
    """Resolve coordinates offline: the address's own, else postal code/city, else country."""
    point, source = geo.resolve_destination(
        address.country, address.postal_code, address.city, address.latitude, address.longitude
    )
    return Destination(country=address.country, point=point, point_source=source)


async def plan(
    session: AsyncSession,
    *,
    lines: Sequence[RouteLine],
    address: Address,
    channel: str,
    pickup_code: str | None = None,
    excluded_warehouse_ids: Collection[uuid.UUID] = (),
) -> RoutePlan:
    """Route an order against the current stock (no locks, nothing reserved). A plan that is
    not fully filled names the SKUs no warehouse has a stock level for (``unknown_skus``).

    ``excluded_warehouse_ids``: warehouses this plan may not use (reason ``excluded``); the
    (warehouse, SKU) blocks standing now count as no stock there (reason ``blocked``)."""
    skus = [ln.sku for ln in lines]
    snapshot = await inventory_service.routing_snapshot(session, skus=skus)
    row = await _policy_values(session, channel=channel)
    policy = _policy(row, snapshot, pickup_code)
    blocked = {(w.id, sku) for w in snapshot for sku in w.blocked}  # read with the snapshot
    if blocked or excluded_warehouse_ids:
        policy = replace(
            policy,
            excluded_warehouse_ids=frozenset(str(w) for w in excluded_warehouse_ids),
            blocked=frozenset((str(w), sku) for w, sku in blocked),
        )
    planned = plan_route(lines, destination_for(address), [_candidate(w) for w in snapshot], policy)
    if planned.fully_filled:
        return planned
    known: set[str] = set()
    for w in snapshot:
        known |= w.skus_with_level
    unknown = frozenset(ln.sku for ln in lines) - known
    return replace(planned, unknown_skus=unknown) if unknown else planned
