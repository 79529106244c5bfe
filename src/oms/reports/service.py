"""Reports computed in SQL over the order history: one aggregate query per figure set.

Definitions (the API documentation repeats them):

* **Window**: orders *placed* (``orders.created_at``) in ``[start, end)``, optionally of one
  channel and/or one currency. Every report looks at the orders of its window, so a figure
  always belongs to the day the order was placed (cohort view), whenever it later shipped.
* **Sale**: an order of the window that is not ``cancelled``. Returned orders stay sales
  (revenue is gross of returns; the return figures show what came back).
* **Revenue**: ``sum(orders.total_amount)`` of sales (tax and shipping included), in minor
  units, **per currency**: amounts of different currencies are never added up.
* **Product revenue**: ``sum(order_lines.total_amount)`` of the sales' lines (tax included,
  shipping excluded), per currency.

Every query is plain SQL with bound parameters; the few pieces spliced into the text (sort
columns, the optional channel/currency predicates) come from fixed whitelists, never from input.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

OPEN_STATUSES = "('placed', 'paid', 'picked', 'packed')"
"""Statuses before shipping: an order in one of them has not shipped yet."""


def _returned_units(where: str) -> str:
    """The one place that says which units came back, as ``(order_id, sku, quantity, reason)``
    for the orders matching ``where`` (a window predicate on alias ``o``).

    * Lines of returns (RMAs) that were not rejected (requested, approved, received, closed),
      with the line's reason code.
    * Orders moved to ``returned`` without any such return (the plain admin transition): all
      their shipped units, reason ``unspecified``.
    """
    return f"""
        SELECT r.order_id, rl.sku, rl.quantity, rl.reason_code AS reason
        FROM orders o
        JOIN returns r ON r.order_id = o.id AND r.status <> 'rejected'
        JOIN return_lines rl ON rl.return_id = r.id
        WHERE {where}
        UNION ALL
        SELECT a.order_id, a.sku, a.quantity, 'unspecified' AS reason
        FROM orders o
        JOIN allocations a ON a.order_id = o.id AND a.status = 'consumed'
        WHERE {where} AND o.status = 'returned' AND NOT EXISTS (
            SELECT 1 FROM returns r WHERE r.order_id = o.id AND r.status <> 'rejected')
    """


Sort = Literal["revenue", "units", "orders"]


@dataclass(frozen=True, slots=True)
class Window:
    """Which orders a report looks at: placed in ``[start, end)``, optionally narrowed."""

    start: datetime
    end: datetime
    channel: str | None = None
    currency: str | None = None


def _where(
    window: Window, alias: str = "o", placed: str = "created_at"
) -> tuple[str, dict[str, Any]]:
    """The window as a SQL predicate on ``alias`` with its bound parameters; ``placed`` names
    the placement-time column (``created_at`` of orders, ``placed_at`` of the order lines and
    allocations, which carry their order's placement time, channel and currency)."""
    parts = [f"{alias}.{placed} >= :start", f"{alias}.{placed} < :end"]
    params: dict[str, Any] = {"start": window.start, "end": window.end}
    if window.channel is not None:
        parts.append(f"{alias}.channel = :channel")
        params["channel"] = window.channel
    if window.currency is not None:
        parts.append(f"{alias}.currency = :currency")
        params["currency"] = window.currency
    return " AND ".join(parts), params


async def _prepare(session: AsyncSession) -> None:
    """Settings for this transaction only (``SET LOCAL``): room to hash and sort in memory; no
    JIT (compiling costs more than it saves here); plans made for the actual dates, not a
    generic plan; and random reads priced as on SSD or cache (1.1, not the spinning-disk 4.0)
    so that short windows use the per-order indexes rather than scanning whole tables."""
    await session.execute(
        text(
            "SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true), "
            "set_config('plan_cache_mode', 'force_custom_plan', true), "
            "set_config('random_page_cost', '1.1', true)"
        )
    )


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    await _prepare(session)
    result = await session.execute(text(sql), params)
    return [dict(row) for row in result.mappings().all()]


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


_TOP_SORT = {"revenue": "revenue DESC", "units": "units DESC", "orders": "orders DESC"}


def _top_per_currency(aggregate: str, order: str) -> str:
    """Rank the rows of ``aggregate`` (one per currency and key) within each currency and keep
    the first ``:limit`` of each: a bounded top-N sort per currency, not a sort of all rows."""
    return f"""
        WITH agg AS MATERIALIZED ({aggregate})
        SELECT t.*, row_number() OVER (PARTITION BY t.currency ORDER BY {order}) AS rank
        FROM (SELECT DISTINCT currency FROM agg) c
        CROSS JOIN LATERAL (
            SELECT * FROM agg a WHERE a.currency = c.currency ORDER BY {order} LIMIT :limit
        ) t
    """


async def top_products(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort = "revenue"
) -> list[dict[str, Any]]:
    """Best-selling SKUs per currency: units, lines and product revenue of the sales."""
    where, params = _where(window)
    line_where, _ = _where(window, "l", "placed_at")
    order = _TOP_SORT["units" if sort == "units" else "revenue"] + ", sku"
    # the lines carry their order's placement time, channel and currency: one index range of
    # lines, less those of the (few) cancelled orders, with no join to the window's orders
    ranked = _top_per_currency(
        f"""
        SELECT l.currency, l.sku, CAST(sum(l.quantity) AS bigint) AS units,
               count(*) AS orders, CAST(sum(l.total_amount) AS bigint) AS revenue
        FROM order_lines l
        WHERE {line_where} AND NOT EXISTS (
            SELECT 1 FROM orders o
            WHERE o.id = l.order_id AND {where} AND o.status = 'cancelled')
        GROUP BY l.currency, l.sku
        """,
        order,
    )
    # the name is looked up for the rows shown only (any line's name for the SKU)
    sql = f"""
        SELECT r.currency, r.rank, r.sku, n.name, r.units, r.orders, r.revenue
        FROM ({ranked}) r
        LEFT JOIN LATERAL (
            SELECT nl.name FROM order_lines nl
            WHERE nl.sku = r.sku AND nl.name IS NOT NULL LIMIT 1
        ) n ON true
        ORDER BY r.currency, r.rank
    """
    return await _rows(session, sql, params | {"limit": limit})


SEED_FACTOR = 2
"""Top customers: the customers with the largest placed-order totals taken as the first list."""
MAX_CANDIDATES = 2000
"""Top customers: above this many customers to look up one by one, aggregate the window."""
MAX_LOOKUPS = 100_000
"""Top customers: above this many placed orders of those customers, aggregate the window."""
MAX_PRUNED_LIMIT = 100
"""Top customers: longer lists aggregate the window (their first list would cost as much)."""


def _customer_sales(key: str, window_where: str) -> str:
    """The window's sales (``orders``, ``revenue``) of one row ``key`` of
    ``customer_order_totals``, read from the per-customer (or per-email) order index."""
    sales = f"{window_where} AND o.currency = {key}.currency AND o.status <> 'cancelled'"
    return f"""
        SELECT count(*) AS orders, CAST(coalesce(sum(x.total_amount), 0) AS bigint) AS revenue
        FROM (
            SELECT o.total_amount FROM orders o
            WHERE NOT {key}.guest AND o.customer_id = {key}.customer_key AND {sales}
            UNION ALL
            SELECT o.total_amount FROM orders o
            WHERE {key}.guest AND o.customer_id IS NULL AND o.customer_email = {key}.customer_key
              AND {sales}
        ) x
    """


async def _customer_bounds(
    session: AsyncSession,
    *,
    window: Window,
    limit: int,
    figure: str,
    where: str,
    params: dict[str, Any],
) -> dict[str, int | None]:
    """Per currency (the window's, or every currency of the totals): the bound, i.e. the
    ``limit``-th largest window figure (revenue or orders) among the ``SEED_FACTOR × limit``
    customers with the largest placed-order totals; ``None`` where it is of no use: 0 or
    missing (fewer customers with sales), or reached by the totals of more than
    ``MAX_CANDIDATES`` customers or of more than ``MAX_LOOKUPS`` orders."""
    column = "amount" if figure == "revenue" else "orders"
    currencies = (
        "SELECT CAST(:currency AS varchar)"
        if window.currency is not None
        else """  -- the distinct currencies of the totals, one index probe each
            SELECT min(currency) FROM customer_order_totals
            UNION ALL
            SELECT (SELECT min(t.currency) FROM customer_order_totals t
                    WHERE t.currency > c.currency)
            FROM currencies c WHERE c.currency IS NOT NULL"""
    )
    sql = f"""
        WITH RECURSIVE currencies(currency) AS ({currencies})
        SELECT c.currency, b.bound, n.candidates, n.orders
        FROM currencies c
        LEFT JOIN LATERAL (
            SELECT w.{figure} AS bound
            FROM (SELECT * FROM customer_order_totals k
                  WHERE k.currency = c.currency ORDER BY k.{column} DESC LIMIT :seed) k
            CROSS JOIN LATERAL ({_customer_sales("k", where)}) w
            ORDER BY w.{figure} DESC OFFSET :limit - 1 LIMIT 1
        ) b ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS candidates, coalesce(sum(t.orders), 0) AS orders
            FROM (SELECT t.orders FROM customer_order_totals t
                  WHERE t.currency = c.currency AND t.{column} >= b.bound
                  LIMIT :max_candidates + 1) t
        ) n ON true
        WHERE c.currency IS NOT NULL
    """
    rows = await _rows(
        session,
        sql,
        params | {"limit": limit, "seed": SEED_FACTOR * limit, "max_candidates": MAX_CANDIDATES},
    )
    return {
        r["currency"]: r["bound"]
        if r["bound"] and r["candidates"] <= MAX_CANDIDATES and r["orders"] <= MAX_LOOKUPS
        else None
        for r in rows
    }


async def _top_customers_of(
    session: AsyncSession,
    *,
    window: Window,
    limit: int,
    figure: str,
    bounded: dict[str, int],
    aggregated: list[str] | None,
) -> list[dict[str, Any]]:
    """The top customers of the ``bounded`` currencies (only the customers whose placed-order
    totals reach the currency's bound) and of the ``aggregated`` ones (every customer of the
    window; ``None``: of every currency)."""
    where, params = _where(window)
    latest_where, _ = _where(window, "lo")
    column = "amount" if figure == "revenue" else "orders"
    parts = []
    if bounded:
        parts.append(
            f"""
            SELECT k.currency, CASE WHEN NOT k.guest THEN k.customer_key END AS customer_id,
                   CASE WHEN k.guest THEN k.customer_key END AS guest_email, w.orders, w.revenue
            FROM unnest(CAST(:bound_currencies AS text[]), CAST(:bounds AS bigint[]))
                 AS b(currency, bound)
            JOIN customer_order_totals k ON k.currency = b.currency AND k.{column} >= b.bound
            CROSS JOIN LATERAL ({_customer_sales("k", where)}) w
            WHERE w.orders > 0
            """
        )
        params |= {"bound_currencies": list(bounded), "bounds": list(bounded.values())}
    if aggregated is None or aggregated:
        only = "" if aggregated is None else "AND o.currency = ANY(CAST(:aggregated AS text[]))"
        parts.append(
            f"""
            SELECT o.currency, o.customer_id,
                   CASE WHEN o.customer_id IS NULL THEN o.customer_email END AS guest_email,
                   count(*) AS orders, CAST(sum(o.total_amount) AS bigint) AS revenue
            FROM orders o
            WHERE {where} AND o.status <> 'cancelled' {only}
            GROUP BY o.currency, o.customer_id,
                     CASE WHEN o.customer_id IS NULL THEN o.customer_email END
            """
        )
        params["aggregated"] = aggregated
    if not parts:
        return []
    ranked = _top_per_currency(
        " UNION ALL ".join(parts), f"{_TOP_SORT[figure]}, customer_id, guest_email"
    )
    # For the rows shown only (not for each of the window's customers): the first and last sale
    # of the window, from the per-customer (or per-email, for guests) index; and a known
    # customer's email, the one on their latest sale of the window.
    sales = f"{latest_where} AND lo.currency = r.currency AND lo.status <> 'cancelled'"
    sql = f"""
        SELECT r.currency, r.rank, r.customer_id,
               coalesce(r.guest_email, e.customer_email) AS customer_email,
               r.orders, r.revenue,
               coalesce(k.first_order_at, g.first_order_at) AS first_order_at,
               coalesce(k.last_order_at, g.last_order_at) AS last_order_at
        FROM ({ranked}) r
        LEFT JOIN LATERAL (
            SELECT min(lo.created_at) AS first_order_at, max(lo.created_at) AS last_order_at
            FROM orders lo
            WHERE r.customer_id IS NOT NULL AND lo.customer_id = r.customer_id AND {sales}
        ) k ON true
        LEFT JOIN LATERAL (
            SELECT min(lo.created_at) AS first_order_at, max(lo.created_at) AS last_order_at
            FROM orders lo
            WHERE r.customer_id IS NULL AND lo.customer_id IS NULL
              AND lo.customer_email = r.guest_email AND {sales}
        ) g ON true
        LEFT JOIN LATERAL (
            SELECT lo.customer_email FROM orders lo
            WHERE r.customer_id IS NOT NULL AND lo.customer_id = r.customer_id AND {sales}
            ORDER BY lo.created_at DESC LIMIT 1
        ) e ON true
        ORDER BY r.currency, r.rank
    """
    return await _rows(session, sql, params | {"limit": limit})


async def top_customers(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort = "revenue"
) -> list[dict[str, Any]]:
    """Best customers per currency (by customer id; guests by email).

    Aggregating the window's orders per customer hashes one group per customer of the window
    (~320,000 for a year of a 1M-order history). Instead, per currency: the window's sales of
    the ``2 × limit`` customers with the largest placed-order totals (``customer_order_totals``,
    never lowered, so a customer's total bounds its sales in any window) give a bound, the
    ``limit``-th largest of their figures; the true list's ``limit``-th figure is at least that
    bound, so only the customers whose totals reach it can be on the list, and only theirs are
    looked up. Exact, not an estimate. A currency falls back to aggregating the window when the
    bound is 0 or missing, or the totals of more than ``MAX_CANDIDATES`` customers (or of more
    than ``MAX_LOOKUPS`` orders) reach it (short windows, where the aggregate is cheap anyway);
    and when the list found does not reach the bound (a sale of a first-list customer was
    cancelled between the two statements)."""
    figure = "orders" if sort == "orders" else "revenue"
    if limit > MAX_PRUNED_LIMIT:
        return await _top_customers_of(
            session, window=window, limit=limit, figure=figure, bounded={}, aggregated=None
        )
    where, params = _where(window)
    bounds = await _customer_bounds(
        session, window=window, limit=limit, figure=figure, where=where, params=params
    )
    bounded = {currency: bound for currency, bound in bounds.items() if bound is not None}
    aggregated = [currency for currency, bound in bounds.items() if bound is None]
    rows = await _top_customers_of(
        session, window=window, limit=limit, figure=figure, bounded=bounded, aggregated=aggregated
    )
    # exact only if each bounded list is full and its last figure reaches the bound
    last = {r["currency"]: r for r in rows if r["rank"] == limit}
    missed = [c for c, bound in bounded.items() if c not in last or last[c][figure] < bound]
    if not missed:
        return rows
    again = await _top_customers_of(
        session, window=window, limit=limit, figure=figure, bounded={}, aggregated=missed
    )
    return sorted(
        [r for r in rows if r["currency"] not in missed] + again,
        key=lambda r: (r["currency"], r["rank"]),
    )


async def _top_by(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort, column: str
) -> list[dict[str, Any]]:
    where, params = _where(window)
    order = _TOP_SORT["orders" if sort == "orders" else "revenue"]
    sql = f"""
        SELECT currency, rank, key, orders, revenue FROM (
            SELECT t.*, row_number() OVER (PARTITION BY currency ORDER BY {order}, key) AS rank
            FROM (
                SELECT o.currency, o.{column} AS key, count(*) AS orders,
                       CAST(sum(o.total_amount) AS bigint) AS revenue
                FROM orders o
                WHERE {where} AND o.status <> 'cancelled'
                GROUP BY o.currency, o.{column}
            ) t
        ) r
        WHERE rank <= :limit
        ORDER BY currency, rank
    """
    return await _rows(session, sql, params | {"limit": limit})


async def top_countries(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort = "revenue"
) -> list[dict[str, Any]]:
    """Destination countries per currency: sales and revenue."""
    rows = await _top_by(session, window=window, limit=limit, sort=sort, column="ship_country")
    return [{"country": r.pop("key"), **r} for r in rows]


async def top_channels(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort = "revenue"
) -> list[dict[str, Any]]:
    """Sales channels per currency: sales and revenue."""
    rows = await _top_by(session, window=window, limit=limit, sort=sort, column="channel")
    return [{"channel": r.pop("key"), **r} for r in rows]


async def daily(session: AsyncSession, *, window: Window, tz: str) -> list[dict[str, Any]]:
    """Sales, cancellations and revenue per local day in ``tz``, per currency.

    Every day from the window's first to its last local day is listed for each currency that
    has orders in the window (zero rows included); days cut by the window only count the part
    inside it.
    """
    where, params = _where(window)
    sql = f"""
        WITH agg AS (
            SELECT o.currency, CAST(o.created_at AT TIME ZONE :tz AS date) AS day,
                   count(*) FILTER (WHERE o.status <> 'cancelled') AS orders,
                   count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
                   CAST(coalesce(sum(o.total_amount) FILTER (WHERE o.status <> 'cancelled'), 0)
                        AS bigint) AS revenue
            FROM orders o
            WHERE {where}
            GROUP BY 1, 2
        ), days AS (
            SELECT CAST(d AS date) AS day
            FROM generate_series(
                CAST(CAST(:start AS timestamptz) AT TIME ZONE :tz AS date),
                CAST((CAST(:end AS timestamptz) - interval '1 microsecond') AT TIME ZONE :tz
                     AS date),
                interval '1 day') AS d
        ), currencies AS (
            SELECT DISTINCT currency FROM agg
        )
        SELECT c.currency, d.day, coalesce(a.orders, 0) AS orders,
               coalesce(a.cancelled, 0) AS cancelled, coalesce(a.revenue, 0) AS revenue
        FROM currencies c
        CROSS JOIN days d
        LEFT JOIN agg a ON a.currency = c.currency AND a.day = d.day
        ORDER BY c.currency, d.day
    """
    return await _rows(session, sql, params | {"tz": tz})


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
class _Bracket:
    """A value range that should hold one percentile of one duration (from the sample)."""

    name: str
    fraction: float
    lo: float | None  # None: unbounded
    hi: float | None


def _brackets(samples: dict[str, list[float]]) -> list[_Bracket]:
    """For each percentile of each duration with a large enough sample: the sample's values
    ``SIGMAS`` standard deviations of rank on either side of it."""
    out: list[_Bracket] = []
    for name, sample in samples.items():
        m = len(sample)
        if m < MIN_SAMPLE:
            continue
        for fraction in PERCENTILES:
            at = fraction * (m - 1)
            margin = math.ceil(SIGMAS * math.sqrt(m * fraction * (1 - fraction))) + 1
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
        row = await _one(session, f"SELECT {cols} FROM orders o WHERE {where}", params)
        results |= {n: row[n] for n in exact}
    return results


async def _one(session: AsyncSession, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return dict((await session.execute(text(sql), params)).mappings().one())


async def fulfilment(
    session: AsyncSession, *, window: Window, late_after: timedelta, as_of: datetime
) -> dict[str, Any]:
    """Fulfilment KPIs of the window's orders (see the API description for each figure).

    The percentile sample first (a small partial index); then one statement over the window's
    orders in their fulfilment index (the counts and durations kept on each order, migration
    0008) gives every count and sum and the durations that pin the exact percentiles (see
    ``_percentiles``).
    """
    where, params = _where(window)
    params |= {
        "late_after_s": late_after.total_seconds(),
        "late_before": as_of - late_after,
    }
    await _prepare(session)
    # the mask is a literal so that the planner can use the sample's partial index
    sample = await _one(
        session,
        "SELECT "
        + ", ".join(
            f"array_agg(o.{c} ORDER BY o.{c}) FILTER (WHERE o.{c} IS NOT NULL) AS {n}"
            for n, c in DURATIONS.items()
        )
        + f" FROM orders o WHERE {where} AND (uuid_hash(o.id) & {SAMPLE_MASK}) = 0",
        params,
    )
    brackets = _brackets({n: sample[n] or [] for n in DURATIONS})
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
    orders = await _one(
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
        return {"orders": count, "median_s": _seconds(p50), "p90_s": _seconds(p90)}

    placed, cancelled = int(orders["placed"]), int(orders["cancelled"])
    late_open, late_shipped = int(orders["late_open"]), int(orders["late_shipped"])
    units_ordered, units_shipped = int(orders["units_ordered"]), int(orders["units_shipped"])
    of_shipped_ordered = int(orders["units_ordered_of_shipped"])
    of_shipped_shipped = int(orders["units_shipped_of_shipped"])
    with_shipments, split_orders = int(orders["with_shipments"]), int(orders["split"])
    return {
        "orders_placed": placed,
        "orders_cancelled": cancelled,
        "cancellation_rate": _ratio(cancelled, placed),
        "time_to_paid": durations(counts["paid"], percentiles["paid"]),
        "time_to_shipped": durations(counts["shipped"], percentiles["shipped"]),
        "time_to_delivered": durations(counts["delivered"], percentiles["delivered"]),
        "split": {
            "orders_with_shipments": with_shipments,
            "orders_split": split_orders,
            "share": _ratio(split_orders, with_shipments),
        },
        "fill": {
            "units_ordered": units_ordered,
            "units_shipped": units_shipped,
            "rate": _ratio(units_shipped, units_ordered),
            "units_ordered_of_shipped_orders": of_shipped_ordered,
            "units_shipped_of_shipped_orders": of_shipped_shipped,
            "rate_of_shipped_orders": _ratio(of_shipped_shipped, of_shipped_ordered),
        },
        "returns": {
            "orders_with_returns": int(orders["orders_with_returns"]),
            "units_returned": int(orders["units_returned"]),
            "rate": _ratio(int(orders["units_returned"]), units_shipped),
        },
        "late": {
            "after_hours": late_after.total_seconds() / 3600,
            "open": late_open,
            "shipped_late": late_shipped,
            "total": late_open + late_shipped,
            "rate": _ratio(late_open + late_shipped, placed - cancelled),
        },
    }


async def returns_by_product(
    session: AsyncSession, *, window: Window, limit: int
) -> list[dict[str, Any]]:
    """SKUs with the most returned units: shipped and returned units and the return rate.

    The units shipped come from the consumed allocations of those SKUs, which carry their
    order's placement time, channel and currency (one index range per SKU, no join)."""
    where, params = _where(window)
    shipped_where, _ = _where(window, "a", "placed_at")
    sql = f"""
        WITH returned AS (
            SELECT ru.sku, CAST(sum(ru.quantity) AS bigint) AS units_returned,
                   count(DISTINCT ru.order_id) AS orders_with_returns
            FROM ({_returned_units(where)}) ru
            GROUP BY ru.sku
            ORDER BY units_returned DESC, ru.sku
            LIMIT :limit
        ),
        shipped AS (
            SELECT a.sku, CAST(sum(a.quantity) AS bigint) AS units_shipped
            FROM allocations a
            WHERE {shipped_where} AND a.status = 'consumed'
              AND a.sku IN (SELECT sku FROM returned)
            GROUP BY a.sku
        )
        SELECT r.sku, coalesce(s.units_shipped, 0) AS units_shipped, r.units_returned,
               r.orders_with_returns
        FROM returned r
        LEFT JOIN shipped s ON s.sku = r.sku
        ORDER BY r.units_returned DESC, r.sku
    """
    rows = await _rows(session, sql, params | {"limit": limit})
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["return_rate"] = _ratio(row["units_returned"], row["units_shipped"])
    return rows


async def returns_by_reason(session: AsyncSession, *, window: Window) -> list[dict[str, Any]]:
    """Returned units per reason, with each reason's share of all returned units."""
    where, params = _where(window)
    sql = f"""
        SELECT ru.reason, CAST(sum(ru.quantity) AS bigint) AS units_returned,
               count(DISTINCT ru.order_id) AS orders_with_returns
        FROM ({_returned_units(where)}) ru
        GROUP BY ru.reason
        ORDER BY units_returned DESC, ru.reason
    """
    rows = await _rows(session, sql, params)
    total = sum(int(r["units_returned"]) for r in rows)
    for row in rows:
        row["share"] = _ratio(int(row["units_returned"]), total)
    return rows


async def late_orders(
    session: AsyncSession, *, window: Window, late_after: timedelta, as_of: datetime, limit: int
) -> list[dict[str, Any]]:
    """Orders of the window still not shipped ``late_after`` after placement, oldest first."""
    where, params = _where(window)
    sql = f"""
        SELECT o.id, o.number, o.status, o.channel, o.currency, o.total_amount AS total,
               o.ship_country AS country, o.created_at, o.paid_at,
               round(CAST(extract(epoch FROM CAST(:as_of AS timestamptz) - o.created_at)
                          / 3600 AS numeric), 2) AS age_hours
        FROM orders o
        WHERE {where} AND o.status IN {OPEN_STATUSES} AND o.created_at < :late_before
        ORDER BY o.created_at, o.id
        LIMIT :limit
    """
    rows = await _rows(
        session,
        sql,
        params | {"as_of": as_of, "late_before": as_of - late_after, "limit": limit},
    )
    for row in rows:
        row["age_hours"] = float(row["age_hours"])
    return rows
