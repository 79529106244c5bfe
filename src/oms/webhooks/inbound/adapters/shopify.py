"""Shopify order webhooks (REST-format JSON payloads).

* Signature: ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body with the app's
  client secret. Dedup id: ``X-Shopify-Webhook-Id`` (the same on Shopify's retries).
* Replay: Shopify signs no timestamp. ``X-Shopify-Triggered-At`` (when present) must be at most
  48 hours old, because Shopify retries a failed delivery for hours with the original trigger
  time; the header is not covered by the HMAC, so this only stops stale replays of captured
  traffic. The real protection is deduplication by webhook id, by (channel, Shopify order id)
  for orders, and by payment reference for payments.
* Topics: ``orders/create`` -> order.created (and payment.captured when ``financial_status`` is
  ``paid``), ``orders/cancelled`` -> order.cancelled, ``orders/paid`` -> payment.captured,
  ``refunds/create`` -> payment.refunded, ``orders/updated`` -> order.updated (its lines and
  shipping address as they are now, applied as an edit where they differ; a line's
  ``current_quantity``, what is left after edits and removals, when Shopify sends it),
  ``orders/edited`` -> order.edited (the edit's ``line_items.additions``/``removals``: units
  added to or removed from line items, by line item id; applied as an edit of the lines that
  carry those ids); any other topic is acknowledged and ignored.
* Line ids: every oms line remembers its Shopify line item id (``external_line_id``), what
  ``orders/edited`` names. ``orders/edited`` carries no SKU or price, so a line item it adds is
  unknown to oms until ``orders/updated`` brings it: such an edit fails with the reason
  (422 ``unknown_line_items``), nothing applied; the ``orders/updated`` Shopify sends with it
  adds the line. Each order remembers the Shopify time of the latest update applied
  (``updated_at``; an edit's ``committed_at``): an older ``orders/updated`` arriving late, or an
  ``orders/edited`` whose change an ``orders/updated`` already brought, is not applied again.

Lines: the SKU comes from the connector's ``sku_map`` (``variant:<variant_id>``), else the
line's own ``sku``, else ``product:<product_id>`` in the map; a line with none of them is
refused (422 ``unmapped_line``), never given an invented SKU. Customers: Shopify's customer id,
the order's email and phone; a phone or point-of-sale order may have no email and no customer
(then it is a guest known by phone, or anonymous).

Money: ``price`` is the unit price before discounts; a line's discount allocations are taken off
and spread over its units exactly (see ``split_line``). With ``taxes_included`` the prices are
gross, so the oms tax rate is 0 and the fact is kept in ``attributes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from oms.webhooks.inbound.adapters.base import (
    EventType,
    InboundEvent,
    InvalidPayload,
    LineChange,
    PaymentFact,
    PlatformLine,
    body_hash_id,
    guest_customer,
    header,
    line_item_id,
    load_object,
    map_skus,
    payment_method,
    platform_id,
    platform_time,
    rate_to_bps,
    split_line,
    text,
)
from oms.webhooks.inbound.money import AmountError, to_decimal, to_minor
from oms.webhooks.inbound.verify import SignatureRejected, check_timestamp, verify_hmac_base64

RETRY_WINDOW = timedelta(hours=48)
HMAC_HEADER = "X-Shopify-Hmac-Sha256"


def _money(value: Any, currency: str, what: str) -> int:
    try:
        return to_minor(value, currency)
    except AmountError as exc:
        raise InvalidPayload(f"{what}: {exc}") from exc


def _address(order: dict[str, Any]) -> dict[str, Any]:
    addr = order.get("shipping_address") or order.get("billing_address")
    if not isinstance(addr, dict):
        raise InvalidPayload("the order has neither a shipping_address nor a billing_address")
    name = text(addr.get("name"), 200) or text(
        f"{addr.get('first_name') or ''} {addr.get('last_name') or ''}", 200
    )
    lines = [v for v in (text(addr.get("address1"), 200), text(addr.get("address2"), 200)) if v]
    out: dict[str, Any] = {
        "name": name,
        "lines": lines,
        "city": text(addr.get("city"), 128),
        "postal_code": text(addr.get("zip"), 32),
        "region": text(addr.get("province_code") or addr.get("province"), 128),
        "country": text(addr.get("country_code"), 2),
    }
    lat, lng = addr.get("latitude"), addr.get("longitude")
    if lat is not None and lng is not None:
        out["latitude"], out["longitude"] = float(to_decimal(lat)), float(to_decimal(lng))
    return out


def _quantity(item: dict[str, Any], *, current: bool) -> int:
    """The units of a line item: as ordered, or (``current``) what is left after edits and
    removals (``current_quantity``, when Shopify sends it)."""
    if current and item.get("current_quantity") is not None:
        return int(item["current_quantity"])
    return int(item["quantity"])


def _line(
    item: dict[str, Any], sku: str, currency: str, taxes_included: bool, *, current: bool = False
) -> list[dict[str, Any]]:
    quantity = _quantity(item, current=current)
    price = _money(item["price"], currency, f"line {sku} price")
    allocations = item.get("discount_allocations") or []
    if allocations:
        discount = sum(_money(a["amount"], currency, f"line {sku} discount") for a in allocations)
    else:
        discount = _money(item.get("total_discount") or "0", currency, f"line {sku} discount")
    rate = Decimal(0)
    if not taxes_included:
        rate = sum((to_decimal(t.get("rate") or 0) for t in item.get("tax_lines") or []), rate)
    return split_line(
        sku=sku,
        name=text(item.get("name") or item.get("title"), 200),
        quantity=quantity,
        net_total=price * quantity - discount,
        tax_rate_bps=rate_to_bps(rate),
    )


def _shipping_fee(order: dict[str, Any], currency: str) -> int:
    shop_money = ((order.get("total_shipping_price_set") or {}).get("shop_money") or {}).get(
        "amount"
    )
    if shop_money is not None:
        return _money(shop_money, currency, "total_shipping_price_set")
    return sum(
        _money(s.get("discounted_price") or s.get("price") or "0", currency, "shipping_lines")
        for s in order.get("shipping_lines") or []
    )


def map_order(order: dict[str, Any], sku_map: Mapping[str, str]) -> dict[str, Any]:
    """A Shopify order object -> an oms OrderCreate body (without ``channel``)."""
    return map_order_lines(order, sku_map)[0]


def map_order_lines(
    order: dict[str, Any], sku_map: Mapping[str, str], *, current: bool = False
) -> tuple[dict[str, Any], tuple[str | None, ...]]:
    """A Shopify order object -> an oms OrderCreate body (without ``channel``), and the line
    item id of each of its lines (``current``: the units left on each line item; line items
    with none left are not lines).

    Lines get their SKU by the connector's rule (``map_skus``: variant mapping, the line's own
    SKU, product mapping; else 422 ``unmapped_line``). The customer is its Shopify id, email and
    phone (``phone``, else the customer's): phone and point-of-sale orders may have no email or
    no customer at all, and an order with none of them is anonymous."""
    currency = text(order.get("currency"), 3)
    if currency is None:
        raise InvalidPayload("the order has no currency")
    currency = currency.upper()
    taxes_included = bool(order.get("taxes_included"))
    items = order.get("line_items")
    if not isinstance(items, list) or not items:
        raise InvalidPayload("the order has no line_items")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidPayload("every line item must be an object")
    if current:
        items = [item for item in items if _quantity(item, current=True) != 0]
        if not items:
            raise InvalidPayload("no line item has units left (current_quantity 0 everywhere)")
    skus = map_skus(
        [PlatformLine.read(i, item, variant_key="variant_id") for i, item in enumerate(items, 1)],
        sku_map,
    )
    lines: list[dict[str, Any]] = []
    line_ids: list[str | None] = []
    for item, sku in zip(items, skus, strict=True):
        mapped = _line(item, sku, currency, taxes_included, current=current)
        lines += mapped
        line_ids += [line_item_id(item.get("id"))] * len(mapped)
    raw_customer = order.get("customer")
    customer: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
    customer_id = customer.get("id")
    email = text(order.get("email") or order.get("contact_email") or customer.get("email"), 320)
    phone = text(order.get("phone") or customer.get("phone"), None)
    gateways = list(order.get("payment_gateway_names") or [])
    if order.get("gateway"):
        gateways.append(str(order["gateway"]))
    reference = platform_id(order.get("id"), "the order's id")
    attributes = {
        "source": "shopify",
        "source_order_id": reference,
        "source_order_name": order.get("name"),
        "source_total": str(order.get("total_price")),
        "financial_status": order.get("financial_status"),
        "taxes_included": taxes_included,
    }
    body = {
        "external_reference": reference,
        "currency": currency,
        "customer": guest_customer(
            str(customer_id) if customer_id is not None else None, email, phone
        ),
        "shipping_address": _address(order),
        "payment_method": payment_method(gateways),
        "shipping_fee": _shipping_fee(order, currency),
        "lines": lines,
        "notes": text(order.get("note"), 2000),
        "attributes": {k: v for k, v in attributes.items() if v is not None},
    }
    return body, tuple(line_ids)


def map_edit(payload: dict[str, Any]) -> InboundEvent:
    """An ``orders/edited`` body -> order.edited: the units added to and removed from line
    items (by line item id; ``delta`` > 0), the order it is about, when it was committed."""
    edit = payload.get("order_edit")
    if not isinstance(edit, dict):
        raise InvalidPayload("the orders/edited body has no order_edit object")
    reference = platform_id(edit.get("order_id"), "order_edit.order_id")
    items = edit.get("line_items") or {}
    if not isinstance(items, dict):
        raise InvalidPayload("order_edit.line_items must be an object")
    changes: list[LineChange] = []
    for key, sign in (("additions", 1), ("removals", -1)):
        entries = items.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidPayload(f"order_edit.line_items.{key} must be a list of objects")
        for entry in entries:
            line_id = line_item_id(entry.get("id"))
            delta = entry.get("delta")
            if line_id is None or isinstance(delta, bool) or not isinstance(delta, int):
                raise InvalidPayload(
                    f"order_edit.line_items.{key}: each change needs a line item id and an "
                    "integer delta"
                )
            if not 0 < delta <= 10_000:
                raise InvalidPayload(
                    f"order_edit.line_items.{key}: delta {delta} of line item {line_id} is not "
                    "between 1 and 10000"
                )
            changes.append(LineChange(line_id=line_id, delta=sign * delta))
    if not changes:
        return InboundEvent(type=None, ignored="the order edit changes no line items")
    return InboundEvent(
        type=EventType.ORDER_EDITED,
        external_reference=reference,
        line_changes=tuple(changes),
        channel_updated_at=platform_time(edit.get("committed_at"))
        or platform_time(edit.get("created_at")),
        edit_id=None if edit.get("id") is None else platform_id(edit["id"], "order_edit.id"),
    )


def _paid_reference(order: dict[str, Any]) -> str:
    return f"shopify:order:{platform_id(order.get('id'), 'the order id')}:paid"


_RISK_RANK = {"low": 1, "medium": 2, "high": 3}
_RECOMMENDATION = {"accept": "low", "investigate": "medium", "cancel": "high"}


def _risk_level(payload: dict[str, Any]) -> str | None:
    """The order's fraud risk (low/medium/high), when the payload carries one: the highest of
    ``risk.assessments[].riskLevel`` (as the Admin GraphQL API reports it) or of the legacy
    ``risks[].recommendation`` (accept/investigate/cancel); anything else is ignored."""
    levels: list[str] = []
    risk = payload.get("risk")
    if isinstance(risk, dict):
        for a in risk.get("assessments") or []:
            if isinstance(a, dict) and isinstance(a.get("riskLevel"), str):
                levels.append(a["riskLevel"].lower())
    for r in payload.get("risks") or []:
        if isinstance(r, dict) and isinstance(r.get("recommendation"), str):
            levels.append(_RECOMMENDATION.get(r["recommendation"].lower(), ""))
    known = [lv for lv in levels if lv in _RISK_RANK]
    return max(known, key=_RISK_RANK.__getitem__) if known else None


class ShopifyAdapter:
    format = "shopify"

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        secret: str,
        tolerance_s: int,
        now: datetime,
    ) -> None:
        verify_hmac_base64(body, header(headers, HMAC_HEADER), secret=secret, header=HMAC_HEADER)
        triggered = header(headers, "X-Shopify-Triggered-At")
        if triggered is not None:
            try:
                stamp = datetime.fromisoformat(triggered.replace("Z", "+00:00"))
            except ValueError as exc:
                raise SignatureRejected(
                    "X-Shopify-Triggered-At is not an ISO 8601 time",
                    code="timestamp_out_of_tolerance",
                ) from exc
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            check_timestamp(
                stamp, now=now, max_age=RETRY_WINDOW, max_skew=timedelta(seconds=tolerance_s)
            )

    def event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        return (
            header(headers, "X-Shopify-Webhook-Id")
            or header(headers, "X-Shopify-Event-Id")
            or body_hash_id(body)
        )

    def topic(self, headers: Mapping[str, str]) -> str | None:
        return header(headers, "X-Shopify-Topic")

    def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        channel: str,
        sku_map: Mapping[str, str],
    ) -> InboundEvent:
        topic = self.topic(headers)
        payload = load_object(body)
        try:
            return self._parse(topic, payload, sku_map)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InvalidPayload(f"cannot read the Shopify {topic} payload: {what}") from exc

    def _parse(
        self, topic: str | None, payload: dict[str, Any], sku_map: Mapping[str, str]
    ) -> InboundEvent:
        if topic == "orders/create":
            order, line_ids = map_order_lines(payload, sku_map)
            payment = None
            if payload.get("financial_status") == "paid":
                payment = PaymentFact(
                    amount=_money(payload["total_price"], order["currency"], "total_price"),
                    currency=order["currency"],
                    reference=_paid_reference(payload),
                )
            return InboundEvent(
                type=EventType.ORDER_CREATED,
                external_reference=order["external_reference"],
                order=order,
                payment=payment,
                risk_level=_risk_level(payload),
                line_ids=line_ids,
                channel_updated_at=platform_time(payload.get("updated_at")),
            )
        if topic == "orders/updated":
            order, line_ids = map_order_lines(payload, sku_map, current=True)
            return InboundEvent(
                type=EventType.ORDER_UPDATED,
                external_reference=order["external_reference"],
                order=order,
                line_ids=line_ids,
                channel_updated_at=platform_time(payload.get("updated_at")),
            )
        if topic == "orders/edited":
            return map_edit(payload)
        if topic == "orders/cancelled":
            return InboundEvent(
                type=EventType.ORDER_CANCELLED,
                external_reference=platform_id(payload.get("id"), "the order's id"),
                reason=text(payload.get("cancel_reason"), 500) or "cancelled in Shopify",
            )
        if topic == "orders/paid":
            currency = str(payload["currency"]).upper()
            return InboundEvent(
                type=EventType.PAYMENT_CAPTURED,
                external_reference=platform_id(payload.get("id"), "the order's id"),
                payment=PaymentFact(
                    amount=_money(payload["total_price"], currency, "total_price"),
                    currency=currency,
                    reference=_paid_reference(payload),
                ),
            )
        if topic == "refunds/create":
            refunds = [
                t
                for t in payload.get("transactions") or []
                if t.get("kind") == "refund" and t.get("status") in (None, "success")
            ]
            if not refunds:
                return InboundEvent(type=None, ignored="refund without a successful transaction")
            currency = str(refunds[0].get("currency") or "").upper()
            if not currency:
                raise InvalidPayload("the refund transactions carry no currency")
            amount = sum(_money(t["amount"], currency, "refund amount") for t in refunds)
            return InboundEvent(
                type=EventType.PAYMENT_REFUNDED,
                external_reference=platform_id(payload.get("order_id"), "the refund's order_id"),
                payment=PaymentFact(
                    amount=amount, currency=currency, reference=f"shopify:refund:{payload['id']}"
                ),
            )
        return InboundEvent(type=None, ignored=f"topic '{topic}' needs no action in oms")
