"""Top customers per currency (by customer id; guests by email; orders of guests known only by
phone, and anonymous ones, are not attributed to a customer), exact, found the cheap way
where it can be: only the customers whose placed-order totals (``customer_order_totals``) can
reach the list are looked up; where too many can, the window's orders are aggregated.

:func:`top_customers` is the report; its two steps are :func:`customer_bounds` (the bound per
currency, from the first list) and :func:`top_customers_within` (the list, given the bounds).
:class:`Pruning` holds the thresholds between looking up and aggregating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.reports.window import (
    MAX_SUM,
    TOP_SORT,
    Sort,
    Window,
    fetch_rows,
    top_per_currency,
    window_where,
)

SEED_FACTOR = 2
"""The customers with the largest placed-order totals taken as the first list: this many × the
list's length."""
MAX_CANDIDATES = 2000
"""Above this many customers to look up one by one, aggregate the window."""
MAX_LOOKUPS = 100_000
"""Above this many placed orders of those customers, aggregate the window."""
MAX_PRUNED_LIMIT = 100
"""Longer lists aggregate the window (their first list would cost as much)."""


@dataclass(frozen=True, slots=True)
class Pruning:
    """When top customers look customers up one by one and when they aggregate the window.
    Production uses :data:`PRUNING` (the constants above); a test or a benchmark passes other
    values to take one way on purpose (``max_candidates=0``: always aggregate)."""

    seed_factor: int = SEED_FACTOR
    max_candidates: int = MAX_CANDIDATES
    max_lookups: int = MAX_LOOKUPS
    max_pruned_limit: int = MAX_PRUNED_LIMIT


PRUNING = Pruning()
"""The thresholds the report runs with unless given others."""


def _figure(sort: Sort) -> str:
    return "orders" if sort == "orders" else "revenue"


def _customer_sales(key: str, where: str) -> str:
    """The window's sales (``orders``, ``revenue``) of one row ``key`` of
    ``customer_order_totals``, read from the per-customer (or per-email) order index (``where``:
    the window's predicate on alias ``o``)."""
    sales = f"{where} AND o.currency = {key}.currency AND o.status <> 'cancelled'"
    return f"""
        SELECT count(*) AS orders,
               CAST(least(coalesce(sum(x.total_amount), 0), {MAX_SUM}) AS bigint) AS revenue
        FROM (
            SELECT o.total_amount FROM orders o
            WHERE NOT {key}.guest AND o.customer_id = {key}.customer_key AND {sales}
            UNION ALL
            SELECT o.total_amount FROM orders o
            WHERE {key}.guest AND o.customer_id IS NULL AND o.customer_email = {key}.customer_key
              AND {sales}
        ) x
    """


async def top_customers(
    session: AsyncSession,
    *,
    window: Window,
    limit: int,
    sort: Sort = "revenue",
    pruning: Pruning | None = None,
) -> list[dict[str, Any]]:
    """Best customers per currency (by customer id; guests by email).

    Aggregating the window's orders per customer hashes one group per customer of the window
    (~320,000 for a year of a 1M-order history). Instead, per currency: the window's sales of
    the ``2 × limit`` customers with the largest placed-order totals (``customer_order_totals``,
    never lowered, so a customer's total bounds its sales in any window) give a bound, the
    ``limit``-th largest of their figures; the true list's ``limit``-th figure is at least that
    bound, so only the customers whose totals reach it can be on the list, and only theirs are
    looked up. Exact, not an estimate. A currency falls back to aggregating the window when the
    bound is 0 or missing, or the totals of more than ``max_candidates`` customers (or of more
    than ``max_lookups`` orders) reach it (short windows, where the aggregate is cheap anyway);
    and when the list found does not reach the bound (a sale of a first-list customer was
    cancelled between the two statements). ``pruning``: the thresholds (default
    :data:`PRUNING`)."""
    pruning = pruning or PRUNING
    if limit > pruning.max_pruned_limit:
        return await _top_customers_of(
            session, window=window, limit=limit, figure=_figure(sort), bounded={}, aggregated=None
        )
    bounds = await customer_bounds(session, window=window, limit=limit, sort=sort, pruning=pruning)
    return await top_customers_within(session, window=window, limit=limit, sort=sort, bounds=bounds)


async def customer_bounds(
    session: AsyncSession,
    *,
    window: Window,
    limit: int,
    sort: Sort = "revenue",
    pruning: Pruning | None = None,
) -> dict[str, int | None]:
    """Per currency (the window's, or every currency of the totals): the bound, i.e. the
    ``limit``-th largest window figure (revenue or orders) among the ``seed_factor × limit``
    customers with the largest placed-order totals; ``None`` where it is of no use: 0 or
    missing (fewer customers with sales), or reached by the totals of more than
    ``max_candidates`` customers or of more than ``max_lookups`` orders."""
    pruning = pruning or PRUNING
    figure = _figure(sort)
    where, params = window_where(window)
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
    rows = await fetch_rows(
        session,
        sql,
        params
        | {
            "limit": limit,
            "seed": pruning.seed_factor * limit,
            "max_candidates": pruning.max_candidates,
        },
    )
    return {
        r["currency"]: r["bound"]
        if r["bound"]
        and r["candidates"] <= pruning.max_candidates
        and r["orders"] <= pruning.max_lookups
        else None
        for r in rows
    }


async def top_customers_within(
    session: AsyncSession,
    *,
    window: Window,
    limit: int,
    sort: Sort = "revenue",
    bounds: dict[str, int | None],
) -> list[dict[str, Any]]:
    """The top customers given the bounds of :func:`customer_bounds`: for a currency with a
    bound, only the customers whose totals reach it are looked up; the others (``None``)
    aggregate the window. A bounded list that comes out short of its bound (a sale of a
    first-list customer was cancelled after the bounds were read) is aggregated again."""
    figure = _figure(sort)
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
    where, params = window_where(window)
    latest_where, _ = window_where(window, "lo")
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
                   count(*) AS orders,
                   CAST(least(sum(o.total_amount), {MAX_SUM}) AS bigint) AS revenue
            FROM orders o
            WHERE {where} AND o.status <> 'cancelled' {only}
              AND (o.customer_id IS NOT NULL OR o.customer_email IS NOT NULL)
            GROUP BY o.currency, o.customer_id,
                     CASE WHEN o.customer_id IS NULL THEN o.customer_email END
            """
        )
        params["aggregated"] = aggregated
    if not parts:
        return []
    ranked = top_per_currency(
        " UNION ALL ".join(parts), f"{TOP_SORT[figure]}, customer_id, guest_email"
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
    return await fetch_rows(session, sql, params | {"limit": limit})
