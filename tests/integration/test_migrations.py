"""`alembic upgrade head` on an empty database builds the schema the code expects: the migrated
test database compared with the models (tables, columns and their types, indexes, unique
constraints, foreign keys), as `alembic check` would, and check constraints compared by name."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

import oms.models  # noqa: F401  (every context's tables on Base.metadata)
from oms.db import Base


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_build_the_schema_the_models_describe(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], f"models and migrations differ: {diff}"


async def test_every_check_constraint_of_the_models_exists(engine: AsyncEngine) -> None:
    wanted = {
        (table.name, constraint.name)
        for table in Base.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint) and isinstance(constraint.name, str)
    }
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT rel.relname, con.conname FROM pg_constraint con "
                "JOIN pg_class rel ON rel.oid = con.conrelid "
                "JOIN pg_namespace n ON n.oid = rel.relnamespace "
                "WHERE con.contype = 'c' AND n.nspname = 'public'"
            )
        )
        live = {(r[0], r[1]) for r in rows}
    assert wanted, "no named check constraints found on the models"
    assert wanted <= live, f"missing in the database: {sorted(wanted - live)}"
