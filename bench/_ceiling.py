"""The database's own ceiling for order placement: the SQL of one order transaction, run
directly with asyncpg (prepared statements, a pool of 8 connections), no HTTP, no ORM.

Per order, one transaction writing the same rows as oms, with documents of the same size (the
routing decision with a real 20-warehouse explanation, the order summary in the outbox event, an
OrderRead-shaped idempotent response), and the same reads:

1. ``BEGIN``
2. the API key lookup (authentication)
3. the idempotency-key claim (``INSERT ... ON CONFLICT DO NOTHING``)
4. the routing snapshot: every warehouse with the available units of the order's SKUs
   (oms's own statement, ``oms.inventory.service.ROUTING_SNAPSHOT_SQL``, calling the database
   function ``oms_routing_snapshot``)
5. one statement writing the order, its lines, the ``placed`` history event, the shipments,
   the ``order.placed`` outbox event, the stored idempotent response and the customer's
   placed-order totals: oms's own statement and parameters (``oms.orders.placement._PLACE_ORDER``,
   i.e. ``src/oms/orders/sql/place_order.sql``, and ``place_order_args``)
6. the reservation, the contended statement, sent as oms sends it with ``POST /v1/orders``
   (``oms.inventory.service.reserve_literal_sql``, the database function ``oms_reserve`` with
   oms's arguments as literals): the allocations written, the stock rows locked in
   (warehouse, sku) order and incremented only if all of them still have the units, in one
   message with ``COMMIT; BEGIN`` (so the stock rows are unlocked by the server right after
   the reservation); then the ``COMMIT`` of that empty transaction, as oms's session ends it

The database functions are the ones the migrations install from ``src/oms/inventory/sql/``.
The statements of steps 4 to 6 are oms's own, not copies, sent with the arguments oms's own
functions build from the same rows (``NewOrder``, ``NewShipment``, ``Reservation``); only the
small reads of steps 2 and 3, which oms builds with SQLAlchemy, are written out here.

oms sends the same round trips (the channel's routing policy comes from a per-process
cache). When the stock moved, both roll back; oms then routes again in a new transaction, the
ceiling does not retry. The "routing" here is a stand-in (the nearest warehouse holding every
line, else each line from the nearest one holding it): the ceiling measures the database, not
the planner. Spec on stdin (JSON), like
``_loadgen.py``; results as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from _common import (
    CpuProbe,
    cumulative,
    latency_summary,
    order_body,
    postgres_pids,
    zipf_weights,
)

from oms.auth.service import Principal
from oms.inventory.reservations import reserve_literal_sql
from oms.inventory.service import (
    ROUTING_SNAPSHOT_SQL,
    STOCK_MOVED,
    Reservation,
)
from oms.orders.domain import line_amounts, order_totals
from oms.orders.events import order_summary
from oms.orders.placement import _PLACE_ORDER, place_order_args
from oms.orders.plans import NewOrder, NewOrderLine, NewShipment
from oms.shared.roles import Role

AUTH = """SELECT id, name, role, channel, secret_hash FROM api_keys
WHERE prefix = $1 AND revoked_at IS NULL"""

CLAIM = """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO NOTHING RETURNING id"""


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 12742.0 * math.asin(min(1.0, math.sqrt(h)))


# destination city -> rough coordinates (the stand-in router only needs an ordering)
_CITY_POINTS = {
    "DE": (51.0, 10.0), "FR": (46.5, 2.5), "ES": (40.2, -3.6), "IT": (42.8, 12.5),
    "AT": (47.6, 14.1), "PL": (52.0, 19.4), "CZ": (49.8, 15.5), "NL": (52.2, 5.3),
    "BE": (50.6, 4.6), "DK": (56.0, 10.0), "SE": (59.3, 16.0), "IE": (53.2, -7.7),
    "PT": (39.6, -8.0), "CH": (46.8, 8.2), "LU": (49.8, 6.1), "SI": (46.1, 14.8),
}  # fmt: skip


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    conc = int(spec["concurrency"])
    pool_size = min(conc, int(spec.get("pool_size", 8)))
    scenario = spec["scenario"]
    rng = random.Random(spec.get("seed", 2))
    cum = cumulative(zipf_weights())
    ctx = Context(
        spec["key_prefix_db"], spec["secret_hash"], spec["key_scope"], _sample_explanation()
    )
    pool = await asyncpg.create_pool(spec["dsn"], min_size=pool_size, max_size=pool_size)
    assert pool is not None
    if scenario == "flash":
        bodies = [
            order_body(
                rng,
                cum,
                fixed_lines=[{"sku": spec["flash_sku"], "quantity": 1, "unit_price": 4999}],
            )
            for _ in range(1000)
        ]
    else:
        bodies = [order_body(rng, cum) for _ in range(3000)]
    latencies: list[float] = []
    outcome: Counter[str] = Counter()
    counter = 0
    recording = False
    remaining = [int(spec.get("requests", 0))]
    first_ok: list[float] = []
    last_ok: list[float] = []

    async def worker(deadline: float) -> None:
        nonlocal counter
        while True:
            t = time.perf_counter()
            if scenario == "flash":
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            elif t >= deadline:
                return
            counter += 1
            body = bodies[counter % len(bodies)]
            key = f"{spec['run_id']}-{counter}"
            try:
                async with pool.acquire() as conn:
                    await place_one(conn, body, key, ctx)
                result = "ok"
            except _Rollback as exc:
                result = str(exc)
            done = time.perf_counter()
            if recording:
                outcome[result] += 1
                if result == "ok":
                    latencies.append(done - t)
                    if not first_ok:
                        first_ok.append(t)
                    last_ok[:] = [done]

    cpu_spec = spec.get("cpu") or {}
    groups: dict[str, Callable[[], list[int]]] = {}
    if cpu_spec.get("postmaster_pid"):
        groups["postgres"] = functools.partial(
            postgres_pids, int(cpu_spec["postmaster_pid"]), cpu_spec["database"]
        )
    probe = CpuProbe(groups)
    warmup = float(spec.get("warmup_s", 0))
    duration = float(spec.get("duration_s", 0))
    t0 = time.perf_counter()
    if warmup > 0 and scenario != "flash":
        await asyncio.gather(*(worker(t0 + warmup) for _ in range(conc)))
    recording = True
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    probe.start()
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + duration) for _ in range(conc)))
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = probe.stop(wall)
    cpu["client_cores"] = round(
        (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / wall, 2
    )
    await pool.close()
    ok = outcome["ok"]
    out: dict[str, Any] = {
        "scenario": scenario,
        "concurrency": conc,
        "pool_size": pool_size,
        "wall_s": round(wall, 3),
        "orders": ok,
        "orders_per_s": round(ok / wall, 1),
        "outcomes": dict(outcome),
        **latency_summary(latencies),
        "cpu": cpu,
    }
    if scenario == "flash" and last_ok:
        sell = last_ok[0] - start
        out["sell_out_s"] = round(sell, 3)
        out["orders_per_s"] = round(ok / sell, 1) if sell > 0 else None
    return out


@dataclass(frozen=True, slots=True)
class Context:
    """What every order's transaction reads from the run: the storefront key's row, the
    idempotency scope, and the routing explanation written with each order."""

    prefix: str
    secret_hash: str
    scope: str
    explanation: dict[str, Any]


async def place_one(
    conn: asyncpg.Connection[Any], body: dict[str, Any], key: str, ctx: Context
) -> dict[str, Any]:
    """One order's transaction (the module docstring's steps 1-6); returns the response
    document oms would send. Raises :class:`_Rollback` when the order is refused."""
    now = datetime.now(UTC)
    order_id = uuid.uuid4()
    await conn.execute("BEGIN")
    try:
        row = await conn.fetchrow(AUTH, ctx.prefix)
        assert row is not None
        assert row["secret_hash"] == ctx.secret_hash
        claimed = await conn.fetchval(CLAIM, ctx.scope, key, "0" * 64)
        assert claimed is not None
        lines = body["lines"]
        skus = [ln["sku"] for ln in lines]
        dest = _CITY_POINTS.get(body["shipping_address"]["country"], (50.0, 10.0))
        stock: dict[uuid.UUID, dict[str, int]] = {}
        points: dict[uuid.UUID, tuple[float, float]] = {}
        codes: dict[uuid.UUID, str] = {}
        for r in await conn.fetch(ROUTING_SNAPSHOT_SQL, skus):
            if not r["active"]:
                continue
            points[r["id"]] = (r["latitude"], r["longitude"])
            codes[r["id"]] = r["code"]
            if r["sku"] is not None and r["available"] > 0:
                stock.setdefault(r["id"], {})[r["sku"]] = r["available"]
        by_distance = sorted(stock, key=lambda w: _km(dest, points[w]))
        plan: list[tuple[int, uuid.UUID]] = []
        whole = [
            w
            for w in by_distance
            if all(stock[w].get(ln["sku"], 0) >= ln["quantity"] for ln in lines)
        ]
        for i, ln in enumerate(lines):
            if whole:
                plan.append((i, whole[0]))
                continue
            w = next((w for w in by_distance if stock[w].get(ln["sku"], 0) >= ln["quantity"]), None)
            if w is None:
                raise _Rollback("insufficient_stock")
            plan.append((i, w))
        principal = Principal(
            key_id=row["id"], name=row["name"], role=Role(row["role"]), channel=row["channel"]
        )
        amounts = [
            line_amounts(ln["quantity"], ln["unit_price"], ln.get("tax_rate_bps", 0))
            for ln in lines
        ]
        totals = order_totals(amounts, body["shipping_fee"])
        new_lines = [
            NewOrderLine(
                id=uuid.uuid4(),
                order_id=order_id,
                line_no=n,
                sku=ln["sku"],
                name=ln.get("name"),
                quantity=ln["quantity"],
                unit_price=ln["unit_price"],
                tax_rate_bps=ln.get("tax_rate_bps", 0),
                backordered=0,
                subtotal_amount=a.subtotal,
                tax_amount=a.tax,
                total_amount=a.total,
            )
            for n, (ln, a) in enumerate(zip(lines, amounts, strict=True), start=1)
        ]
        line_ids = [ln.id for ln in new_lines]
        wids = list(dict.fromkeys(w for _, w in plan))
        shipments = [
            NewShipment(
                id=uuid.uuid4(),
                order_id=order_id,
                seq=n,
                warehouse_id=w,
                warehouse_code=codes[w],
                created_at=now,
            )
            for n, w in enumerate(wids, start=1)
        ]
        ship_ids = {sh.warehouse_id: sh.id for sh in shipments}
        # Documents of the size oms writes: the routing decision with its explanation (one
        # real explanation, computed once), and an OrderRead-shaped idempotent response.
        routing = {
            "warehouses": [codes[w] for w in wids],
            "fully_filled": True,
            "backorders": [],
            "explanation": ctx.explanation,
        }
        addr = body["shipping_address"]
        order = NewOrder(
            id=order_id,
            number=0,
            status="placed",
            version=1,
            channel=body["channel"],
            external_reference=None,
            customer_id=body["customer"]["id"],
            customer_email=body["customer"]["email"],
            currency=body["currency"],
            payment_method=body["payment_method"],
            priority="standard",
            ship_name=addr["name"],
            ship_lines=addr["lines"],
            ship_city=addr["city"],
            ship_postal_code=addr["postal_code"],
            ship_region=None,
            ship_country=addr["country"],
            ship_latitude=None,
            ship_longitude=None,
            subtotal_amount=totals.subtotal,
            tax_amount=totals.tax_total,
            shipping_fee=totals.shipping_fee,
            total_amount=totals.total,
            fulfillment="ship",
            pickup_warehouse_code=None,
            notes=None,
            attributes={},
            created_by=principal.actor,
            created_at=now,
            updated_at=now,
            lines=new_lines,
            routing=routing,
        )
        stamp = now.isoformat()
        response = {
            "id": str(order_id),
            "number": 0,
            "status": "placed",
            "version": 1,
            "allowed_transitions": ["paid", "cancelled"],
            **{k: body[k] for k in ("channel", "currency", "customer", "shipping_address")},
            "payment_method": order.payment_method,
            "priority": order.priority,
            "lines": [
                {
                    "id": str(ln.id),
                    "line_no": ln.line_no,
                    "backordered": 0,
                    "subtotal": ln.subtotal_amount,
                    "tax": ln.tax_amount,
                    "total": ln.total_amount,
                    **data,
                }
                for ln, data in zip(new_lines, lines, strict=True)
            ],
            "totals": {
                "subtotal": totals.subtotal,
                "tax_total": totals.tax_total,
                "shipping_fee": totals.shipping_fee,
                "total": totals.total,
            },
            "fulfillment": "ship",
            "pickup_store": None,
            "shipments": [
                {
                    "id": str(sh.id),
                    "order_id": str(order_id),
                    "seq": sh.seq,
                    "warehouse": sh.warehouse_code,
                    "status": "pending",
                    "carrier": None,
                    "tracking_number": None,
                    "lines": [
                        {
                            "order_line_id": str(line_ids[i]),
                            "sku": lines[i]["sku"],
                            "quantity": lines[i]["quantity"],
                        }
                        for i, pw in plan
                        if pw == sh.warehouse_id
                    ],
                    "created_at": stamp,
                    **dict.fromkeys(
                        ("picked_at", "packed_at", "shipped_at", "delivered_at", "cancelled_at")
                    ),
                }
                for sh in shipments
            ],
            "routed_to": [sh.warehouse_code for sh in shipments],
            "notes": None,
            "attributes": {},
            "created_at": stamp,
            "updated_at": stamp,
            **dict.fromkeys(
                ("carrier", "tracking_number", "paid_at", "shipped_at", "delivered_at")
            ),
            "cancelled_at": None,
        }
        # as oms.orders.placement._write sends it (the request id: the idempotency key)
        event_id = uuid.uuid4()
        event = {
            "id": str(event_id),
            "type": "order.placed",
            "occurred_at": stamp,
            "data": {**order_summary(order), "warehouses": routing["warehouses"]},
        }
        number = await conn.fetchval(
            _PLACE_ORDER,
            *place_order_args(
                order,
                new_lines,
                shipments,
                principal,
                key,
                event_id=event_id,
                event=json.dumps(event, default=str),
                response=json.dumps(response),
                idempotency=(ctx.scope, key),
            ),
        )
        assert number is not None
        reservations = [
            Reservation(
                order_id=order_id,
                order_line_id=line_ids[i],
                shipment_id=ship_ids[w],
                warehouse_id=w,
                sku=lines[i]["sku"],
                quantity=lines[i]["quantity"],
            )
            for i, w in plan
        ]
        try:  # as oms.db.DriverConnection.execute_then_commit sends it
            await conn.execute(reserve_literal_sql(reservations, now) + ";\nCOMMIT;\nBEGIN")
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != STOCK_MOVED:
                raise
            raise _Rollback("stock_moved") from None
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return response


def _sample_explanation() -> dict[str, Any]:
    """One real routing explanation from oms's pure planner (20 warehouses, 2 lines)."""
    from _common import WAREHOUSES

    from oms.routing.domain import (
        Destination,
        GeoPoint,
        RouteLine,
        RoutingPolicy,
        WarehouseCandidate,
        plan_route,
    )

    rng = random.Random(5)
    candidates = [
        WarehouseCandidate(
            id=str(uuid.UUID(int=rng.getrandbits(128))),
            code=code,
            point=GeoPoint(lat, lon),
            priority=100,
            country=country,
            available={f"SKU-{i:05d}": 50 for i in range(1, 40) if rng.random() < 0.5},
        )
        for code, _, country, _, lat, lon in WAREHOUSES
    ]
    lines = [RouteLine(str(i), f"SKU-{i + 1:05d}", 1) for i in range(2)]
    plan = plan_route(lines, Destination("DE", GeoPoint(52.5, 13.4)), candidates, RoutingPolicy())
    return plan.explanation.to_dict()


class _Rollback(Exception):
    """Leave the transaction rolled back (stock moved between snapshot and reservation)."""


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
