"""Sales reports: the best-selling products, destination countries and channels per currency,
and the sales per local day (see ``oms.reports.service`` for what a sale and revenue are)."""

from __future__ import annotations

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


async def top_products(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort = "revenue"
) -> list[dict[str, Any]]:
    """Best-selling SKUs per currency: units, lines and product revenue of the sales."""
    where, params = window_where(window)
    line_where, _ = window_where(window, "l", "placed_at")
    order = TOP_SORT["units" if sort == "units" else "revenue"] + ", sku"
    # the lines carry their order's placement time, channel and currency: one index range of
    # lines, less those of the (few) cancelled orders, with no join to the window's orders
    ranked = top_per_currency(
        f"""
        SELECT l.currency, l.sku, CAST(sum(l.quantity) AS bigint) AS units,
               count(*) AS orders,
               CAST(least(sum(l.total_amount), {MAX_SUM}) AS bigint) AS revenue
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
    return await fetch_rows(session, sql, params | {"limit": limit})


async def _top_by(
    session: AsyncSession, *, window: Window, limit: int, sort: Sort, column: str
) -> list[dict[str, Any]]:
    where, params = window_where(window)
    order = TOP_SORT["orders" if sort == "orders" else "revenue"]
    sql = f"""
        SELECT currency, rank, key, orders, revenue FROM (
            SELECT t.*, row_number() OVER (PARTITION BY currency ORDER BY {order}, key) AS rank
            FROM (
                SELECT o.currency, o.{column} AS key, count(*) AS orders,
                       CAST(least(sum(o.total_amount), {MAX_SUM}) AS bigint) AS revenue
                FROM orders o
                WHERE {where} AND o.status <> 'cancelled'
                GROUP BY o.currency, o.{column}
            ) t
        ) r
        WHERE rank <= :limit
        ORDER BY currency, rank
    """
    return await fetch_rows(session, sql, params | {"limit": limit})


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
    where, params = window_where(window)
    sql = f"""
        WITH agg AS (
            SELECT o.currency, CAST(o.created_at AT TIME ZONE :tz AS date) AS day,
                   count(*) FILTER (WHERE o.status <> 'cancelled') AS orders,
                   count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled,
                   CAST(least(coalesce(
                        sum(o.total_amount) FILTER (WHERE o.status <> 'cancelled'), 0
                   ), {MAX_SUM}) AS bigint) AS revenue
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
    return await fetch_rows(session, sql, params | {"tz": tz})
