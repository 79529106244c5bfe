"""Fulfilment reports: the KPIs of the window's orders (placed, cancelled, time to paid /
shipped / delivered with exact medians and 90th percentiles, split shipments, fill rate,
returns, late orders) and the list of late orders.

The percentiles are exact but need not sort every duration of a large window: a fixed sample
brackets each of them (:class:`Sampling`, see :func:`_percentiles`).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.reports.window import (
    OPEN_STATUSES,
    Window,
    fetch_one,
    fetch_rows,
    prepare,
    ratio,
    seconds,
    window_where,
)

DURATIONS = {"paid": "paid_after_s", "shipped": "shipped_after_s", "delivered": "delivered_after_s"}
"""The fulfilment durations: the orders' (generated) columns of seconds from placement to payment,
shipping and delivery (null until then)."""
PERCENTILES = (0.5, 0.9)
SAMPLE_MASK = 31
"""The sample: orders whose ``uuid_hash(id) & SAMPLE_MASK = 0`` (~1 in 32, the same ones on every
call; a partial index of migration 0008 holds them)."""
MIN_SAMPLE = 100
"""Fewer sampled durations than this (windows under ~3,200 orders): one exact sort instead."""
SIGMAS = 3.0
"""Half-width of a percentile's bracket, in standard deviations of the sample's rank."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the fulfilment report samples its durations to bracket the percentiles. Production
    uses :data:`SAMPLING` (the constants above); a test passes other values to take one way on
    purpose (a denser sample so that a small window is bracketed; negative ``sigmas``: brackets
    that miss, so the exact sort runs)."""

    mask: int = SAMPLE_MASK
    min_sample: int = MIN_SAMPLE
    sigmas: float = SIGMAS


SAMPLING = Sampling()
"""The sampling the report runs with unless given another."""


@dataclass(frozen=True, slots=True)
class _Bracket:
    """A value range that should hold one percentile of one duration (from the sample)."""

    name: str
    fraction: float
    lo: float | None  # None: unbounded
    hi: float | None


def _brackets(samples: dict[str, list[float]], sampling: Sampling) -> list[_Bracket]:
    """For each percentile of each duration with a large enough sample: the sample's values
    ``sampling.sigmas`` standard deviations of rank on either side of it."""
    out: list[_Bracket] = []
    for name, sample in samples.items():
        m = len(sample)
        if m < sampling.min_sample:
            continue
        for fraction in PERCENTILES:
            at = fraction * (m - 1)
            margin = math.ceil(sampling.sigmas * math.sqrt(m * fraction * (1 - fraction))) + 1
            lo_i, hi_i = math.floor(at) - margin, math.ceil(at) + margin
            out.append(
                _Bracket(
                    name,
                    fraction,
                    sample[lo_i] if 0 <= lo_i < m else None,
                    sample[hi_i] if 0 <= hi_i < m else None,
                )
            )
    return out


def _ranks(count: int, fraction: float) -> tuple[int, int, float]:
    """The two neighbouring 0-based ranks and the weight ``percentile_cont`` interpolates."""
    position = fraction * (count - 1)
    low = math.floor(position)
    return low, math.ceil(position), position - low


def _lerp(low: float, high: float, weight: float) -> float:
    return low + weight * (high - low)  # as Postgres' float8 percentile_cont interpolates


def _in_brackets(brackets: list[_Bracket]) -> tuple[str, dict[str, Any]]:
    """The SQL predicate "inside any of the brackets" on alias ``o``, and its bounds."""
    bounds: dict[str, Any] = {}
    inside: list[str] = []
    for i, b in enumerate(brackets):
        value = "o." + DURATIONS[b.name]
        conditions = [f"{value} IS NOT NULL"]
        if b.lo is not None:
            conditions.append(f"{value} >= :lo{i}")
            bounds[f"lo{i}"] = b.lo
        if b.hi is not None:
            conditions.append(f"{value} <= :hi{i}")
            bounds[f"hi{i}"] = b.hi
        inside.append("(" + " AND ".join(conditions) + ")")
    return " OR ".join(inside), bounds


async def _percentiles(
    session: AsyncSession,
    where: str,
    params: dict[str, Any],
    counts: dict[str, int],
    brackets: list[_Bracket],
    below: list[int],
    fetched: dict[str, list[float | None]],
) -> dict[str, list[float] | None]:
    """Exact median and 90th percentile of each duration, as ``percentile_cont`` computes them,
    without sorting every value of a large window.

    A sort of the ~500,000 durations of a year costs ~0.15 s (three of them: most of the
    report's time). Instead the sample gives each percentile a bracket that holds it but for a
    3-sigma miss; the report's main statement counts the durations below each bracket
    (``below``) and returns the few inside the brackets (``fetched``: the durations of the
    orders with any duration in any bracket), all from one snapshot; the values at the wanted
    ranks are read off. A duration whose rank falls outside its bracket (or whose sample is too
    small) is ranked with one exact sort instead: the result is always exact, only the time
    varies.
    """
    results: dict[str, list[float] | None] = {n: None for n in DURATIONS}
    bracketed = {b.name for b in brackets}
    exact = [n for n, count in counts.items() if count and n not in bracketed]
    columns = {n: sorted(v for v in fetched.get(n, []) if v is not None) for n in bracketed}
    found: dict[str, list[float]] = defaultdict(list)
    for b, first in zip(brackets, below, strict=True):
        if b.name in exact:
            continue  # another bracket of this duration missed already
        column = columns[b.name]  # sorted: the bracket is a slice of it
        start = 0 if b.lo is None else bisect.bisect_left(column, b.lo)
        stop = len(column) if b.hi is None else bisect.bisect_right(column, b.hi)
        values = column[start:stop]
        low, high, weight = _ranks(counts[b.name], b.fraction)
        if not first <= low <= high < first + len(values):
            exact.append(b.name)  # the sample was that far off: sort this one
            continue
        found[b.name].append(_lerp(values[low - first], values[high - first], weight))
    results |= {n: v for n, v in found.items() if n not in exact}
    if exact:
        cols = ", ".join(
            f"percentile_cont(ARRAY{list(PERCENTILES)}) WITHIN GROUP "
            f"(ORDER BY o.{DURATIONS[n]}) AS {n}"
            for n in exact
        )
        row = await fetch_one(session, f"SELECT {cols} FROM orders o WHERE {where}", params)
        results |= {n: row[n] for n in exact}
    return results


async def _late_by_promise(
    session: AsyncSession, where: str, params: dict[str, Any], *, as_of: datetime
) -> dict[str, int]:
    """Lateness of the window's orders that carry a delivery promise (issue 18), to replace
    their age-based lateness: an open order is late when a shipment not shipped yet has a
    ``ship_by`` before ``as_of`` (its promise: those shipments have one; else its age counts,
    as in :func:`late_orders`); a shipped order is shipped late when a shipment shipped after
    its ``ship_by`` (its promise: its shipped shipments have one). ``age_*``: how many of the
    same orders the age rule counted (to take off); ``promise_*``: how many the promise
    counts. Each order of the window looks up its own shipments (their order index): the cost
    follows the window, not the shipments table (README: Delivery promises)."""
    unshipped = "s.status IN ('pending', 'picked', 'packed')"
    row = await fetch_one(
        session,
        f"""
        SELECT
            count(*) FILTER (WHERE o.status IN {OPEN_STATUSES} AND p.open_promised
                               AND o.created_at < :late_before) AS age_open,
            count(*) FILTER (WHERE o.status IN {OPEN_STATUSES} AND p.open_late) AS promise_open,
            count(*) FILTER (WHERE p.shipped_promised AND o.shipped_after_s > :late_after_s)
                AS age_shipped,
            count(*) FILTER (WHERE p.shipped_promised AND o.shipped_after_s IS NOT NULL
                               AND p.shipped_late) AS promise_shipped
        FROM orders o CROSS JOIN LATERAL (
            SELECT bool_or({unshipped}) AS open_promised,
                   bool_or({unshipped} AND s.ship_by < :as_of) AS open_late,
                   bool_or(s.shipped_at IS NOT NULL) AS shipped_promised,
                   bool_or(s.shipped_at > s.ship_by) AS shipped_late
            FROM shipments s
            WHERE s.order_id = o.id AND s.ship_by IS NOT NULL AND s.status <> 'cancelled'
        ) p
        WHERE {where}
        """,
        params | {"as_of": as_of},
    )
    return {
        k: int(row[k] or 0) for k in ("age_open", "promise_open", "age_shipped", "promise_shipped")
    }


async def fulfilment(
    session: AsyncSession,
    *,
    window: Window,
    late_after: timedelta,
    as_of: datetime,
    sampling: Sampling | None = None,
) -> dict[str, Any]:
    """Fulfilment KPIs of the window's orders (see the API description for each figure).

    The percentile sample first (a small partial index); then one statement over the window's
    orders in their fulfilment index (the counts and durations kept on each order, migration
    0008) gives every count and sum and the durations that pin the exact percentiles (see
    ``_percentiles``). ``sampling``: how the sample is taken and used (default
    :data:`SAMPLING`).
    """
    sampling = sampling or SAMPLING
    where, params = window_where(window)
    params |= {
        "late_after_s": late_after.total_seconds(),
        "late_before": as_of - late_after,
    }
    await prepare(session)
    # the mask is a literal so that the planner can use the sample's partial index
    sample = await fetch_one(
        session,
        "SELECT "
        + ", ".join(
            f"array_agg(o.{c} ORDER BY o.{c}) FILTER (WHERE o.{c} IS NOT NULL) AS {n}"
            for n, c in DURATIONS.items()
        )
        + f" FROM orders o WHERE {where} AND (uuid_hash(o.id) & {int(sampling.mask)}) = 0",
        params,
    )
    brackets = _brackets({n: sample[n] or [] for n in DURATIONS}, sampling)
    inside, bounds = _in_brackets(brackets)
    params |= bounds
    below = [
        f"count(*) FILTER (WHERE o.{DURATIONS[b.name]} < :lo{i}) AS below{i}"
        if b.lo is not None
        else f"0 AS below{i}"
        for i, b in enumerate(brackets)
    ]
    names = sorted({b.name for b in brackets})
    # the bracketed durations come with the counts, in one statement: one snapshot, so the
    # ranks read off them are those of the counts even while orders change
    fetch = "".join(f", (SELECT array_agg(v.{n}) FROM inside v) AS {n}_inside" for n in names)
    fetch_cte = (
        ", inside AS (SELECT "
        + ", ".join(f"o.{DURATIONS[n]} AS {n}" for n in names)
        + f" FROM orders o WHERE {where} AND ({inside}))"
        if names
        else ""
    )
    sale = "o.status <> 'cancelled'"
    shipped = "o.shipped_after_s IS NOT NULL"
    # returned units: those on returns that are not rejected; an order moved to `returned`
    # without any (the plain admin transition): all its shipped units
    returned = (
        "CASE WHEN o.units_returned > 0 THEN o.units_returned "
        "WHEN o.status = 'returned' THEN o.units_shipped ELSE 0 END"
    )
    orders = await fetch_one(
        session,
        f"""
        WITH agg AS (
        SELECT count(*) AS placed,
               count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
               count(o.paid_after_s) AS paid, count(o.shipped_after_s) AS shipped,
               count(o.delivered_after_s) AS delivered,
               count(*) FILTER (WHERE o.status IN {OPEN_STATUSES}
                                  AND o.created_at < :late_before) AS late_open,
               count(*) FILTER (WHERE o.shipped_after_s > :late_after_s) AS late_shipped,
               count(*) FILTER (WHERE o.live_shipments > 0) AS with_shipments,
               count(*) FILTER (WHERE o.live_shipments > 1) AS split,
               coalesce(sum(o.units_ordered) FILTER (WHERE {sale}), 0) AS units_ordered,
               coalesce(sum(o.units_ordered) FILTER (WHERE {sale} AND {shipped}), 0)
                   AS units_ordered_of_shipped,
               coalesce(sum(o.units_shipped) FILTER (WHERE {sale}), 0) AS units_shipped,
               coalesce(sum(o.units_shipped) FILTER (WHERE {sale} AND {shipped}), 0)
                   AS units_shipped_of_shipped,
               coalesce(sum({returned}), 0) AS units_returned,
               count(*) FILTER (WHERE {returned} > 0) AS orders_with_returns
               {"".join(", " + c for c in below)}
        FROM orders o
        WHERE {where}
        ){fetch_cte}
        SELECT agg.*{fetch} FROM agg
        """,
        params,
    )
    promised = await _late_by_promise(session, where, params, as_of=as_of)
    counts = {n: int(orders[n]) for n in DURATIONS}
    percentiles = await _percentiles(
        session,
        where,
        params,
        counts,
        brackets,
        [int(orders[f"below{i}"]) for i in range(len(brackets))],
        {n: orders[f"{n}_inside"] or [] for n in names},
    )

    def durations(count: int, pair: list[Any] | None) -> dict[str, Any]:
        p50, p90 = pair if pair else (None, None)
        return {"orders": count, "median_s": seconds(p50), "p90_s": seconds(p90)}

    placed, cancelled = int(orders["placed"]), int(orders["cancelled"])
    # the orders with a promise are late by it, not by their age (as in the late-orders list)
    late_open = int(orders["late_open"]) - promised["age_open"] + promised["promise_open"]
    late_shipped = (
        int(orders["late_shipped"]) - promised["age_shipped"] + promised["promise_shipped"]
    )
    units_ordered, units_shipped = int(orders["units_ordered"]), int(orders["units_shipped"])
    of_shipped_ordered = int(orders["units_ordered_of_shipped"])
    of_shipped_shipped = int(orders["units_shipped_of_shipped"])
    with_shipments, split_orders = int(orders["with_shipments"]), int(orders["split"])
    return {
        "orders_placed": placed,
        "orders_cancelled": cancelled,
        "cancellation_rate": ratio(cancelled, placed),
        "time_to_paid": durations(counts["paid"], percentiles["paid"]),
        "time_to_shipped": durations(counts["shipped"], percentiles["shipped"]),
        "time_to_delivered": durations(counts["delivered"], percentiles["delivered"]),
        "split": {
            "orders_with_shipments": with_shipments,
            "orders_split": split_orders,
            "share": ratio(split_orders, with_shipments),
        },
        "fill": {
            "units_ordered": units_ordered,
            "units_shipped": units_shipped,
            "rate": ratio(units_shipped, units_ordered),
            "units_ordered_of_shipped_orders": of_shipped_ordered,
            "units_shipped_of_shipped_orders": of_shipped_shipped,
            "rate_of_shipped_orders": ratio(of_shipped_shipped, of_shipped_ordered),
        },
        "returns": {
            "orders_with_returns": int(orders["orders_with_returns"]),
            "units_returned": int(orders["units_returned"]),
            "rate": ratio(int(orders["units_returned"]), units_shipped),
        },
        "late": {
            "after_hours": late_after.total_seconds() / 3600,
            "open": late_open,
            "shipped_late": late_shipped,
            "total": late_open + late_shipped,
            "rate": ratio(late_open + late_shipped, placed - cancelled),
        },
    }


async def late_orders(
    session: AsyncSession, *, window: Window, late_after: timedelta, as_of: datetime, limit: int
) -> list[dict[str, Any]]:
    """Orders of the window not shipped yet that are late, oldest first: by their promise
    when they have one (a shipment not shipped yet whose ``ship_by`` passed before
    ``as_of``; issue 18), else when placed more than ``late_after`` before ``as_of``."""
    where, params = window_where(window)
    sql = f"""
        SELECT o.id, o.number, o.status, o.channel, o.currency, o.total_amount AS total,
               o.ship_country AS country, o.created_at, o.paid_at,
               round(CAST(extract(epoch FROM CAST(:as_of AS timestamptz) - o.created_at)
                          / 3600 AS numeric), 2) AS age_hours,
               p.ship_by,
               CASE WHEN p.ship_by IS NULL THEN 'age' ELSE 'promise' END AS late_by
        FROM orders o
        LEFT JOIN LATERAL (  -- the earliest promise of its shipments not shipped yet (0019)
            SELECT min(s.ship_by) AS ship_by FROM shipments s
            WHERE s.order_id = o.id AND s.status IN ('pending', 'picked', 'packed')
        ) p ON true
        WHERE {where} AND o.status IN {OPEN_STATUSES}
          AND (p.ship_by < :as_of OR (p.ship_by IS NULL AND o.created_at < :late_before))
        ORDER BY o.created_at, o.id
        LIMIT :limit
    """
    rows = await fetch_rows(
        session,
        sql,
        params | {"as_of": as_of, "late_before": as_of - late_after, "limit": limit},
    )
    for row in rows:
        row["age_hours"] = float(row["age_hours"])
    return rows
