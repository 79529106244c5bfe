"""Latency benchmark of the reporting endpoints (``/v1/reports/...``) on a large order history.

Usage::

    .venv/bin/python bench/reports.py [--orders 1000000] [--days 730] [--repeat 7]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1/oms_bench_reports]
        [--reuse] [--without-report-indexes] [--json bench/results/reports.json]

What it does:

* **Database.** Drops and recreates the given database (it must be a dedicated one: everything
  in it is lost), runs every migration, then generates the history with set-based SQL
  (``INSERT ... SELECT generate_series``), not the API, so a million orders take minutes.
  ``--reuse`` skips all that and measures the data already there.
* **Data.** ``--orders`` orders spread evenly over the last ``--days`` days, ending now: 1-4
  lines each (uniform; 2,000 SKUs, skewed), four currencies (EUR 60 %, USD 25 %, GBP 10 %, SEK
  5 %), four channels, 20 destination countries (skewed), ~250,000 customers (skewed: a few
  order a lot) plus guests. Each order walks the real life cycle with random delays (paid after
  ~2 h, shipped ~36 h later, delivered 1-3 days later, exponential tails); 5 % are cancelled,
  4 % of delivered orders are returned, 8 % of multi-line orders ship in two parcels, 2 % of
  lines are short one unit (backordered). Shipments, allocations (consumed / released / open),
  the order history of returned orders, and the returns tables when they exist, are filled in
  accordingly. Then ``VACUUM ANALYZE`` (what autovacuum does on a live system).
* **Timing.** Every report endpoint, through the real ASGI app (httpx ``ASGITransport``, so
  routing, auth, validation, SQL and JSON are all included) for the last 30 days and the last
  365 days: one warm-up call, then ``--repeat`` timed calls; prints p50 and max per report and
  writes everything to ``--json``. Top customers is timed twice: as served, and with its
  placed-order-totals bound off (the cost where the bound cannot help).
* ``--without-report-indexes`` drops the reporting indexes of migrations 0005 and 0007-0009
  first, to see what they buy (to get them back: regenerate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from oms.config import Settings
from oms.schema import upgrade_head

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1/oms_bench_reports"
REPORT_INDEXES = (
    "ix_orders_reporting",
    "ix_order_lines_reporting",
    "ix_orders_unshipped_or_cancelled",
    "ix_orders_fulfilment",
    "ix_orders_duration_sample",
    "ix_allocations_consumed_reporting",
    "ix_customer_order_totals_amount",
    "ix_customer_order_totals_orders",
)

# ---- data generation ----------------------------------------------------------------------

GENERATE: list[tuple[str, str]] = [
    (
        "warehouses",
        """
        INSERT INTO warehouses (id, code, name, country, priority, is_pickup_store, active)
        VALUES ('00000000-0000-0000-0000-000000000001', 'BER', 'Berlin', 'DE', 100, false, true),
               ('00000000-0000-0000-0000-000000000002', 'AMS', 'Amsterdam', 'NL', 100, false, true),
               ('00000000-0000-0000-0000-000000000003', 'MAD', 'Madrid', 'ES', 100, false, true)
        """,
    ),
    (
        "order skeletons",
        """
        CREATE TEMP TABLE bo AS
        WITH base AS (
            SELECT g,
                   gen_random_uuid() AS id,
                   CAST(:now AS timestamptz)
                     - make_interval(secs => (:n - g + random()) * :secs_per_order) AS created_at,
                   random() AS r_cur, random() AS r_chan, random() AS r_country,
                   random() AS r_cust, random() AS r_guest, random() AS r_cancel,
                   random() AS r_ret, random() AS r_split, random() AS r_reason,
                   1 + floor(random() * 4)::int AS nlines,
                   60 + 7200 * -ln(1 - random()) AS paid_s,
                   4 * 3600 + 30 * 3600 * -ln(1 - random()) AS ship_gap_s,
                   86400 + 2 * 86400 * -ln(1 - random()) AS deliv_gap_s,
                   86400 * (3 + 10 * random()) AS return_gap_s,
                   600 + 86400 * random() AS cancel_s
            FROM generate_series(1, :n) AS g
        ), timed AS (
            SELECT b.*,
                   paid_s + ship_gap_s AS ship_s,
                   paid_s + ship_gap_s + deliv_gap_s AS deliv_s,
                   extract(epoch FROM CAST(:now AS timestamptz) - created_at) AS age_s
            FROM base b
        )
        SELECT t.*,
               CASE
                 WHEN r_cancel < 0.05 AND least(cancel_s, ship_s - 1) <= age_s THEN 'cancelled'
                 WHEN r_ret < 0.04 AND deliv_s + return_gap_s <= age_s THEN 'returned'
                 WHEN deliv_s <= age_s THEN 'delivered'
                 WHEN ship_s <= age_s THEN 'shipped'
                 WHEN paid_s <= age_s THEN 'paid'
                 ELSE 'placed'
               END AS status
        FROM timed t
        """,
    ),
    (
        "order lines (temp)",
        """
        CREATE TEMP TABLE bl AS
        SELECT gen_random_uuid() AS id, o.id AS order_id, o.g, ln AS line_no, o.nlines,
               o.status, o.r_split,
               k, 1 + floor(3 * random() ^ 3)::int AS quantity,
               300 + (k * 7919) % 9700 AS unit_price,
               CASE WHEN random() < 0.02 THEN 1 ELSE 0 END AS backordered
        FROM bo o
        CROSS JOIN LATERAL generate_series(1, o.nlines) AS ln
        CROSS JOIN LATERAL (SELECT floor(2000 * random() ^ 2.5)::int + ln * 0 AS k) AS s
        """,
    ),
    (
        "orders",
        """
        INSERT INTO orders (
            id, status, version, channel, customer_id, customer_email, currency, payment_method,
            priority, ship_lines, ship_city, ship_country, subtotal_amount, tax_amount,
            shipping_fee, total_amount, created_by, created_at, updated_at, paid_at, shipped_at,
            delivered_at, cancelled_at, units_ordered, units_shipped, live_shipments,
            units_returned)
        SELECT o.id, o.status, 1, 
               CASE WHEN r_chan < 0.5 THEN 'web' WHEN r_chan < 0.75 THEN 'app'
                    WHEN r_chan < 0.9 THEN 'amazon' ELSE 'pos' END,
               CASE WHEN r_guest < 0.9 THEN 'cus_' || floor(250000 * r_cust ^ 2)::int END,
               CASE WHEN r_guest < 0.9 THEN 'c' || floor(250000 * r_cust ^ 2)::int
                    ELSE 'guest' || floor(400000 * r_cust)::int END || '@example.com',
               CASE WHEN r_cur < 0.6 THEN 'EUR' WHEN r_cur < 0.85 THEN 'USD'
                    WHEN r_cur < 0.95 THEN 'GBP' ELSE 'SEK' END,
               'card', 'standard', '["Main Street 1"]'::jsonb, 'Springfield',
               (ARRAY['DE','FR','NL','IT','ES','AT','BE','PL','SE','DK',
                      'GB','US','CH','IE','PT','CZ','FI','NO','CA','AU'])
                   [1 + floor(20 * r_country ^ 2)::int],
               l.subtotal, l.tax, 495, l.subtotal + l.tax + 495, 'bench',
               o.created_at, o.created_at,
               CASE WHEN o.paid_s <= o.age_s AND (o.status <> 'cancelled' OR o.paid_s < o.cancel_s)
                    THEN o.created_at + make_interval(secs => o.paid_s) END,
               CASE WHEN o.status IN ('shipped', 'delivered', 'returned')
                    THEN o.created_at + make_interval(secs => o.ship_s) END,
               CASE WHEN o.status IN ('delivered', 'returned')
                    THEN o.created_at + make_interval(secs => o.deliv_s) END,
               CASE WHEN o.status = 'cancelled'
                    THEN o.created_at + make_interval(secs => least(o.cancel_s, o.ship_s - 1)) END,
               -- the counts the API keeps on the order (see the shipments, allocations and
               -- returns steps)
               l.units,
               CASE WHEN o.status IN ('shipped', 'delivered', 'returned') THEN l.allocated
                    ELSE 0 END,
               CASE WHEN o.status = 'cancelled' THEN 0
                    WHEN o.nlines >= 2 AND o.r_split < 0.08 THEN 2 ELSE 1 END,
               -- the returns step returns every shipped unit of a returned order
               CASE WHEN o.status = 'returned' THEN l.allocated ELSE 0 END
        FROM bo o
        JOIN (SELECT order_id, sum(quantity * unit_price) AS subtotal,
                     sum((quantity * unit_price * 1900 + 5000) / 10000) AS tax,
                     sum(quantity) AS units, sum(quantity - backordered) AS allocated
              FROM bl GROUP BY order_id) l ON l.order_id = o.id
        ORDER BY o.g
        """,
    ),
    (
        "order_lines",
        """
        INSERT INTO order_lines (id, order_id, line_no, sku, name, quantity, unit_price,
                                 tax_rate_bps, backordered, subtotal_amount, tax_amount,
                                 total_amount, placed_at, channel, currency)
        SELECT bl.id, bl.order_id, bl.line_no, 'SKU-' || lpad(bl.k::text, 5, '0'),
               'Product ' || bl.k, bl.quantity, bl.unit_price, 1900, bl.backordered,
               bl.quantity * bl.unit_price,
               (bl.quantity * bl.unit_price * 1900 + 5000) / 10000,
               bl.quantity * bl.unit_price + (bl.quantity * bl.unit_price * 1900 + 5000) / 10000,
               o.created_at, o.channel, o.currency
        FROM bl JOIN orders o ON o.id = bl.order_id ORDER BY bl.g, bl.line_no
        """,
    ),
    (
        "shipments",
        """
        INSERT INTO shipments (id, order_id, seq, warehouse_id, warehouse_code, status, version,
                               created_at, updated_at, shipped_at, delivered_at, cancelled_at)
        SELECT gen_random_uuid(), o.id, s.seq,
               CAST('00000000-0000-0000-0000-00000000000'
                    || (1 + (o.g + s.seq) % 3)::text AS uuid),
               (ARRAY['BER', 'AMS', 'MAD'])[1 + (o.g + s.seq) % 3],
               CASE o.status WHEN 'cancelled' THEN 'cancelled' WHEN 'shipped' THEN 'shipped'
                             WHEN 'delivered' THEN 'delivered' WHEN 'returned' THEN 'delivered'
                             ELSE 'pending' END,
               1, o.created_at, o.created_at,
               CASE WHEN o.status IN ('shipped', 'delivered', 'returned')
                    THEN o.created_at + make_interval(secs => o.ship_s) END,
               CASE WHEN o.status IN ('delivered', 'returned')
                    THEN o.created_at + make_interval(secs => o.deliv_s) END,
               CASE WHEN o.status = 'cancelled'
                    THEN o.created_at + make_interval(secs => least(o.cancel_s, o.ship_s - 1)) END
        FROM bo o
        CROSS JOIN LATERAL generate_series(
            1, CASE WHEN o.nlines >= 2 AND o.r_split < 0.08 THEN 2 ELSE 1 END) AS s(seq)
        ORDER BY o.g, s.seq
        """,
    ),
    (
        "allocations",
        """
        INSERT INTO allocations (id, order_id, order_line_id, shipment_id, warehouse_id, sku,
                                 quantity, status, created_at, placed_at, channel, currency)
        SELECT gen_random_uuid(), l.order_id, l.id, sh.id, sh.warehouse_id,
               'SKU-' || lpad(l.k::text, 5, '0'), l.quantity - l.backordered,
               CASE WHEN l.status = 'cancelled' THEN 'released'
                    WHEN l.status IN ('shipped', 'delivered', 'returned') THEN 'consumed'
                    ELSE 'open' END,
               sh.created_at, o.created_at, o.channel, o.currency
        FROM bl l
        JOIN orders o ON o.id = l.order_id
        JOIN shipments sh ON sh.order_id = l.order_id
         AND sh.seq = CASE WHEN l.nlines >= 2 AND l.r_split < 0.08
                           THEN 1 + l.line_no % 2 ELSE 1 END
        WHERE l.quantity > l.backordered
        ORDER BY l.g, l.line_no
        """,
    ),
    (
        "customer order totals",  # what order placement keeps up to date
        """
        INSERT INTO customer_order_totals (currency, guest, customer_key, orders, amount)
        SELECT currency, customer_id IS NULL, coalesce(customer_id, customer_email), count(*),
               sum(total_amount)
        FROM orders GROUP BY 1, 2, 3
        """,
    ),
    (
        "order history of returned orders",
        """
        INSERT INTO order_events (order_id, kind, from_status, to_status, actor, actor_role,
                                  reason, created_at)
        SELECT o.id, 'transition', 'delivered', 'returned', 'bench', 'admin',
               (ARRAY['damaged', 'size_or_fit', 'no_longer_needed', 'defective'])
                   [1 + floor(4 * o.r_reason)::int],
               o.created_at + make_interval(secs => o.deliv_s + o.return_gap_s)
        FROM bo o WHERE o.status = 'returned'
        """,
    ),
]

RETURNS_TABLES = [
    (
        "returns",
        """
        INSERT INTO returns (id, order_id, status, created_by, created_at, updated_at,
                             received_at)
        SELECT gen_random_uuid(), o.id, 'received', 'bench',
               o.created_at + make_interval(secs => o.deliv_s + o.return_gap_s / 2),
               o.created_at + make_interval(secs => o.deliv_s + o.return_gap_s),
               o.created_at + make_interval(secs => o.deliv_s + o.return_gap_s)
        FROM bo o WHERE o.status = 'returned'
        """,
    ),
    (
        "return_lines",
        """
        INSERT INTO return_lines (id, return_id, order_line_id, sku, quantity, reason_code,
                                  restocked_quantity, discarded_quantity)
        SELECT gen_random_uuid(), r.id, l.id, 'SKU-' || lpad(l.k::text, 5, '0'),
               l.quantity - l.backordered,
               (ARRAY['damaged', 'defective', 'wrong_item', 'not_as_described', 'size_or_fit',
                      'no_longer_needed', 'other'])[1 + floor(7 * random())::int],
               l.quantity - l.backordered, 0
        FROM returns r JOIN bl l ON l.order_id = r.order_id
        WHERE l.quantity > l.backordered
        """,
    ),
]


async def _step(conn: AsyncConnection, name: str, sql: str, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = await conn.execute(text(sql), params)
    took = time.perf_counter() - started
    rows = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else "?"
    print(f"  {name:<36} {rows!s:>10} rows  {took:7.1f} s", flush=True)
    return took


async def generate(url: str, *, orders: int, days: int, now: datetime) -> dict[str, Any]:
    """Recreate the database, migrate it, and fill it; returns the timings."""
    target = make_url(url)
    admin = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    await admin.dispose()
    await asyncio.to_thread(upgrade_head, url)

    params = {"n": orders, "now": now, "secs_per_order": days * 86400.0 / orders}
    timings: dict[str, float] = {}
    started = time.perf_counter()
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        # bulk load: no per-row foreign key triggers (the generator keeps references intact)
        await conn.execute(text("SET session_replication_role = replica"))
        await conn.execute(text("SET work_mem = '256MB'"))
        for name, sql in GENERATE:
            timings[name] = await _step(conn, name, sql, params)
        has_returns = (
            await conn.execute(text("SELECT to_regclass('return_lines') IS NOT NULL"))
        ).scalar_one()
        if has_returns:
            for name, sql in RETURNS_TABLES:
                timings[name] = await _step(conn, name, sql, params)
        await conn.commit()
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        vacuum_started = time.perf_counter()
        await auto.execute(text("VACUUM ANALYZE"))
        timings["vacuum analyze"] = time.perf_counter() - vacuum_started
        print(f"  {'vacuum analyze':<36} {'':>10}       {timings['vacuum analyze']:7.1f} s")
        sizes = (
            await auto.execute(
                text(
                    "SELECT relname, n_live_tup, pg_total_relation_size(relid) FROM "
                    "pg_stat_user_tables WHERE relname IN ('orders', 'order_lines', "
                    "'shipments', 'allocations', 'order_events', 'returns', 'return_lines') "
                    "ORDER BY relname"
                )
            )
        ).all()
    await engine.dispose()
    total = time.perf_counter() - started
    print(f"  generated in {total:.1f} s (after migrations)")
    return {
        "seconds_total": round(total, 1),
        "seconds_by_step": {k: round(v, 2) for k, v in timings.items()},
        "tables": {name: {"rows": rows, "bytes": size} for name, rows, size in sizes},
        "returns_tables": bool(has_returns),
    }


async def drop_report_indexes(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for name in REPORT_INDEXES:
            await conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    await engine.dispose()


# ---- timing -------------------------------------------------------------------------------

REPORTS: dict[str, dict[str, Any]] = {
    "top-products": {"limit": 10},
    "top-customers": {"limit": 10},
    "top-countries": {"limit": 10},
    "top-channels": {"limit": 10},
    "daily": {"tz": "Europe/Berlin"},
    "fulfilment": {"late_after_hours": 48},
    "returns/by-product": {"limit": 10},
    "returns/by-reason": {},
    "late-orders": {"late_after_hours": 48, "limit": 50},
    "top-customers, aggregate": {"limit": 10},
}
AGGREGATE_ONLY = {"top-customers, aggregate": "top-customers"}
"""Timed again with the placed-order-totals bound off (``Pruning(max_candidates=0)``): what the
report costs where the bound cannot help (sales spread evenly over many customers, short
windows)."""


async def measure(url: str, *, repeat: int, now: datetime, csv: bool) -> list[dict[str, Any]]:
    from oms.auth.service import create_api_key
    from oms.db import create_sessionmaker
    from oms.main import create_app
    from oms.reports import customers
    from oms.shared.roles import Role

    default = customers.PRUNING

    app = create_app(Settings(database_url=url, db_pool_size=4, db_statement_timeout_ms=60_000))
    out: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        async with create_sessionmaker(app.state.engine)() as session, session.begin():
            _, token = await create_api_key(session, name="bench-reports", role=Role.ADMIN)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for days in (30, 365):
                bounds = {
                    "from": (now - timedelta(days=days)).isoformat(),
                    "to": now.isoformat(),
                }
                for label, extra in REPORTS.items():
                    report = AGGREGATE_ONLY.get(label, label)
                    customers.PRUNING = (
                        customers.Pruning(max_candidates=0) if label in AGGREGATE_ONLY else default
                    )
                    for fmt in ("json", "csv") if csv else ("json",):
                        query = urlencode(bounds | extra | {"format": fmt})
                        path = f"/v1/reports/{report}?{query}"
                        samples: list[float] = []
                        size = 0
                        for i in range(repeat + 1):
                            started = time.perf_counter()
                            resp = await client.get(path, headers=headers)
                            took = (time.perf_counter() - started) * 1000
                            if resp.status_code != 200:
                                raise SystemExit(f"{path}: {resp.status_code} {resp.text}")
                            if i:  # the first call warms caches and is not counted
                                samples.append(took)
                            size = len(resp.content)
                        row = {
                            "report": label,
                            "range_days": days,
                            "format": fmt,
                            "p50_ms": round(statistics.median(samples), 1),
                            "min_ms": round(min(samples), 1),
                            "max_ms": round(max(samples), 1),
                            "samples_ms": [round(s, 1) for s in samples],
                            "response_bytes": size,
                        }
                        out.append(row)
                        print(
                            f"  {label:<25} {days:>4} d  {fmt:<4}  p50 {row['p50_ms']:7.1f} ms"
                            f"   min {row['min_ms']:7.1f}   max {row['max_ms']:7.1f} ms",
                            flush=True,
                        )
    return out


async def amain(args: argparse.Namespace) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, Any] = {
        "orders": args.orders,
        "days": args.days,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "started_at": now.isoformat(),
    }
    if not args.reuse:
        print(f"generating {args.orders:,} orders over {args.days} days ...")
        results["generation"] = await generate(
            args.database_url, orders=args.orders, days=args.days, now=now
        )
    else:
        if args.json.exists():  # keep the figures of the run that generated the data
            previous = json.loads(args.json.read_text())
            if "generation" in previous:
                results["generation"] = previous["generation"]
                results["generated_at"] = previous.get("started_at")
        engine = create_async_engine(args.database_url)
        async with engine.connect() as conn:
            latest = (await conn.execute(text("SELECT max(created_at) FROM orders"))).scalar_one()
            count = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one()
        await engine.dispose()
        if latest is None:
            raise SystemExit("--reuse: the database has no orders; run without --reuse first")
        now = latest.replace(microsecond=0) + timedelta(seconds=1)
        results["orders"] = count
    if args.without_report_indexes:
        await drop_report_indexes(args.database_url)
    results["report_indexes"] = not args.without_report_indexes
    engine = create_async_engine(args.database_url)
    async with engine.connect() as conn:
        results["postgres"] = (await conn.execute(text("SHOW server_version"))).scalar_one()
    await engine.dispose()
    print(f"timing each report ({args.repeat} calls after one warm-up), data up to {now} ...")
    results["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    results["latency"] = await measure(args.database_url, repeat=args.repeat, now=now, csv=args.csv)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    slowest = max(results["latency"], key=lambda r: r["p50_ms"])
    results["slowest_p50"] = {k: slowest[k] for k in ("report", "range_days", "p50_ms")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--database-url", default=DEFAULT_URL, help="a dedicated database (dropped!)")
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=730, help="history length, ending now")
    ap.add_argument("--repeat", type=int, default=7, help="timed calls per report and range")
    ap.add_argument("--reuse", action="store_true", help="measure the existing data")
    ap.add_argument("--csv", action="store_true", help="also time ?format=csv")
    ap.add_argument(
        "--without-report-indexes",
        action="store_true",
        help="drop the reporting indexes (migrations 0005, 0007-0009) before timing",
    )
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "reports.json")
    return asyncio.run(amain(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
