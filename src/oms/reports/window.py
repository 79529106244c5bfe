"""What every report shares: the window of orders it looks at (:class:`Window`), that window as
a SQL predicate, the per-transaction planner settings, and the SQL pieces more than one report
uses (the returned units, a bounded top-N per currency).

Every query is plain SQL with bound parameters; the few pieces spliced into the text (sort
columns, the optional channel/currency predicates) come from fixed whitelists, never from input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

OPEN_STATUSES = "('placed', 'paid', 'picked', 'packed')"
"""Statuses before shipping: an order in one of them has not shipped yet."""

Sort = Literal["revenue", "units", "orders"]

TOP_SORT = {"revenue": "revenue DESC", "units": "units DESC", "orders": "orders DESC"}
"""The ORDER BY of a top list, per sort (a whitelist: the only text spliced in)."""

MAX_SUM = 2**63 - 1
"""Sums of money are reported up to the largest bigint: beyond it (absurd, but a few orders at
the highest prices reach it) a figure stays there instead of failing the report."""


@dataclass(frozen=True, slots=True)
class Window:
    """Which orders a report looks at: placed in ``[start, end)``, optionally narrowed."""

    start: datetime
    end: datetime
    channel: str | None = None
    currency: str | None = None


def window_where(
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


async def prepare(session: AsyncSession) -> None:
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


async def fetch_rows(
    session: AsyncSession, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run one report statement (after :func:`prepare`); its rows as dicts."""
    await prepare(session)
    result = await session.execute(text(sql), params)
    return [dict(row) for row in result.mappings().all()]


async def fetch_one(session: AsyncSession, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one statement that returns exactly one row (no :func:`prepare`); the row as a dict."""
    return dict((await session.execute(text(sql), params)).mappings().one())


def ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def returned_units(where: str) -> str:
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


def top_per_currency(aggregate: str, order: str) -> str:
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
