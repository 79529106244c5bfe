"""The database functions of a migrated database are their source files, and the rules they
share with Python agree.

Each context's ``sql/<name>.sql`` holds the source of truth of one function; migrations install
frozen copies. Here every source file is created in a scratch schema (inside a transaction that
is rolled back) and ``pg_get_functiondef`` of that copy is compared with the live function's:
Postgres prints both the same way (header normalised, body verbatim), so any difference in
signature, return type, language, volatility, settings or body fails, naming the function.
When a source file changes, the fix is a new migration installing the new copy.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import domain
from oms.inventory import service as inventory_service
from oms.outbox.models import OutboxEvent
from oms.shared.sqlfiles import function_name, sql_file, sql_names
from tests.helpers import auth, order_body, stock

ROOT = Path(__file__).resolve().parents[2]


def _function_sources() -> dict[str, str]:
    """Function name -> the text of its source file, for every ``oms/<context>/sql/*.sql``
    that creates a function (other SQL files, e.g. plain statements, are skipped)."""
    out: dict[str, str] = {}
    for context in sorted(resources.files("oms").iterdir(), key=lambda p: p.name):
        if not context.joinpath("sql").is_dir():
            continue
        package = f"oms.{context.name}"
        for name in sql_names(package):
            sql = sql_file(package, name)
            created = function_name(sql)
            if created is None:
                continue
            assert created == name, f"{package}/sql/{name}.sql creates {created}, not {name}"
            assert created not in out, f"two source files create {created}"
            out[created] = sql
    return out


SOURCES = _function_sources()


def test_the_inventory_functions_have_source_files() -> None:
    assert {"oms_reserve", "oms_routing_snapshot", "oms_stock_available"} <= set(SOURCES)


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(migrated.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        yield conn
    finally:
        await conn.close()


_DEFINITIONS = """
SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND p.proname = $2 ORDER BY p.oid"""


async def _source_definition(db: asyncpg.Connection, name: str) -> str:
    """``pg_get_functiondef`` of the source file's function, created in a scratch schema that
    is rolled back, as if it had been created in ``public``."""
    schema = f"oms_source_{uuid.uuid4().hex[:12]}"
    tx = db.transaction()
    await tx.start()
    try:
        await db.execute(f"CREATE SCHEMA {schema}; SET LOCAL search_path = {schema}, public")
        await db.execute(SOURCES[name])
        definitions = await db.fetch(_DEFINITIONS, schema, name)
    finally:
        await tx.rollback()
    assert len(definitions) == 1, f"{name}.sql creates {len(definitions)} functions"
    definition: str = definitions[0][0]
    return definition.replace(f"FUNCTION {schema}.", "FUNCTION public.", 1)


@pytest.mark.parametrize("name", sorted(SOURCES))
async def test_live_function_is_its_source_file(db: asyncpg.Connection, name: str) -> None:
    live = [r[0] for r in await db.fetch(_DEFINITIONS, "public", name)]
    assert live, f"{name} is not installed: a migration must install its source file"
    assert len(live) == 1, f"{name} has {len(live)} overloads (an old signature left behind?)"
    source = await _source_definition(db, name)
    if live[0] != source:
        diff = "\n".join(
            difflib.unified_diff(
                live[0].splitlines(), source.splitlines(), "migrated", f"{name}.sql", lineterm=""
            )
        )
        pytest.fail(
            f"{name} in the migrated database differs from its source file; install the "
            f"source in a new migration:\n{diff}"
        )


async def test_every_oms_function_in_the_database_has_a_source_file(
    db: asyncpg.Connection,
) -> None:
    installed = await db.fetch(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.proname LIKE 'oms\\_%'"
    )
    assert {r[0] for r in installed} <= set(SOURCES)


_CALLED = re.compile(r"\b(oms_[a-z0-9_]+)\s*\(")


def test_the_code_calls_only_functions_with_a_source_file() -> None:
    """Every ``oms_*(`` in the code (services, SQL files, the load benchmark) names a function
    with a source file (which the test above proves installed)."""
    files = [*(ROOT / "src" / "oms").rglob("*.py"), *(ROOT / "src" / "oms").rglob("*.sql")]
    files += (ROOT / "bench").glob("*.py")
    called = {
        (match, path.relative_to(ROOT).as_posix())
        for path in files
        for match in _CALLED.findall(path.read_text(encoding="utf-8"))
    }
    assert called, "found no call of an oms_* function"
    missing = sorted((name, where) for name, where in called if name not in SOURCES)
    assert not missing, f"calls of functions without a source file: {missing}"


@pytest.mark.parametrize(
    "statement", [inventory_service.ROUTING_SNAPSHOT_SQL, inventory_service.RESERVE_SQL]
)
async def test_the_statements_order_placement_sends_resolve(
    db: asyncpg.Connection, statement: str
) -> None:
    """Preparing resolves each function by name and argument types on the migrated database."""
    await db.prepare(statement)


async def test_availability_is_the_same_rule_in_sql_and_python(db: asyncpg.Connection) -> None:
    cases = [(10, 3, 2), (10, 8, 2), (10, 8, 5), (0, 0, 0), (5, 5, 0), (3, 0, 7)]
    rows = await db.fetch(
        "SELECT c.o, c.r, c.s, oms_stock_available(c.o, c.r, c.s) AS a "
        "FROM unnest($1::int[], $2::int[], $3::int[]) AS c(o, r, s)",
        *map(list, zip(*cases, strict=True)),
    )
    assert [r["a"] for r in rows] == [domain.available(*c) for c in cases]


async def _low_stock_events(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OutboxEvent.aggregate_type, OutboxEvent.aggregate_id, OutboxEvent.payload)
                .where(OutboxEvent.type == domain.LOW_STOCK)
                .order_by(OutboxEvent.id)
            )
        ).all()
    return {
        payload["data"]["sku"]: {"aggregate": (kind, aggregate_id), **payload}
        for kind, aggregate_id, payload in rows
    }


async def test_low_stock_payload_is_the_same_from_placement_and_from_an_adjustment(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await stock(
        sessionmaker,
        "BER",
        {"PLACED": 10, "ADJUSTED": 10},
        latitude=52.52,
        longitude=13.405,
        city="Berlin",
    )
    for sku in ("PLACED", "ADJUSTED"):
        patched = await client.patch(
            f"/v1/inventory/levels/BER/{sku}",
            json={"low_stock_threshold": 8},
            headers=auth(keys["admin"]),
        )
        assert patched.status_code == 200, patched.text
    # the database path: order placement's oms_reserve takes availability from 10 to 7
    body = order_body(lines=[{"sku": "PLACED", "quantity": 3, "unit_price": 100}])
    placed = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert placed.status_code == 201, placed.text
    # the Python path: a correction takes it from 10 to 7
    async with sessionmaker() as session, session.begin():
        await inventory_service.adjust_stock(
            session,
            warehouse_code="BER",
            sku="ADJUSTED",
            kind="correct",
            quantity=-3,
            reason="damaged",
            actor="test",
        )
    events = await _low_stock_events(engine)
    assert set(events) == {"PLACED", "ADJUSTED"}
    by_db, by_python = events["PLACED"], events["ADJUSTED"]
    assert by_db.keys() == by_python.keys()
    assert by_db["data"].keys() == by_python["data"].keys()
    warehouse_id = by_python["data"]["warehouse_id"]
    for sku, event in events.items():
        assert event["type"] == domain.LOW_STOCK
        assert event["aggregate"] == ("stock", f"{warehouse_id}:{sku}")
        assert event["data"] == {
            "warehouse_id": warehouse_id,
            "warehouse_code": "BER",
            "sku": sku,
            "available": 7,
            "threshold": 8,
        }
        assert datetime.fromisoformat(event["occurred_at"]).utcoffset() is not None
        assert uuid.UUID(event["id"])
