"""Store staff: fulfilment keys scoped to warehouses and stores (``auth`` keeps the scope and
answers who may see what: ``oms.auth.service.visible_warehouses``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth import service as auth_service
from oms.inventory import service as inventory_service
from oms.shared.errors import NotFound


async def scope_key(session: AsyncSession, *, key_id: uuid.UUID, codes: list[str]) -> list[str]:
    """Scope a fulfilment key to the warehouses/stores ``codes`` (none: unscoped); returns the
    codes it is scoped to now. 404 ``warehouse_not_found`` for an unknown code."""
    ids = await inventory_service.warehouse_ids_by_code(session, codes=codes)
    unknown = sorted(set(codes) - set(ids))
    if unknown:
        raise NotFound(f"warehouse '{unknown[0]}' does not exist", code="warehouse_not_found")
    await auth_service.set_key_warehouses(session, key_id=key_id, warehouse_ids=list(ids.values()))
    return sorted(set(codes))


async def key_scope(session: AsyncSession, *, key_id: uuid.UUID) -> list[str]:
    """The codes a key is scoped to (empty: every warehouse)."""
    ids = await auth_service.key_warehouses(session, key_id=key_id)
    return sorted((await inventory_service.warehouse_codes(session, ids=ids)).values())
