"""HTTP routes: the inbound webhook endpoint, connectors, and the inbox."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import intake
from oms.shared.errors import PROBLEM_JSON
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, BigId, IdCursor, problems
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp
from oms.webhooks.inbound import service
from oms.webhooks.inbound.models import Connector, InboxMessage
from oms.webhooks.inbound.schemas import (
    CANONICAL_EXAMPLES,
    CanonicalEvent,
    ConnectorCreate,
    ConnectorCreated,
    ConnectorFormat,
    ConnectorName,
    ConnectorRead,
    ConnectorUpdate,
    InboundResult,
    InboxMessageDetail,
    InboxMessageRead,
    InboxPage,
    InboxStatus,
)

TAG = "inbound-webhooks"
router = APIRouter(prefix="/v1", tags=[TAG])
Admin = Annotated[Principal, Depends(require())]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local ``$defs`` references so the schema stands alone inside the document."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            out = {k: walk(v) for k, v in node.items()}
            if isinstance(out.get("discriminator"), dict):  # its mapping points into $defs
                out["discriminator"] = {"propertyName": out["discriminator"]["propertyName"]}
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}} | {
        "description": description
    }


_INBOUND_OPENAPI: dict[str, Any] = {
    "parameters": [
        _header("webhook-id", "oms format: unique message id (deduplication key)"),
        _header("webhook-timestamp", "oms format: Unix seconds; must be within the tolerance"),
        _header("webhook-signature", "oms format: `v1,<base64 HMAC-SHA256>` (Standard Webhooks)"),
        _header("X-Shopify-Hmac-Sha256", "shopify: base64 HMAC-SHA256 of the raw body"),
        _header(
            "X-Shopify-Topic",
            "shopify: orders/create, orders/updated, orders/edited, orders/cancelled, ...",
        ),
        _header("X-Shopify-Webhook-Id", "shopify: deduplication key"),
        _header("X-Shopify-Triggered-At", "shopify: must be less than 48 hours old if sent"),
        _header("X-WC-Webhook-Signature", "woocommerce: base64 HMAC-SHA256 of the raw body"),
        _header("X-WC-Webhook-Topic", "woocommerce: order.created, order.updated"),
        _header("X-WC-Webhook-Delivery-ID", "woocommerce: deduplication key"),
    ],
    "requestBody": {
        "required": True,
        "description": (
            "For connectors of format `oms`, the canonical body below. For `shopify` and "
            "`woocommerce`, the platform's own order payload, unchanged."
        ),
        "content": {
            "application/json": {
                "schema": _inline(TypeAdapter(CanonicalEvent).json_schema()),
                "examples": {k.replace(".", "_"): v for k, v in CANONICAL_EXAMPLES.items()},
            }
        },
    },
}


@router.post(
    "/webhooks/inbound/{connector_name}",
    response_model=InboundResult,
    summary="Receive a webhook from a connector (marketplace or payment provider)",
    description=(
        "Authenticated by the connector's signature, not by an API key: a missing or wrong "
        "signature, or a timestamp outside the tolerance window, is refused with 401 and not "
        "stored. An authentic delivery is stored raw in the inbox first, then processed:\n\n"
        "* `200` processed (or `ignored`: a topic oms has nothing to do for), with the order id;\n"
        "* `202` `pending`: the event is about an order oms does not have yet; it is kept and "
        "applied when the order arrives;\n"
        "* `400`/`422` the payload cannot be read or mapped, `409` it conflicts with the order's "
        "state (e.g. `insufficient_stock`, `illegal_transition`): the delivery is kept as "
        "`failed` with the reason (see `GET /v1/webhooks/inbox?status=failed`) and can be "
        "replayed after a fix; a retry of the same event id is processed again.\n\n"
        "A repeated event id returns the first outcome with `duplicate: true` and changes "
        "nothing. Deliveries about the same order are serialized, and an order is created once "
        "per (channel, external reference) however many deliveries race.\n\n"
        "**Formats.** `oms`: the canonical body below, signed per Standard Webhooks with the "
        "connector's `whsec_` secret (`webhook-id`, `webhook-timestamp`, `webhook-signature`); "
        "the signed timestamp is the replay protection. `shopify`: `orders/create`, "
        "`orders/cancelled`, `orders/paid`, `refunds/create`, `orders/updated` and `orders/edited` "
        "(applied as order edits; an edit naming a line item id no line of the order carries "
        "fails with 422 `unknown_line_items`) (HMAC in `X-Shopify-Hmac-Sha256`). "
        "`woocommerce`: `order.created`, `order.updated` (HMAC in `X-WC-Webhook-Signature`; the "
        "unsigned setup ping is acknowledged). Shopify and WooCommerce sign no timestamp: replays "
        "are absorbed by deduplication (event id, external reference, payment reference). Event "
        "ids are compared whole: one longer than 255 characters is refused (400 "
        "`invalid_delivery_id`, not stored).\n\n"
        "**Lines and customers** (Shopify, WooCommerce). A line's SKU comes from the connector's "
        "`sku_map` (`variant:<id>`), else the line's own SKU, else `sku_map` (`product:<id>`); "
        "otherwise the delivery fails with 422 `unmapped_line` naming the lines. A guest order "
        "without an email is identified by its phone, or is anonymous (point of sale)."
    ),
    responses={
        202: {"model": InboundResult, "description": "Kept as pending until its order exists"},
        **problems(
            400,
            401,
            404,
            409,
            413,
            422,
            503,
            d400="The body is not JSON (`malformed_payload`; kept as failed), or the delivery id "
            "is longer than 255 characters (`invalid_delivery_id`; not stored)",
            d401="Missing or wrong signature, or timestamp outside the tolerance (not stored)",
            d404="No connector with this name (`connector_not_found`)",
            d409="Conflicts with the order's state; kept as failed",
            d422="The payload cannot be mapped to an oms event (`invalid_payload`; "
            "`unmapped_line`: a line without a usable SKU or mapping; `unknown_sku`: a SKU no "
            "warehouse stocks); kept as failed",
            d503="The connector is disabled (`connector_disabled`), or the database is down",
            bearer=False,
        ),
    },
    openapi_extra=_INBOUND_OPENAPI,
)
async def receive_webhook(
    connector_name: Annotated[str, Path(max_length=48)],
    request: Request,
    session: Session,
) -> Response:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    reply = await service.receive(
        session,
        connector_name=connector_name,
        body=body,
        headers=headers,
        tolerance_s=request.app.state.settings.webhook_tolerance_s,
        request_id=request_id_var.get(),
        path=request.url.path,
        apply=intake.apply_event,
    )
    return JSONResponse(
        reply.body,
        status_code=reply.status,
        media_type=PROBLEM_JSON if reply.problem else "application/json",
    )


# ---- connectors ---------------------------------------------------------------------------


def _connector_read(connector: Connector) -> dict[str, Any]:
    return {
        "id": connector.id,
        "name": connector.name,
        "channel": connector.channel,
        "format": ConnectorFormat(connector.format),
        "enabled": connector.enabled,
        "description": connector.description,
        "sku_map": connector.sku_map or {},
        "webhook_url": service.WEBHOOK_PATH.format(name=connector.name),
        "created_at": connector.created_at,
        "updated_at": connector.updated_at,
    }


@router.post(
    "/connectors",
    status_code=201,
    response_model=ConnectorCreated,
    summary="Configure a connector that posts webhooks to oms",
    description=(
        "A connector has a URL-safe `name` (its webhook URL is `/v1/webhooks/inbound/{name}`), "
        "the sales `channel` its orders belong to, a payload `format` and a signing `secret`. "
        "The secret is write-only: it is returned only when oms generated it (format `oms`)."
    ),
    responses=problems(409, *AUTH_PROBLEMS, d409="A connector with this name exists"),
)
async def create_connector(
    data: ConnectorCreate, session: Session, _: Admin, response: Response
) -> ConnectorCreated:
    connector, secret = await service.create_connector(session, data=data)
    response.headers["Location"] = f"/v1/connectors/{connector.name}"
    return ConnectorCreated(**_connector_read(connector), secret=secret)


@router.get(
    "/connectors",
    response_model=list[ConnectorRead],
    summary="List connectors (never their secrets)",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_connectors(session: Session, _: Admin) -> list[ConnectorRead]:
    return [ConnectorRead(**_connector_read(c)) for c in await service.list_connectors(session)]


@router.get(
    "/connectors/{name}",
    response_model=ConnectorRead,
    summary="Get a connector",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_connector(name: ConnectorName, session: Session, _: Admin) -> ConnectorRead:
    return ConnectorRead(**_connector_read(await service.get_connector(session, name=name)))


@router.patch(
    "/connectors/{name}",
    response_model=ConnectorRead,
    summary="Change a connector (channel, format, secret, enabled, SKU map)",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def update_connector(
    name: ConnectorName, data: ConnectorUpdate, session: Session, _: Admin
) -> ConnectorRead:
    connector = await service.update_connector(session, name=name, data=data)
    return ConnectorRead(**_connector_read(connector))


@router.delete(
    "/connectors/{name}",
    status_code=204,
    summary="Delete a connector (its inbox history is kept)",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_connector(name: ConnectorName, session: Session, _: Admin) -> Response:
    await service.delete_connector(session, name=name)
    return Response(status_code=204)


# ---- inbox --------------------------------------------------------------------------------


def _inbox_read(row: InboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "connector": row.connector_name,
        "event_id": row.event_id,
        "topic": row.topic,
        "type": row.type,
        "status": InboxStatus(row.status),
        "channel": row.channel,
        "external_reference": row.external_reference,
        "order_id": row.order_id,
        "error_code": row.error_code,
        "error": row.error,
        "response_status": row.response_status,
        "attempts": row.attempts,
        "received_at": row.received_at,
        "processed_at": row.processed_at,
        "updated_at": row.updated_at,
    }


def _inbox_detail(row: InboxMessage) -> InboxMessageDetail:
    return InboxMessageDetail(
        **_inbox_read(row),
        headers=row.headers,
        body=bytes(row.body).decode("utf-8", "replace"),
        response_body=row.response_body,
    )


@router.get(
    "/webhooks/inbox",
    response_model=InboxPage,
    summary="List inbound deliveries (failed, pending, ...)",
    description=(
        "Every authentic delivery, newest first. `status=failed` lists what could not be "
        "processed (with the reason); `status=pending` lists events still waiting for their "
        "order."
    ),
    responses=problems(400, *AUTH_PROBLEMS),
)
async def list_inbox(
    session: Session,
    _: Admin,
    status: Annotated[list[InboxStatus] | None, Query(description="Repeatable")] = None,
    connector: Annotated[str | None, Query(max_length=48)] = None,
    type: Annotated[str | None, Query(max_length=32, examples=["payment.captured"])] = None,
    external_reference: Annotated[str | None, Query(max_length=128)] = None,
    order_id: uuid.UUID | None = None,
    received_from: Annotated[
        Timestamp | None, Query(description=f"Inclusive; {TIMESTAMP_RULE}")
    ] = None,
    received_to: Annotated[
        Timestamp | None, Query(description=f"Exclusive; {TIMESTAMP_RULE}")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: IdCursor = None,
) -> InboxPage:
    rows, next_cursor = await service.list_inbox(
        session,
        filters=service.InboxFilter(
            status=[s.value for s in status] if status else None,
            connector=connector,
            type=type,
            external_reference=external_reference,
            order_id=order_id,
            received_from=received_from,
            received_to=received_to,
        ),
        limit=limit,
        cursor=cursor,
    )
    return InboxPage(
        items=[InboxMessageRead(**_inbox_read(r)) for r in rows], next_cursor=next_cursor
    )


@router.get(
    "/webhooks/inbox/{inbox_id}",
    response_model=InboxMessageDetail,
    summary="Get one inbound delivery with its raw body and headers",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_inbox_message(inbox_id: BigId, session: Session, _: Admin) -> InboxMessageDetail:
    return _inbox_detail(await service.get_inbox_message(session, inbox_id=inbox_id))


@router.post(
    "/webhooks/inbox/{inbox_id}/replay",
    response_model=InboxMessageDetail,
    summary="Process a failed or pending delivery again",
    description=(
        "Runs the stored raw payload through the connector's current adapter and settings (use "
        "after fixing the connector, stock, or the code). The signature is not checked again. "
        "The outcome is in `status`, `error_code` and `response_body`."
    ),
    responses=problems(
        404, 409, *AUTH_PROBLEMS, d409="Already processed, or its connector was deleted"
    ),
)
async def replay_inbox_message(inbox_id: BigId, session: Session, _: Admin) -> InboxMessageDetail:
    row = await service.replay(
        session, inbox_id=inbox_id, request_id=request_id_var.get(), apply=intake.apply_event
    )
    return _inbox_detail(row)
