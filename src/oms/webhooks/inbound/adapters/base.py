"""What every format adapter produces: one canonical inbound event per delivery."""

from __future__ import annotations

import hashlib
import html
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from oms.shared.errors import ProblemError


class EventType(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_CANCELLED = "order.cancelled"
    PAYMENT_CAPTURED = "payment.captured"
    PAYMENT_REFUNDED = "payment.refunded"


class MalformedPayload(ProblemError):
    """The body is not JSON (or not a JSON object)."""

    status = 400
    code = "malformed_payload"
    title = "Malformed webhook payload"


class InvalidPayload(ProblemError):
    """The body is JSON but cannot be mapped to an oms event."""

    status = 422
    code = "invalid_payload"
    title = "The webhook payload cannot be processed"


@dataclass(frozen=True, slots=True)
class PaymentFact:
    amount: int
    currency: str
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """The adapter's reading of one delivery. ``type`` None means: acknowledged, nothing to do."""

    type: EventType | None
    external_reference: str | None = None
    order_id: uuid.UUID | None = None
    order: dict[str, Any] | None = None  # an OrderCreate body without ``channel``
    payment: PaymentFact | None = None  # for payment.*, or captured at order creation
    reason: str | None = None
    ignored: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    format: str

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """An unsigned handshake the platform sends when the webhook is set up."""
        ...

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        secret: str,
        tolerance_s: int,
        now: datetime,
    ) -> None:
        """Raise ``SignatureRejected`` unless the delivery is authentic and fresh."""
        ...

    def event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The delivery's id for deduplication (a body hash when the platform sends none)."""
        ...

    def topic(self, headers: Mapping[str, str]) -> str | None: ...

    def parse(self, body: bytes, headers: Mapping[str, str], *, channel: str) -> InboundEvent:
        """Map the body to a canonical event; raise MalformedPayload / InvalidPayload."""
        ...


def body_hash_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        return None
    return value.strip()[:255]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def load_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; numbers with a fraction become Decimal (never float)."""
    try:
        value = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedPayload("the body must be a JSON object")
    return value


def text(value: Any, limit: int) -> str | None:
    """A trimmed, HTML-unescaped string cut to ``limit``, or None when empty."""
    if value is None:
        return None
    result = html.unescape(str(value)).strip()
    return result[:limit] if result else None


def split_line(
    *, sku: str, name: str | None, quantity: int, net_total: int, tax_rate_bps: int
) -> list[dict[str, Any]]:
    """One platform line as oms lines with integer unit prices that add up to ``net_total``.

    A discount that does not divide evenly by the quantity (5.00 off 3 units) gives two lines of
    the same SKU whose unit prices differ by one minor unit, so no cent is lost or invented.
    """
    if quantity <= 0:
        raise InvalidPayload(f"line {sku}: quantity must be positive, got {quantity}")
    if net_total < 0:
        raise InvalidPayload(f"line {sku}: discounts exceed the line price")
    base, remainder = divmod(net_total, quantity)
    out = []
    if quantity - remainder:
        out.append(
            {
                "sku": sku,
                "name": name,
                "quantity": quantity - remainder,
                "unit_price": base,
                "tax_rate_bps": tax_rate_bps,
            }
        )
    if remainder:
        out.append(
            {
                "sku": sku,
                "name": name,
                "quantity": remainder,
                "unit_price": base + 1,
                "tax_rate_bps": tax_rate_bps,
            }
        )
    return out


def rate_to_bps(rate: Decimal) -> int:
    """A tax rate as a fraction (0.19) -> basis points (1900), rounded half-even."""
    return int((rate * 10_000).to_integral_value())


def payment_method(names: list[str]) -> str:
    """A gateway name (Shopify) or payment method id (WooCommerce) -> oms PaymentMethod."""
    joined = " ".join(n.lower() for n in names if n)
    if not joined:
        return "other"
    if "cash on delivery" in joined or joined in {"cod", "cash_on_delivery"}:
        return "cash_on_delivery"
    if any(w in joined for w in ("paypal", "ppcp", "ppec")):
        return "paypal"
    if any(w in joined for w in ("bacs", "bank", "deposit", "transfer", "sepa")):
        return "bank_transfer"
    if "gift" in joined:
        return "gift_card"
    if "invoice" in joined:
        return "invoice"
    cards = (
        "card",
        "visa",
        "mastercard",
        "amex",
        "stripe",
        "shopify_payments",
        "woocommerce_payments",
        "braintree",
        "adyen",
        "authorize_net",
        "square",
        "mollie",
        "klarna",
        "bogus",
    )
    if any(w in joined for w in cards):
        return "card"
    return "other"
