"""WooCommerce order webhooks (the REST API v3 order representation).

* Signature: ``X-WC-Webhook-Signature`` = base64 HMAC-SHA256 of the raw body with the webhook's
  secret. Dedup id: ``X-WC-Webhook-Delivery-ID``. WooCommerce signs no timestamp, so replays are
  stopped by deduplication: by delivery id, by (channel, WooCommerce order id) for orders, and by
  payment reference for payments.
* When a webhook is saved WooCommerce sends an unsigned form-encoded ping (``webhook_id=N``);
  it is answered 200 and nothing is stored.
* Topics: ``order.created`` -> order.created (and payment.captured when the order is already
  paid: ``date_paid`` set, status processing/completed, not cash on delivery);
  ``order.updated`` -> by status: ``cancelled`` -> order.cancelled, ``refunded`` ->
  payment.refunded, ``pending``/``on-hold``/``processing``/``completed`` -> order.updated: its
  lines and address as they are now, applied as an edit where they differ (only unpicked units
  can change: otherwise the delivery fails with 409 ``units_not_editable``, nothing applied),
  carrying the payment when the order is paid (``date_paid`` set, status processing or
  completed, not cash on delivery: recorded once, by reference); else ignored. Other topics
  are acknowledged and ignored. (WooCommerce sends ``order.updated`` for every change, so an
  already-paid order's line or address changes arrive there, next to the payment it carries.)
* Line ids: every oms line remembers its WooCommerce line item id (``external_line_id``);
  an update matches lines by it (by SKU for orders placed before oms kept them). An update
  older (``date_modified_gmt``) than the latest one applied is not applied.

Lines: the SKU comes from the connector's ``sku_map`` (``variant:<variation_id>``), else the
line's own ``sku``, else ``product:<product_id>`` in the map; a line with none of them is
refused (422 ``unmapped_line``), never given an invented SKU.

Money: a line's ``total`` (after discounts, before tax) is spread exactly over its units; the tax
rate is ``total_tax / total`` in basis points; ``shipping_total`` is the shipping fee.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from oms.webhooks.inbound.adapters.base import (
    EventType,
    InboundEvent,
    InvalidPayload,
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
from oms.webhooks.inbound.verify import verify_hmac_base64

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
_PING = re.compile(rb"^webhook_id=\d+$")
_PAID_STATUSES = {"processing", "completed"}
_OPEN_STATUSES = {"pending", "on-hold", "processing", "completed"}


def _money(value: Any, currency: str, what: str) -> int:
    try:
        return to_minor(value, currency)
    except AmountError as exc:
        raise InvalidPayload(f"{what}: {exc}") from exc


def _address(order: dict[str, Any]) -> dict[str, Any]:
    shipping = order.get("shipping") or {}
    addr = shipping if shipping.get("address_1") and shipping.get("country") else None
    addr = addr or order.get("billing") or {}
    if not addr.get("address_1") or not addr.get("country"):
        raise InvalidPayload("the order has no usable shipping or billing address")
    name = text(f"{addr.get('first_name') or ''} {addr.get('last_name') or ''}", 200)
    lines = [v for v in (text(addr.get("address_1"), 200), text(addr.get("address_2"), 200)) if v]
    return {
        "name": name,
        "lines": lines,
        "city": text(addr.get("city"), 128),
        "postal_code": text(addr.get("postcode"), 32),
        "region": text(addr.get("state"), 128),
        "country": text(addr.get("country"), 2),
    }


def _line(item: dict[str, Any], sku: str, currency: str) -> list[dict[str, Any]]:
    quantity = int(item["quantity"])
    total = to_decimal(item["total"])
    total_tax = to_decimal(item.get("total_tax") or 0)
    rate = total_tax / total if total > 0 else Decimal(0)
    return split_line(
        sku=sku,
        name=text(item.get("name"), 200),
        quantity=quantity,
        net_total=_money(total, currency, f"line {sku} total"),
        tax_rate_bps=rate_to_bps(rate),
    )


def _is_paid(order: dict[str, Any]) -> bool:
    return (
        bool(order.get("date_paid") or order.get("date_paid_gmt"))
        and order.get("status") in _PAID_STATUSES
        and order.get("payment_method") != "cod"
    )


def map_order(order: dict[str, Any], sku_map: Mapping[str, str]) -> dict[str, Any]:
    """A WooCommerce order -> an oms OrderCreate body (without ``channel``)."""
    return map_order_lines(order, sku_map)[0]


def _modified(order: dict[str, Any]) -> datetime | None:
    return platform_time(order.get("date_modified_gmt"))


def map_order_lines(
    order: dict[str, Any], sku_map: Mapping[str, str]
) -> tuple[dict[str, Any], tuple[str | None, ...]]:
    """A WooCommerce order -> an oms OrderCreate body (without ``channel``), and the line item
    id of each of its lines.

    Lines get their SKU by the connector's rule (``map_skus``: ``variant:<variation_id>``, the
    line's own SKU, ``product:<product_id>``; else 422 ``unmapped_line``). The customer is its
    WooCommerce id (0 for guests), the billing email and the billing phone; an order with none
    of them (some point-of-sale plugins) is anonymous."""
    currency = text(order.get("currency"), 3)
    if currency is None:
        raise InvalidPayload("the order has no currency")
    currency = currency.upper()
    items = order.get("line_items")
    if not isinstance(items, list) or not items:
        raise InvalidPayload("the order has no line_items")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidPayload("every line item must be an object")
    skus = map_skus(
        [PlatformLine.read(i, item, variant_key="variation_id") for i, item in enumerate(items, 1)],
        sku_map,
    )
    lines: list[dict[str, Any]] = []
    line_ids: list[str | None] = []
    for item, sku in zip(items, skus, strict=True):
        mapped = _line(item, sku, currency)
        lines += mapped
        line_ids += [line_item_id(item.get("id"))] * len(mapped)
    billing = order.get("billing") or {}
    customer_id = order.get("customer_id") or None
    reference = platform_id(order.get("id"), "the order's id")
    attributes = {
        "source": "woocommerce",
        "source_order_id": reference,
        "source_order_number": str(order.get("number") or reference),
        "source_status": order.get("status"),
        "source_total": str(order.get("total")),
        "shipping_tax": str(order.get("shipping_tax") or "0"),
        "payment_method_title": text(order.get("payment_method_title"), 200),
    }
    body = {
        "external_reference": reference,
        "currency": currency,
        "customer": guest_customer(
            str(customer_id) if customer_id else None,
            text(billing.get("email"), 320),
            text(billing.get("phone"), None),
        ),
        "shipping_address": _address(order),
        "payment_method": payment_method([str(order.get("payment_method") or "")]),
        "shipping_fee": _money(order.get("shipping_total") or "0", currency, "shipping_total"),
        "lines": lines,
        "notes": text(order.get("customer_note"), 2000),
        "attributes": {k: v for k, v in attributes.items() if v is not None},
    }
    return body, tuple(line_ids)


class WooCommerceAdapter:
    format = "woocommerce"

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return header(headers, SIGNATURE_HEADER) is None and bool(_PING.match(body.strip()))

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        secret: str,
        tolerance_s: int,
        now: datetime,
    ) -> None:
        verify_hmac_base64(
            body, header(headers, SIGNATURE_HEADER), secret=secret, header=SIGNATURE_HEADER
        )

    def event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        return header(headers, "X-WC-Webhook-Delivery-ID") or body_hash_id(body)

    def topic(self, headers: Mapping[str, str]) -> str | None:
        return header(headers, "X-WC-Webhook-Topic")

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
            raise InvalidPayload(f"cannot read the WooCommerce {topic} payload: {what}") from exc

    def _parse(
        self, topic: str | None, payload: dict[str, Any], sku_map: Mapping[str, str]
    ) -> InboundEvent:
        if topic == "order.created":
            order, line_ids = map_order_lines(payload, sku_map)
            payment = None
            if _is_paid(payload):
                payment = PaymentFact(
                    amount=_money(payload["total"], order["currency"], "total"),
                    currency=order["currency"],
                    reference=f"woocommerce:order:{payload['id']}:paid",
                )
            return InboundEvent(
                type=EventType.ORDER_CREATED,
                external_reference=order["external_reference"],
                order=order,
                payment=payment,
                line_ids=line_ids,
                channel_updated_at=_modified(payload),
            )
        if topic != "order.updated":
            return InboundEvent(type=None, ignored=f"topic '{topic}' needs no action in oms")
        status = payload.get("status")
        reference = platform_id(payload.get("id"), "the order's id")
        currency = str(payload.get("currency") or "").upper()
        if status == "cancelled":
            return InboundEvent(
                type=EventType.ORDER_CANCELLED,
                external_reference=reference,
                reason="cancelled in WooCommerce",
            )
        if status == "refunded":
            refunds = payload.get("refunds") or []
            amount = sum(abs(_money(r.get("total") or "0", currency, "refund")) for r in refunds)
            amount = amount or _money(payload["total"], currency, "total")
            ids = ",".join(str(r.get("id")) for r in refunds) or "all"
            return InboundEvent(
                type=EventType.PAYMENT_REFUNDED,
                external_reference=reference,
                payment=PaymentFact(
                    amount=amount,
                    currency=currency,
                    reference=f"woocommerce:order:{reference}:refund:{ids}",
                ),
            )
        if status in _OPEN_STATUSES:  # its lines and address as they are (and its payment)
            order, line_ids = map_order_lines(payload, sku_map)
            payment = None
            if _is_paid(payload):
                payment = PaymentFact(
                    amount=_money(payload["total"], currency, "total"),
                    currency=currency,
                    reference=f"woocommerce:order:{reference}:paid",
                )
            return InboundEvent(
                type=EventType.ORDER_UPDATED,
                external_reference=order["external_reference"],
                order=order,
                payment=payment,
                line_ids=line_ids,
                channel_updated_at=_modified(payload),
            )
        return InboundEvent(type=None, ignored=f"order status '{status}' needs no action in oms")
