"""Warehouses: create, change, list, and look up by code or id (what other contexts call to
turn warehouse codes into ids and back)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory.models import Warehouse
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound


async def get_warehouse(session: AsyncSession, *, code: str) -> Warehouse:
    """The warehouse with this code, or 404 ``warehouse_not_found``."""
    wh = await session.scalar(select(Warehouse).where(Warehouse.code == code))
    if wh is None:
        raise NotFound(f"warehouse '{code}' does not exist", code="warehouse_not_found")
    return wh


async def create_warehouse(session: AsyncSession, *, values: dict[str, Any]) -> Warehouse:
    """Add a warehouse; its code must be new."""
    now = utcnow()
    stmt = (
        pg_insert(Warehouse)
        .values(id=uuid.uuid4(), created_at=now, updated_at=now, active=True, **values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Warehouse.id)
    )
    if (await session.execute(stmt)).first() is None:
        raise Conflict(f"warehouse '{values['code']}' already exists", code="warehouse_exists")
    return await get_warehouse(session, code=values["code"])


async def update_warehouse(
    session: AsyncSession, *, code: str, values: dict[str, Any]
) -> Warehouse:
    """Change a warehouse's attributes (not its code)."""
    wh = await get_warehouse(session, code=code)
    for key, value in values.items():
        setattr(wh, key, value)
    wh.updated_at = utcnow()
    if "active" in values:
        wh.deactivated_at = None if values["active"] else utcnow()
    await session.flush()
    return wh


async def list_warehouses(
    session: AsyncSession, *, include_inactive: bool = True
) -> list[Warehouse]:
    """Warehouses by priority rank, then code."""
    stmt = select(Warehouse).order_by(Warehouse.priority, Warehouse.code)
    if not include_inactive:
        stmt = stmt.where(Warehouse.active.is_(True))
    return list((await session.scalars(stmt)).all())


async def warehouse_codes(
    session: AsyncSession, *, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Codes for warehouse ids."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Warehouse.id, Warehouse.code).where(Warehouse.id.in_(wanted))
    )
    return {wid: code for wid, code in rows.all()}


async def warehouse_ids_by_code(
    session: AsyncSession, *, codes: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Ids for warehouse codes (unknown codes are absent)."""
    rows = await session.execute(
        select(Warehouse.code, Warehouse.id).where(Warehouse.code.in_(list(codes)))
    )
    return {code: wid for code, wid in rows.all()}
