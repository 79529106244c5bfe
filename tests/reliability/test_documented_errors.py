"""Every error status documented in the committed OpenAPI document is reachable.

For each operation and each documented status >= 400 there is a request that produces it:
generic rules cover what every operation shares (401 without a key, 403 with a connector key,
413/415/400 for bodies, 422 for an invalid parameter or body, 503 with the database down), and a
table covers the rest (404 with a valid body, every 409, special cases). A static test checks
that the rules and the table cover the whole document, so a newly documented status needs a
trigger here, and one that cannot happen must be removed from the document. While the error
requests run, no table changes (errors store nothing), except the inbound webhook inbox, which
keeps failed deliveries by design.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.config import Settings
from oms.main import RAW_BODY_PREFIXES, create_app
from tests.helpers import order_body
from tests.reliability.conftest import World, inbound_order, signed

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
DOC: dict[str, Any] = json.loads(OPENAPI.read_text())
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    (method.upper(), path): op for path, item in DOC["paths"].items() for method, op in item.items()
}
BODY_METHODS = {"POST", "PUT", "PATCH"}
MISSING_UUID = "00000000-0000-4000-8000-000000000000"
MISSING_INT = str(2**62)


@dataclass
class Call:
    """One request and the answer it must get."""

    method: str
    template: str  # the operation's path as in the OpenAPI document
    status: int
    path: str  # with {placeholders} filled from World.named
    code: str | None = None  # the problem's stable code, when it is specific
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    role: str | None = "admin"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.method, self.template, self.status)


def _documented() -> set[tuple[str, str, int]]:
    return {
        (method, path, int(status))
        for (method, path), op in OPERATIONS.items()
        for status in op["responses"]
        if int(status) >= 400
    }


def _secured(op: dict[str, Any]) -> bool:
    return bool(op.get("security"))


def _json_body(method: str, path: str, op: dict[str, Any]) -> bool:
    return "requestBody" in op and not path.startswith(RAW_BODY_PREFIXES)


# ---- generic rules ------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(DOC["components"]["schemas"][ref.rsplit("/", 1)[1]])
    if "anyOf" in schema:
        return _resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"))
    return schema


def invalid_value(schema: dict[str, Any]) -> str | None:
    """A string that fails the parameter schema, or None for an unconstrained string."""
    s = _resolve(schema)
    if "enum" in s:
        return "not-a-member"
    fmt = s.get("format")
    if fmt in {"uuid", "date-time", "date", "email"}:
        return f"not-a-{fmt}"
    kind = s.get("type")
    if kind in {"integer", "number"}:
        return str(int(s["maximum"]) + 1) if "maximum" in s else "x"
    if kind == "boolean":
        return "maybe"
    if kind == "array":
        return invalid_value(s["items"])
    if "maxLength" in s:
        return "x" * (int(s["maxLength"]) + 1)
    if "pattern" in s:
        return next(c for c in ("!", " x", "-x", "X!") if not re.search(s["pattern"], c))
    return None


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(values[m.group(1)], safe=""), path)


def _real_params(world: World, op: dict[str, Any]) -> dict[str, str]:
    """A real value for every path parameter (so the request gets past routing and lookups)."""
    out = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            out[p["name"]] = world.ids[p["name"]][0]
    return out


def _missing_value(schema: dict[str, Any]) -> str:
    s = _resolve(schema)
    if "enum" in s:
        return str(s["enum"][0])
    if s.get("format") == "uuid":
        return MISSING_UUID
    if s.get("type") == "integer":
        return MISSING_INT
    return "nope-404"


def generic_calls(world: World) -> list[Call]:
    """Calls from the rules that hold for every operation."""
    calls: list[Call] = []
    max_body = Settings().max_body_bytes
    for (method, template), op in OPERATIONS.items():
        statuses = {int(s) for s in op["responses"]}
        real = _fill(template, _real_params(world, op))
        if 401 in statuses and _secured(op):
            calls.append(Call(method, template, 401, real, "missing_api_key", role=None))
        if 403 in statuses and _secured(op):
            calls.append(Call(method, template, 403, real, "role_not_allowed", role="connector"))
        if method in BODY_METHODS:
            if 413 in statuses:
                big = b"[" + b"0," * (max_body // 2) + b"0]"
                calls.append(
                    Call(
                        method,
                        template,
                        413,
                        real,
                        "body_too_large",
                        content=big,
                        headers={"content-type": "application/json"},
                    )
                )
            if 415 in statuses:
                calls.append(
                    Call(
                        method,
                        template,
                        415,
                        real,
                        "unsupported_media_type",
                        content=b"to=paid",
                        headers={"content-type": "application/x-www-form-urlencoded"},
                    )
                )
        if 400 in statuses and _json_body(method, template, op):
            calls.append(
                Call(
                    method,
                    template,
                    400,
                    real,
                    "malformed_json",
                    content=b'{"to": ',
                    headers={"content-type": "application/json"},
                )
            )
        if 422 in statuses:
            if _json_body(method, template, op):
                calls.append(Call(method, template, 422, real, "validation_error", json=[]))
            else:
                for p in op.get("parameters", []):
                    bad = invalid_value(p["schema"])
                    if bad is None:
                        continue
                    if p["in"] == "path":
                        path = _fill(template, _real_params(world, op) | {p["name"]: bad})
                        calls.append(Call(method, template, 422, path, "validation_error"))
                    elif p["in"] == "query":
                        calls.append(
                            Call(
                                method,
                                template,
                                422,
                                real,
                                "validation_error",
                                params={p["name"]: bad},
                            )
                        )
                    else:
                        continue
                    break
        if 404 in statuses and not _json_body(method, template, op) and "{" in template:
            missing = {
                p["name"]: _missing_value(p["schema"])
                for p in op.get("parameters", [])
                if p["in"] == "path"
            }
            calls.append(Call(method, template, 404, _fill(template, missing)))
    return calls


# ---- the table: what no rule covers -------------------------------------------------------------

_ORDER = "/v1/orders/{order_id}"
_RET = "/v1/returns/{return_id}"
_INBOUND = "/v1/webhooks/inbound/{connector_name}"
_PAYMENT = {
    "method": "card",
    "provider": "stripe",
    "provider_reference": "pi_x",
    "amount": 100,
    "currency": "EUR",
    "status": "captured",
}
_ADDRESS = order_body()["shipping_address"]
_NO_STOCK_LINE = [{"sku": "NO-STOCK-1", "quantity": 1, "unit_price": 100}]


def _shipment_changes(n: dict[str, str], m: str) -> list[Call]:
    """Exceptions, moves, splits, merges: 404 for a missing shipment (valid bodies), 409 for
    a shipment of a delivered order."""
    done = n["shipment_delivered"]
    bodies = {
        "exceptions": {
            "lines": [{"order_line_id": n["order_line"], "quantity": 1, "reason": "not_found"}]
        },
        "move": {"warehouse": "BER"},
        "split": {"lines": [{"order_line_id": n["order_line"], "quantity": 1}]},
        "merge": {"shipment_id": n["shipment_pending"]},
    }
    calls = []
    for action, body in bodies.items():
        template = f"/v1/shipments/{{shipment_id}}/{action}"
        calls.append(
            Call("POST", template, 404, f"/v1/shipments/{m}/{action}", "shipment_not_found", body)
        )
        calls.append(
            Call(
                "POST",
                template,
                409,
                f"/v1/shipments/{done}/{action}",
                "shipment_change_not_allowed",
                body,
            )
        )
    return calls


def _holds(n: dict[str, str], m: str) -> list[Call]:
    """Holds: 404 for a missing order or hold, 409 on a delivered order or a released hold."""
    hold, release = f"{_ORDER}/holds", f"{_ORDER}/holds/{{hold_id}}/release"
    body = {"reason": "other"}
    return [
        Call("POST", hold, 404, f"/v1/orders/{m}/holds", "order_not_found", body),
        Call("POST", hold, 409, f"/v1/orders/{n['order_delivered']}/holds", "order_closed", body),
        Call(
            "POST",
            release,
            404,
            f"/v1/orders/{n['order_paid']}/holds/{m}/release",
            "hold_not_found",
            {},
        ),
        Call(
            "POST",
            release,
            409,
            f"/v1/orders/{n['order_paid']}/holds/{n['hold_released']}/release",
            "hold_already_released",
            {},
        ),
    ]


def _purchasing(n: dict[str, str], m: str) -> list[Call]:
    """#18: calendars, suppliers, purchase orders, reorder policies: 404 with valid bodies,
    409 for a supplier that exists, a purchase order sent or cancelled."""
    po, lines = "/v1/purchase-orders", [{"sku": "MUG-01", "quantity": 1}]
    receipt = {"reference": "R", "lines": lines}
    policy = {"supplier": "ACME"}
    calendar = {"timezone": "UTC", "cutoff": "14:00", "handling_days": 1}
    return [
        Call(
            "PUT",
            "/v1/warehouses/{code}/calendar",
            404,
            "/v1/warehouses/NOPE/calendar",
            "warehouse_not_found",
            calendar,
        ),
        Call(
            "POST",
            "/v1/suppliers",
            409,
            "/v1/suppliers",
            "supplier_exists",
            {"code": "ACME", "name": "again", "lead_time_days": 1},
        ),
        Call(
            "PATCH",
            "/v1/suppliers/{code}",
            404,
            "/v1/suppliers/NOPE",
            "supplier_not_found",
            {"lead_time_days": 1},
        ),
        Call(
            "POST",
            po,
            404,
            po,
            "supplier_not_found",
            {"supplier": "NOPE", "warehouse": "BER", "lines": lines},
        ),
        Call("GET", po, 404, po, "supplier_not_found", params={"supplier": "NOPE"}),
        Call(
            "GET",
            "/v1/reorder-suggestions",
            404,
            "/v1/reorder-suggestions",
            "warehouse_not_found",
            params={"warehouse": "NOPE"},
        ),
        Call("POST", f"{po}/{{po_id}}/send", 404, f"{po}/{m}/send", "purchase_order_not_found", {}),
        Call(
            "POST",
            f"{po}/{{po_id}}/send",
            409,
            f"{po}/{n['po_sent']}/send",
            "illegal_purchase_order_transition",
            {},
        ),
        Call("POST", f"{po}/{{po_id}}/cancel", 404, f"{po}/{m}/cancel", "purchase_order_not_found"),
        Call(
            "POST",
            f"{po}/{{po_id}}/cancel",
            409,
            f"{po}/{n['po_cancelled']}/cancel",
            "illegal_purchase_order_transition",
        ),
        Call(
            "POST",
            f"{po}/{{po_id}}/receipts",
            404,
            f"{po}/{m}/receipts",
            "purchase_order_not_found",
            receipt,
        ),
        Call(
            "POST",
            f"{po}/{{po_id}}/receipts",
            409,
            f"{po}/{n['po_cancelled']}/receipts",
            "illegal_purchase_order_transition",
            receipt,
            role="fulfillment",
        ),
        Call(
            "PUT",
            "/v1/reorder-policies/{warehouse}",
            404,
            "/v1/reorder-policies/NOPE",
            "warehouse_not_found",
            policy,
        ),
        Call(
            "PUT",
            "/v1/reorder-policies/{warehouse}/{sku}",
            404,
            "/v1/reorder-policies/NOPE/MUG-01",
            "warehouse_not_found",
            policy,
        ),
    ]


def _stores(n: dict[str, str], m: str) -> list[Call]:
    """#19: pickups of a missing shipment, or of one that ships (``shipment_pending``); store
    terms, transfers and till sales of a missing store; a cancelled transfer moved again; a
    known till receipt with other content; a missing key scoped."""
    pick, tr = "/v1/pickups/{shipment_id}", "/v1/transfers/{transfer_id}"
    ship, gone = n["shipment_pending"], n["transfer_cancelled"]
    line = {"sku": "MUG-01", "quantity": 1}
    till_line = {**line, "unit_price": 1, "tax_rate_bps": 0}
    sale = {"receipt_id": "W-1", "currency": "EUR", "lines": [till_line]}
    policy = {"pickup_window_hours": 24, "uncollected_action": "cancel"}
    return [
        Call("POST", f"{pick}/ready", 404, f"/v1/pickups/{m}/ready", "shipment_not_found"),
        Call("POST", f"{pick}/ready", 409, f"/v1/pickups/{ship}/ready", "not_a_pickup"),
        Call("POST", f"{pick}/collect", 404, f"/v1/pickups/{m}/collect", None, {"code": "1"}),
        Call(
            "POST",
            f"{pick}/collect",
            409,
            f"/v1/pickups/{ship}/collect",
            "pickup_not_ready",
            {"code": "1"},
        ),
        Call("POST", f"{pick}/code", 404, f"/v1/pickups/{m}/code", "shipment_not_found"),
        Call("POST", f"{pick}/code", 409, f"/v1/pickups/{ship}/code", "pickup_not_ready"),
        Call("GET", pick, 404, f"/v1/pickups/{m}", "pickup_not_found"),
        Call("GET", "/v1/stores/{code}/policy", 404, "/v1/stores/NOPE/policy"),
        Call("PUT", "/v1/stores/{code}/policy", 404, "/v1/stores/NOPE/policy", None, policy),
        Call(
            "POST",
            "/v1/transfers",
            404,
            "/v1/transfers",
            "warehouse_not_found",
            {"from_warehouse": "NOPE", "to_warehouse": "BER", "lines": [line]},
        ),
        Call("GET", "/v1/transfers", 404, "/v1/transfers", None, params={"warehouse": "NOPE"}),
        Call("GET", tr, 404, f"/v1/transfers/{m}", "transfer_not_found"),
        Call("POST", f"{tr}/ship", 404, f"/v1/transfers/{m}/ship", "transfer_not_found"),
        Call(
            "POST", f"{tr}/ship", 409, f"/v1/transfers/{gone}/ship", "illegal_transfer_transition"
        ),
        Call(
            "POST",
            f"{tr}/receive",
            404,
            f"/v1/transfers/{m}/receive",
            "transfer_not_found",
            {"lines": [line]},
        ),
        Call(
            "POST",
            f"{tr}/receive",
            409,
            f"/v1/transfers/{gone}/receive",
            "illegal_transfer_transition",
            {"lines": [line]},
        ),
        Call("POST", f"{tr}/cancel", 404, f"/v1/transfers/{m}/cancel", "transfer_not_found"),
        Call(
            "POST",
            f"{tr}/cancel",
            409,
            f"/v1/transfers/{gone}/cancel",
            "illegal_transfer_transition",
        ),
        Call("POST", "/v1/stores/{code}/sales", 404, "/v1/stores/NOPE/sales", None, sale),
        Call(
            "POST",
            "/v1/stores/{code}/sales",
            409,
            "/v1/stores/BER/sales",
            "receipt_conflict",
            {**sale, "receipt_id": "W-1"},
        ),
        Call(
            "POST",
            "/v1/stores/{code}/sales/batch",
            404,
            "/v1/stores/NOPE/sales/batch",
            None,
            {"sales": [sale]},
        ),
        Call(
            "PUT",
            "/v1/api-keys/{key_id}/warehouses",
            404,
            f"/v1/api-keys/{m}/warehouses",
            "api_key_not_found",
            {"warehouses": ["BER"]},
        ),
    ]


def _messages(n: dict[str, str], m: str) -> list[Call]:
    """#22: a preview of a missing order, an expired tracking link."""
    preview = {"order_id": m, "event_type": "order.placed", "channel": "email"}
    expired = f"/v1/tracking/{n['tracking_expired']}"
    return [
        Call(
            "POST", "/v1/messages/preview", 404, "/v1/messages/preview", "order_not_found", preview
        ),
        Call("GET", "/v1/tracking/{token}", 410, expired, "tracking_link_expired", role=None),
    ]


def _waves() -> list[Call]:
    """#20: a wave of a channel without an enabled wave policy."""
    return [
        Call("POST", "/v1/waves", 404, "/v1/waves", "wave_policy_not_found", {"channel": "nope"}),
    ]


def table(world: World) -> list[Call]:
    n = world.named
    m = MISSING_UUID
    line = {"order_line_id": n["order_line"], "quantity": 1, "reason_code": "damaged"}
    receipt = {"lines": [{"return_line_id": n["return_line"], "restock": 1}]}
    calls = [
        # -- 404 on operations with a body: a valid body, a resource that does not exist
        Call(
            "POST",
            f"{_ORDER}/transitions",
            404,
            f"/v1/orders/{m}/transitions",
            "order_not_found",
            {"to": "paid"},
        ),  # noqa: E501
        Call("POST", f"{_ORDER}/reroute", 404, f"/v1/orders/{m}/reroute", "order_not_found", {}),
        *_holds(n, m),
        Call(
            "POST",
            f"{_ORDER}/edits",
            404,
            f"/v1/orders/{m}/edits",
            "order_not_found",
            {"expected_version": 1, "remove_lines": [m]},
        ),
        Call(
            "POST",
            f"{_ORDER}/cancel-lines",
            404,
            f"/v1/orders/{m}/cancel-lines",
            "order_not_found",
            {"lines": [{"line_id": m, "quantity": 1}]},
        ),
        Call(
            "POST",
            f"{_ORDER}/edits",
            409,
            f"/v1/orders/{n['order_delivered']}/edits",
            "version_conflict",
            {"expected_version": 1, "remove_lines": [m]},
        ),
        Call(
            "POST",
            f"{_ORDER}/cancel-lines",
            409,
            f"/v1/orders/{n['order_delivered']}/cancel-lines",
            "units_not_editable",
            {"lines": [{"line_id": n["order_line"], "quantity": 1}]},
        ),
        Call(
            "POST",
            "/v1/routing/preview",
            404,
            "/v1/routing/preview",
            None,
            {
                "channel": "web",
                "shipping_address": _ADDRESS,
                "lines": [{"sku": "MUG-01", "quantity": 1}],
                "pickup_store": "NOPE",
            },
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/shipments/{shipment_id}/transitions",
            404,
            f"/v1/shipments/{m}/transitions",
            "shipment_not_found",
            {"to": "picked"},
        ),  # noqa: E501
        *_shipment_changes(n, m),
        *_purchasing(n, m),
        *_stores(n, m),
        *_messages(n, m),
        *_waves(),
        Call(
            "PATCH",
            "/v1/warehouses/{code}",
            404,
            "/v1/warehouses/NOPE",
            "warehouse_not_found",
            {"name": "x"},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/inventory/adjustments",
            404,
            "/v1/inventory/adjustments",
            "warehouse_not_found",
            {"warehouse": "NOPE", "sku": "A", "type": "receive", "quantity": 1},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/inventory/adjustments",
            404,
            "/v1/inventory/adjustments",
            "sku_not_found",
            {
                "warehouse": "BER",
                "sku": "NEVER-STOCKED",
                "type": "correct",
                "quantity": 1,
                "reason": "x",
            },
        ),  # noqa: E501
        Call(
            "PATCH",
            "/v1/inventory/levels/{warehouse}/{sku}",
            404,
            "/v1/inventory/levels/BER/NEVER-STOCKED",
            "sku_not_found",
            {"safety_stock": 1},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/inventory/incoming",
            404,
            "/v1/inventory/incoming",
            "warehouse_not_found",
            {"warehouse": "NOPE", "sku": "A", "quantity": 1, "expected_on": "2030-01-01"},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/payments",
            404,
            f"/v1/orders/{m}/payments",
            "order_not_found",
            _PAYMENT,
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/payments/{payment_id}/capture",
            404,
            f"/v1/payments/{m}/capture",
            "payment_not_found",
            {},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/refunds",
            404,
            f"/v1/orders/{m}/refunds",
            "order_not_found",
            {"amount": 1, "reason": "x"},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/returns",
            404,
            f"/v1/orders/{m}/returns",
            "order_not_found",
            {"lines": [line]},
        ),  # noqa: E501
        Call(
            "POST", f"{_RET}/receive", 404, f"/v1/returns/{m}/receive", "return_not_found", receipt
        ),  # noqa: E501
        Call(
            "PATCH",
            "/v1/connectors/{name}",
            404,
            "/v1/connectors/nope",
            "connector_not_found",
            {"enabled": True},
        ),  # noqa: E501
        Call(
            "PATCH",
            "/v1/webhooks/subscriptions/{subscription_id}",
            404,
            f"/v1/webhooks/subscriptions/{m}",
            "subscription_not_found",
            {"enabled": True},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/webhooks/subscriptions/{subscription_id}/redeliver",
            404,
            f"/v1/webhooks/subscriptions/{m}/redeliver",
            "subscription_not_found",
            {"since": "2020-01-01T00:00:00Z"},
        ),  # noqa: E501
        Call(
            "POST",
            _INBOUND,
            404,
            "/v1/webhooks/inbound/nope",
            "connector_not_found",
            content=b"{}",
            role=None,
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/orders",
            404,
            "/v1/orders",
            "warehouse_not_found",
            order_body(pickup_store="NOPE"),
        ),
        # -- 409: conflicts with the current state
        Call(
            "POST",
            "/v1/orders",
            409,
            "/v1/orders",
            "insufficient_stock",
            order_body(lines=_NO_STOCK_LINE),
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/transitions",
            409,
            f"/v1/orders/{n['order_delivered']}/transitions",
            "illegal_transition",
            {"to": "cancelled"},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/reroute",
            409,
            f"/v1/orders/{n['order_delivered']}/reroute",
            "reroute_not_allowed",
            {},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/shipments/{shipment_id}/transitions",
            409,
            f"/v1/shipments/{n['shipment_pending']}/transitions",
            "illegal_shipment_transition",
            {"to": "shipped", "carrier": "DHL", "tracking_number": "1"},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/warehouses",
            409,
            "/v1/warehouses",
            "warehouse_exists",
            {"code": "BER", "name": "again", "country": "DE"},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/inventory/adjustments",
            409,
            "/v1/inventory/adjustments",
            "count_guard_mismatch",
            {
                "warehouse": "BER",
                "sku": "MUG-01",
                "type": "count",
                "quantity": 5,
                "expected_on_hand": 1,
            },
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/inventory/bulk",
            409,
            "/v1/inventory/bulk",
            "below_reserved",
            {"rows": [{"warehouse": "BER", "sku": "TSHIRT-RED-M", "on_hand": 0}]},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/payments",
            409,
            f"/v1/orders/{n['order_placed']}/payments",
            "overpayment",
            _PAYMENT | {"amount": 10**9},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/payments/{payment_id}/capture",
            409,
            f"/v1/payments/{n['payment_authorized']}/capture",
            "capture_exceeds_authorization",
            {"amount": 10**6},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/refunds",
            409,
            f"/v1/orders/{n['order_placed']}/refunds",
            "refund_exceeds_captured",
            {"amount": 10**6, "reason": "x"},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_ORDER}/returns",
            409,
            f"/v1/orders/{n['order_placed']}/returns",
            "order_not_delivered",
            {"lines": [line]},
        ),  # noqa: E501
        Call(
            "POST",
            f"{_RET}/approve",
            409,
            f"/v1/returns/{n['return_approved']}/approve",
            "illegal_return_transition",
        ),  # noqa: E501
        Call(
            "POST",
            f"{_RET}/reject",
            409,
            f"/v1/returns/{n['return_approved']}/reject",
            "illegal_return_transition",
        ),  # noqa: E501
        Call(
            "POST",
            f"{_RET}/receive",
            409,
            f"/v1/returns/{n['return_requested']}/receive",
            "illegal_return_transition",
            receipt,
        ),  # noqa: E501
        Call(
            "POST",
            f"{_RET}/close",
            409,
            f"/v1/returns/{n['return_requested']}/close",
            "illegal_return_transition",
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/connectors",
            409,
            "/v1/connectors",
            "connector_exists",
            {"name": "shop", "channel": "web", "format": "oms"},
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/webhooks/inbox/{inbox_id}/replay",
            409,
            f"/v1/webhooks/inbox/{n['inbox_processed']}/replay",
            "inbox_not_replayable",
        ),  # noqa: E501
        Call(
            "POST",
            "/v1/webhooks/deliveries/{delivery_id}/redeliver",
            409,
            f"/v1/webhooks/deliveries/{n['delivery_sending']}/redeliver",
            "delivery_in_progress",
        ),  # noqa: E501
        # -- 400: a cursor that is not one of ours
        Call("GET", "/v1/orders", 400, "/v1/orders", "invalid_cursor", params={"cursor": "!!"}),
        Call(
            "GET",
            "/v1/customers/{customer_id}/orders",
            400,
            "/v1/customers/cus_1/orders",
            "invalid_cursor",
            params={"cursor": "!!"},
        ),  # noqa: E501
        Call(
            "GET",
            "/v1/webhooks/inbox",
            400,
            "/v1/webhooks/inbox",
            "invalid_cursor",
            params={"cursor": "x"},
        ),  # noqa: E501
        Call(
            "GET",
            "/v1/webhooks/deliveries",
            400,
            "/v1/webhooks/deliveries",
            "invalid_cursor",
            params={"cursor": "x"},
        ),  # noqa: E501
    ]
    # -- the inbound webhook endpoint: authenticated by signature, not by an API key
    secret, name = n["connector_secret"], f"/v1/webhooks/inbound/{n['connector']}"

    def inbound(status: int, code: str | None, body: bytes, msg: str, **kw: Any) -> Call:
        return Call(
            "POST",
            _INBOUND,
            status,
            name,
            code,
            content=body,
            headers=signed(secret, body, msg),
            role=None,
            **kw,
        )

    calls += [
        Call("POST", _INBOUND, 401, name, None, content=b"{}", role=None),
        inbound(400, None, b"{not json", "msg_e400"),
        inbound(422, None, b'{"type": "order.teleported", "data": {}}', "msg_e422"),
        inbound(
            409, "insufficient_stock", inbound_order("SHOP-E409", sku="NO-STOCK-2"), "msg_e409"
        ),  # noqa: E501
    ]
    return calls


# ---- tests --------------------------------------------------------------------------------------


def _covered(world: World) -> set[tuple[str, str, int]]:
    keys = {c.key for c in generic_calls(world) + table(world)}
    keys |= {(m, p, 503) for (m, p), op in OPERATIONS.items() if "503" in op["responses"]}
    return keys


def _fake_world() -> World:
    """Stand-ins for every id, to compute the calls without a database (static check)."""
    names = {
        p["name"]
        for op in OPERATIONS.values()
        for p in op.get("parameters", [])
        if p["in"] == "path"
    }
    keys = dict.fromkeys(
        ("admin", "storefront", "fulfillment", "connector", "storefront_web"), "oms_x_y"
    )
    named = {
        k: str(uuid.uuid4())
        for k in (
            "order_placed order_paid order_delivered shipment_pending payment_authorized "
            "hold_released "
            "shipment_delivered "
            "order_line return_requested return_approved return_line subscription supply"
            " po_sent po_cancelled tracking_expired transfer_cancelled"
        ).split()
    }
    named |= {
        "connector": "shop",
        "connector_secret": "whsec_" + "A" * 32,
        "inbox_processed": "1",
        "inbox_failed": "2",
        "delivery": "1",
        "delivery_sending": "2",
    }
    return World(keys=keys, named=named, ids={n: ["1"] for n in names})


def test_every_documented_error_has_a_trigger() -> None:
    """A status documented without a way to produce it is either missing here or a doc bug."""
    missing = sorted(_documented() - _covered(_fake_world()))
    assert not missing, "documented but never produced (add a trigger or fix the docs): " + str(
        missing
    )
    undocumented = sorted(
        k for k in {c.key for c in table(_fake_world())} if k not in _documented()
    )
    assert not undocumented, f"the table produces undocumented statuses: {undocumented}"


async def _snapshot(engine: AsyncEngine) -> dict[str, str]:
    """A digest of every row of every table (but the inbox, which keeps failed deliveries)."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                    "AND tablename NOT IN ('alembic_version', 'webhook_inbox')"
                )
            )
        ).scalars()
        digests = {}
        for t in tables:
            rows = "coalesce(string_agg(t::text, '|' ORDER BY t::text), '')"
            sql = f'SELECT md5({rows}) FROM "{t}" t'
            digests[t] = str((await conn.execute(text(sql))).scalar_one())
        return digests


async def _send(client: httpx.AsyncClient, world: World, call: Call) -> httpx.Response:
    headers = dict(call.headers)
    if call.role is not None:
        headers |= world.headers(call.role)
    return await client.request(
        call.method,
        call.path,
        params=call.params or None,
        json=call.json if call.content is None and call.json is not None else None,
        content=call.content,
        headers=headers,
    )


async def test_documented_errors_are_reachable(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """Each generic and table call gets its status (and code) as problem+json, storing nothing."""
    calls = generic_calls(world) + table(world)
    before = await _snapshot(engine)
    wrong = []
    for call in calls:
        resp = await _send(client, world, call)
        problem = (
            resp.json() if resp.headers.get("content-type") == "application/problem+json" else {}
        )
        if resp.status_code != call.status or (call.code and problem.get("code") != call.code):
            wrong.append(
                (call.method, call.path, call.status, call.code, resp.status_code, resp.text[:300])
            )
        elif resp.status_code >= 400 and not call.template.startswith(RAW_BODY_PREFIXES):
            assert problem["status"] == call.status, resp.text
    assert not wrong, "\n".join(map(str, wrong))
    assert await _snapshot(engine) == before, "an error response changed stored data"


@pytest.fixture
async def down_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app with its database gone: a Unix socket directory that does not exist."""
    url = "postgresql+asyncpg://postgres@/oms?host=/nonexistent/oms-down"
    down: FastAPI = create_app(Settings(database_url=url, db_connect_timeout_s=2))
    async with down.router.lifespan_context(down):
        transport = httpx.ASGITransport(app=down)
        async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as c:
            yield c


async def test_every_operation_answers_503_when_the_database_is_down(
    down_client: httpx.AsyncClient,
) -> None:
    fake = _fake_world()
    fake.keys["admin"] = "oms_abcdef_secret"
    wrong = []
    for (method, template), op in OPERATIONS.items():
        if "503" not in op["responses"]:
            continue
        path = _fill(template, {k: v[0] for k, v in fake.ids.items()} | {"order_id": MISSING_UUID})
        body = b"{}" if method in BODY_METHODS else None
        resp = await down_client.request(
            method,
            path,
            content=body,
            headers=fake.headers() | ({"content-type": "application/json"} if body else {}),
        )
        ok = (
            resp.status_code == 503
            and resp.json().get("code") == "database_unavailable"
            and resp.headers.get("retry-after", "").isdigit()
        )
        if not ok:
            wrong.append((method, path, resp.status_code, resp.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))
