"""Returns reports: the SKUs with the most returned units (with their return rate) and the
returned units per reason. Which units count as returned: ``returned_units`` of
:mod:`oms.reports.window`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.reports.window import Window, fetch_rows, ratio, returned_units, window_where


async def returns_by_product(
    session: AsyncSession, *, window: Window, limit: int
) -> list[dict[str, Any]]:
    """SKUs with the most returned units: shipped and returned units and the return rate.

    The units shipped come from the consumed allocations of those SKUs, which carry their
    order's placement time, channel and currency (one index range per SKU, no join)."""
    where, params = window_where(window)
    shipped_where, _ = window_where(window, "a", "placed_at")
    sql = f"""
        WITH returned AS (
            SELECT ru.sku, CAST(sum(ru.quantity) AS bigint) AS units_returned,
                   count(DISTINCT ru.order_id) AS orders_with_returns
            FROM ({returned_units(where)}) ru
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
    rows = await fetch_rows(session, sql, params | {"limit": limit})
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["return_rate"] = ratio(row["units_returned"], row["units_shipped"])
    return rows


async def returns_by_reason(session: AsyncSession, *, window: Window) -> list[dict[str, Any]]:
    """Returned units per reason, with each reason's share of all returned units."""
    where, params = window_where(window)
    sql = f"""
        SELECT ru.reason, CAST(sum(ru.quantity) AS bigint) AS units_returned,
               count(DISTINCT ru.order_id) AS orders_with_returns
        FROM ({returned_units(where)}) ru
        GROUP BY ru.reason
        ORDER BY units_returned DESC, ru.reason
    """
    rows = await fetch_rows(session, sql, params)
    total = sum(int(r["units_returned"]) for r in rows)
    for row in rows:
        row["share"] = ratio(int(row["units_returned"]), total)
    return rows
