"""Instructions per order placement, counted rather than timed (for noisy, shared machines).

The real app in process through ``httpx.ASGITransport`` (no sockets, no other process on the
count), 20 warehouses, 500 SKUs each stocked in 5-15 of them, the load bench's 1-4-line
orders with idempotency keys. Run a placement count twice under callgrind; the difference
divided by the difference in orders is the work per placement (start-up cancels)::

    createdb -h 127.0.0.1 -U postgres instr
    .venv/bin/python bench/instructions.py setup postgresql://postgres@127.0.0.1:5432/instr
    for n in 50 150; do
      valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python bench/instructions.py run postgresql://postgres@127.0.0.1:5432/instr $n \\
        2>&1 | grep Collected
    done
    # (collected at 150 - collected at 50) / 100 = instructions per placement

To compare commits, extract one with ``git archive <commit> src | tar -x -C /tmp/old`` and
run the same commands with ``PYTHONPATH=/tmp/old/src`` (same database, same schema).
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from _common import WAREHOUSES, cumulative, order_body, zipf_weights

SKUS = [f"SKU-{i:05d}" for i in range(1, 501)]


def _url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _key(app: object) -> str:
    from oms.auth.service import create_api_key
    from oms.shared.roles import Role

    async with app.state.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        _, token = await create_api_key(session, name="bench", role=Role.ADMIN, channel=None)
    return str(token)


async def setup(dsn: str) -> None:
    from oms.config import Settings
    from oms.main import create_app
    from oms.schema import upgrade_head

    await asyncio.to_thread(upgrade_head, _url(dsn))
    app = create_app(Settings(database_url=_url(dsn)))
    async with app.router.lifespan_context(app):
        token = await _key(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://oms") as client:
            for code, city, country, postal, lat, lon in WAREHOUSES:
                resp = await client.post(
                    "/v1/warehouses",
                    json={
                        "code": code,
                        "name": city,
                        "country": country,
                        "postal_code": postal,
                        "latitude": lat,
                        "longitude": lon,
                        "priority": 100,
                    },
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert resp.status_code == 201, resp.text
    conn = await asyncpg.connect(dsn)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM warehouses ORDER BY code")]
        rng = random.Random(1)
        now = datetime.now(UTC)
        rows = [
            (w, sku, 100_000, 0, 0, now)
            for sku in SKUS
            for w in rng.sample(ids, rng.randint(5, 15))
        ]
        await conn.copy_records_to_table(
            "stock_levels",
            records=rows,
            columns=["warehouse_id", "sku", "on_hand", "reserved", "safety_stock", "updated_at"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run(dsn: str, n: int) -> None:
    from oms.config import Settings
    from oms.main import create_app

    app = create_app(Settings(database_url=_url(dsn)))
    rng = random.Random(7)
    cum = cumulative(zipf_weights(len(SKUS)))
    async with app.router.lifespan_context(app):
        token = await _key(app)
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://oms") as client:
            for _ in range(n):
                resp = await client.post(
                    "/v1/orders",
                    json=order_body(rng, cum, skus=SKUS),
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                assert resp.status_code == 201, resp.text


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    asyncio.run(setup(target) if mode == "setup" else run(target, int(sys.argv[3])))
