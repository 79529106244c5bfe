"""Inbound webhook connectors: one per marketplace or shop account (its channel, payload
format and signing secret), and the principal a connector acts as on orders."""

from __future__ import annotations

import base64
import binascii
import uuid

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable
from oms.shared.roles import Role
from oms.webhooks.inbound.models import Connector
from oms.webhooks.inbound.schemas import SKU_MAP_MAX, ConnectorCreate, ConnectorUpdate
from oms.webhooks.keys import new_secret


class ConnectorPrincipal(Principal):
    """A connector acting on orders: admin-equivalent, bound to its channel."""

    __slots__ = ()

    @property
    def actor(self) -> str:
        return f"connector:{self.name}"


def connector_principal(connector: Connector) -> Principal:
    return ConnectorPrincipal(
        key_id=connector.id, name=connector.name, role=Role.ADMIN, channel=connector.channel
    )


def _check_secret(fmt: str, secret: str) -> None:
    if fmt != "oms":
        return
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(
            "an oms-format connector needs a Standard Webhooks secret: whsec_<base64>",
            code="invalid_secret",
        ) from exc
    if len(key) < 24:
        raise Unprocessable("the secret must decode to at least 24 bytes", code="invalid_secret")


async def create_connector(
    session: AsyncSession, *, data: ConnectorCreate
) -> tuple[Connector, str | None]:
    """Store a connector; returns it and the secret when oms generated it (shown once)."""
    generated = None
    secret = data.secret
    if secret is None:
        if data.format != "oms":
            raise Unprocessable(
                f"a {data.format} connector needs the secret configured in {data.format}",
                code="secret_required",
            )
        secret = generated = new_secret()
    _check_secret(data.format, secret)
    now = utcnow()
    connector_id = (
        await session.execute(
            pg_insert(Connector)
            .values(
                id=uuid.uuid4(),
                name=data.name,
                channel=data.channel,
                format=data.format.value,
                secret=secret,
                enabled=data.enabled,
                description=data.description,
                sku_map=data.sku_map,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(Connector.id)
        )
    ).scalar_one_or_none()
    if connector_id is None:
        raise Conflict(f"a connector named '{data.name}' exists", code="connector_exists")
    return await get_connector(session, name=data.name), generated


async def list_connectors(session: AsyncSession) -> list[Connector]:
    return list((await session.scalars(select(Connector).order_by(Connector.name))).all())


async def get_connector(session: AsyncSession, *, name: str) -> Connector:
    connector = await session.scalar(select(Connector).where(Connector.name == name))
    if connector is None:
        raise NotFound(f"no connector named '{name}'", code="connector_not_found")
    return connector


async def update_connector(session: AsyncSession, *, name: str, data: ConnectorUpdate) -> Connector:
    """Change a connector's channel, format, secret, enabled flag or description, and merge
    entries into its SKU map (an entry set to null is removed)."""
    connector = await get_connector(session, name=name)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("format") is not None:
        changes["format"] = changes["format"].value
    for key in ("channel", "format", "secret", "enabled", "sku_map"):
        if key in changes and changes[key] is None:
            del changes[key]
    if "sku_map" in changes:
        merged = dict(connector.sku_map or {})
        for key, sku in changes["sku_map"].items():
            if sku is None:
                merged.pop(key, None)
            else:
                merged[key] = sku
        if len(merged) > SKU_MAP_MAX:
            raise Unprocessable(
                f"a connector maps at most {SKU_MAP_MAX} variants and products",
                code="sku_map_too_large",
            )
        changes["sku_map"] = merged
    _check_secret(changes.get("format", connector.format), changes.get("secret", connector.secret))
    for key, value in changes.items():
        setattr(connector, key, value)
    connector.updated_at = utcnow()
    await session.flush()
    return connector


async def delete_connector(session: AsyncSession, *, name: str) -> None:
    """Delete a connector; its inbox history stays (linked by name)."""
    result = await session.execute(
        delete(Connector).where(Connector.name == name).returning(Connector.id)
    )
    if result.first() is None:
        raise NotFound(f"no connector named '{name}'", code="connector_not_found")
