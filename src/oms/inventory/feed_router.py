"""HTTP routes of the stock feed (changes since a cursor) and the ledger export (hash-chained,
gap-free) with its verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from oms.auth.service import Principal, visible_warehouses
from oms.deps import Session, require
from oms.inventory import feed, ledger_export
from oms.inventory.feed_schemas import (
    ChannelAvailabilityRead,
    LedgerPage,
    LedgerRowRead,
    LedgerVerificationRead,
    LevelChangeRead,
    StockChangesPage,
)
from oms.shared.errors import Forbidden
from oms.shared.openapi import AUTH_PROBLEMS, MAX_BIGINT, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["inventory"])

Stocker = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Reader = Annotated[Principal, Depends(require(Role.FULFILLMENT, Role.STOREFRONT))]


@router.get(
    "/inventory/changes",
    response_model=StockChangesPage,
    response_model_exclude_none=True,
    summary="Stock levels changed since a cursor (catch-up feed)",
    description="The change feed behind `inventory.availability_changed`: every stock level "
    "that changed after `cursor` (by an order, a shipment, an adjustment, a return... or a "
    "warehouse or routing policy change), each once per page, with its figures **as they are "
    "now**, and the `cursor` to read on from. Start without a cursor (every level is listed "
    "once), keep the last cursor, and read on until `has_more` is false: applying the levels "
    "in order (the last one of a level wins) ends with the current figures, whatever "
    "events were missed. The feed is gap-free: a change is listed only once every "
    "transaction older than it has finished, so one committed late is never skipped "
    "(it can lag a running transaction by its duration). With `channel`, "
    "`channel_available` gives that channel's sellable quantity now (summed over the "
    "warehouses its routing policy ships from) of each SKU of the page. A key bound to a "
    "channel reads its own channel only; a key scoped to some locations gets their levels "
    "only.",
    responses=problems(422, *AUTH_PROBLEMS),
)
async def changes(
    session: Session,
    principal: Reader,
    cursor: Annotated[
        str | None,
        Query(max_length=60, description="From the previous page; none: from the start"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="Journal rows read")] = 500,
    channel: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> StockChangesPage:
    if principal.channel is not None:
        if channel is not None and channel != principal.channel:
            raise Forbidden(
                f"this API key is bound to channel '{principal.channel}'",
                code="channel_not_allowed",
            )
        channel = principal.channel
    page = await feed.changes(
        session,
        cursor=feed.Cursor.decode(cursor),
        limit=limit,
        channel=channel,
        scope=visible_warehouses(principal),
    )
    return StockChangesPage(
        levels=[
            LevelChangeRead(
                warehouse=c.warehouse_code,
                warehouse_active=c.warehouse_active,
                sku=c.sku,
                on_hand=c.on_hand,
                reserved=c.reserved,
                safety_stock=c.safety_stock,
                available=c.available,
            )
            for c in page.levels
        ],
        channel=channel,
        channel_available=None
        if page.channel_available is None
        else [
            ChannelAvailabilityRead(sku=sku, available=n)
            for sku, n in page.channel_available.items()
        ],
        cursor=page.cursor.encode(),
        has_more=page.has_more,
    )


def _whole_ledger(principal: Principal) -> None:
    """The ledger is one chain over every location: not for a key scoped to some of them."""
    if visible_warehouses(principal) is not None:
        raise Forbidden(
            "this API key is scoped to some locations; the ledger spans every location",
            code="scoped_key_not_allowed",
        )


@router.get(
    "/inventory/ledger",
    response_model=LedgerPage,
    summary="Export the ledger: every movement, numbered and hash-chained",
    description="Every stock movement, in `seq` order (gap-free from 1), each with "
    "`chain_hash` = sha256 hex of the previous row's `chain_hash` (64 zeros before seq 1) "
    "followed by the row's canonical text: the JSON array, without spaces and not "
    "ASCII-escaped, `[seq, id, warehouse_id, sku, movement_type, quantity, on_hand_after, "
    "reason, reference_type, reference_id, actor, created_at]`, created_at in ISO 8601 UTC "
    "with microseconds (`2026-12-05T11:22:33.123456+00:00`). Page with `after_seq`. A "
    "movement is numbered once its transaction and every older one have finished, so the "
    "newest movements can appear a moment after their commit; never out of order, never "
    "skipped. Recompute the chain over what you hold and compare the last hash with "
    "`GET /v1/inventory/ledger/verify`. 403 `scoped_key_not_allowed` for a key scoped to "
    "some locations (the chain spans them all).",
    responses=problems(*AUTH_PROBLEMS),
)
async def ledger(
    session: Session,
    principal: Stocker,
    after_seq: Annotated[int, Query(ge=0, le=MAX_BIGINT - 5000)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> LedgerPage:
    _whole_ledger(principal)
    rows = await ledger_export.export(session, after_seq=after_seq, limit=limit)
    return LedgerPage(
        movements=[
            LedgerRowRead(
                seq=r.seq,
                chain_hash=r.chain_hash,
                id=r.id,
                warehouse_id=r.warehouse_id,
                warehouse=r.warehouse_code,
                sku=r.sku,
                movement_type=r.movement_type,
                quantity=r.quantity,
                on_hand_after=r.on_hand_after,
                reason=r.reason,
                reference_type=r.reference_type,
                reference_id=r.reference_id,
                actor=r.actor,
                created_at=r.created_at,
            )
            for r in rows
        ],
        next_after_seq=rows[-1].seq if rows else after_seq,
        has_more=len(rows) == limit,
    )


@router.get(
    "/inventory/ledger/verify",
    response_model=LedgerVerificationRead,
    response_model_exclude_none=True,
    summary="Verify the ledger's hash chain",
    description="Recomputes the chain from `from_seq` over at most `limit` movements and "
    "compares each row and link with the stored hash: `ok: false` names the first seq that "
    "is missing or does not match (a movement altered, or its hash). `previous_hash`: the "
    "hash of `from_seq - 1` as you hold it (default: the stored one). Compare `last_hash` "
    "with the hash you hold for `last_seq`. 403 `scoped_key_not_allowed` for a key scoped "
    "to some locations.",
    responses=problems(*AUTH_PROBLEMS),
)
async def verify(
    session: Session,
    principal: Stocker,
    from_seq: Annotated[int, Query(ge=1, le=MAX_BIGINT)] = 1,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    previous_hash: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{64}$", description="sha256 hex")
    ] = None,
) -> LedgerVerificationRead:
    _whole_ledger(principal)
    result = await ledger_export.verify(
        session, from_seq=from_seq, limit=limit, previous_hash=previous_hash
    )
    return LedgerVerificationRead(
        ok=result.ok,
        from_seq=result.from_seq,
        checked=result.checked,
        last_seq=result.last_seq,
        last_hash=result.last_hash,
        mismatch_seq=result.mismatch_seq,
        problem=result.problem,
    )
