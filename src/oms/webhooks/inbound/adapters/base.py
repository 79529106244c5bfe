"""What every format adapter produces: one canonical inbound event per delivery."""

from __future__ import annotations

import hashlib
import html
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from oms.orders.schemas import Sku, normalize_phone
from oms.shared.errors import ProblemError
from oms.webhooks.inbound.money import MAX_DIGITS


class EventType(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_UPDATED = "order.updated"  # lines or address as they are now: applied as an edit
    ORDER_EDITED = "order.edited"  # lines changed by the platform's line ids: applied as an edit
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

    def __post_init__(self) -> None:
        if self.amount <= 0:  # as the oms format requires: no payment, a refund of nothing
            raise InvalidPayload(f"a payment or refund amount must be positive, not {self.amount}")


@dataclass(frozen=True, slots=True)
class LineChange:
    """Units added to (``delta`` > 0) or removed from (< 0) the platform's line ``line_id``."""

    line_id: str
    delta: int


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
    risk_level: str | None = None  # the platform's fraud risk of a new order: low/medium/high
    line_ids: tuple[str | None, ...] = ()
    """The platform's id of each of ``order["lines"]`` (same order; a platform line split in
    two for an uneven discount gives both its id)."""
    line_changes: tuple[LineChange, ...] = ()  # order.edited: the changes by platform line id
    channel_updated_at: datetime | None = None
    """When the platform changed the order (order.updated: its modification time; order.edited:
    when the edit was committed): an update older than the one applied is not applied."""
    edit_id: str | None = None  # order.edited: the platform's id of the edit


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

    def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        channel: str,
        sku_map: Mapping[str, str],
    ) -> InboundEvent:
        """Map the body to a canonical event; raise MalformedPayload / InvalidPayload /
        UnmappedLine. ``sku_map``: the connector's ``variant:<id>`` / ``product:<id>`` -> SKU."""
        ...


def body_hash_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, trimmed, whole (ids are identities: never cut), or None when empty."""
    value = headers.get(name.lower())
    if value is None or not value.strip():
        return None
    return value.strip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _number(literal: str) -> Decimal:
    """A JSON number with a fraction or exponent, as a Decimal of sane size (see MAX_DIGITS)."""
    value = Decimal(literal)
    if value.adjusted() >= MAX_DIGITS:
        raise InvalidPayload(f"the number {literal[:40]} is out of range")
    return value


def load_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; numbers with a fraction become Decimal (never float)."""
    try:
        value = json.loads(body, parse_float=_number, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # nested deeper than the parser's recursion allows
        raise MalformedPayload("the body is JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise MalformedPayload("the body must be a JSON object")
    return value


def text(value: Any, limit: int | None) -> str | None:
    """A trimmed, HTML-unescaped string cut to ``limit`` (None: whole), or None when empty.
    Only for descriptive text (names, notes): identities are never cut."""
    if value is None:
        return None
    result = html.unescape(str(value)).strip()
    return result[:limit] if result else None


# ---- lines to SKUs ------------------------------------------------------------------------


class UnmappedLine(ProblemError):
    """A platform line has no usable SKU and no mapping on the connector names it."""

    status = 422
    code = "unmapped_line"
    title = "A line cannot be mapped to an oms SKU"


_SKU: TypeAdapter[str] = TypeAdapter(Sku)


def _ident(value: Any) -> str | None:
    """A platform id as a string; None for a missing id (null, 0 or empty)."""
    if value is None or value == 0 or value == "" or isinstance(value, bool):
        return None
    return str(value).strip() or None


@dataclass(frozen=True, slots=True)
class PlatformLine:
    """What identifies one line of a platform order (its position counts from 1)."""

    position: int
    name: str | None
    sku: str | None
    variant_id: str | None
    product_id: str | None

    @classmethod
    def read(cls, position: int, item: dict[str, Any], *, variant_key: str) -> PlatformLine:
        """The line ``item`` (``variant_key``: ``variant_id`` for Shopify, ``variation_id`` for
        WooCommerce)."""
        return cls(
            position=position,
            name=text(item.get("name") or item.get("title"), 200),
            sku=text(item.get("sku"), None),
            variant_id=_ident(item.get(variant_key)),
            product_id=_ident(item.get("product_id")),
        )


def _valid_sku(sku: str | None) -> bool:
    if sku is None:
        return False
    try:
        _SKU.validate_python(sku)
    except ValidationError:
        return False
    return True


def map_skus(lines: list[PlatformLine], sku_map: Mapping[str, str]) -> list[str]:
    """The oms SKU of each platform line, by the connector's explicit rule:

    1. the mapping of its variant (``variant:<id>``; WooCommerce: the variation id), if any;
    2. else its own SKU, if it is a valid oms SKU (kept whole: never cut or invented);
    3. else the mapping of its product (``product:<id>``), if any;

    else 422 ``unmapped_line`` naming every line that could not be mapped, and why.
    """
    skus: list[str] = []
    unmapped: list[dict[str, Any]] = []
    for line in lines:
        sku = sku_map.get(f"variant:{line.variant_id}") if line.variant_id else None
        if sku is None and _valid_sku(line.sku):
            sku = line.sku
        if sku is None and line.product_id:
            sku = sku_map.get(f"product:{line.product_id}")
        if sku is not None:
            skus.append(sku)
            continue
        reason = (
            "the line has no SKU"
            if line.sku is None
            else f"its SKU '{line.sku}' is not a valid oms SKU (1-64 characters: letters, "
            "digits and . _ - /, starting with a letter or digit)"
        )
        unmapped.append(
            {
                "position": line.position,
                "name": line.name,
                "sku": line.sku,
                "variant_id": line.variant_id,
                "product_id": line.product_id,
                "reason": reason + " and no mapping names its variant or product",
            }
        )
    if unmapped:
        raise UnmappedLine(
            "map these lines on the connector (sku_map: variant:<id> or product:<id> -> SKU): "
            + "; ".join(
                f"line {u['position']} ({u['name'] or 'unnamed'}, variant {u['variant_id']}, "
                f"product {u['product_id']})"
                for u in unmapped
            ),
            unmapped_lines=unmapped,
        )
    return skus


def line_item_id(value: Any) -> str | None:
    """A platform's line item id as oms keeps it (whole: an id is never cut), None when
    missing; 422 for one longer than 128 characters."""
    if value is None or isinstance(value, bool) or value == "" or value == 0:
        return None
    out = str(value).strip()
    if not out:
        return None
    if len(out) > 128:
        raise InvalidPayload(f"line item id {out[:40]!r}... is longer than 128 characters")
    return out


EXTERNAL_REFERENCE_MAX = 128
"""The longest platform order id oms keeps (``OrderCreate.external_reference``)."""


def platform_id(value: Any, what: str) -> str:
    """A platform's id of an order (or of an edit) as oms keeps it: a string or an integer,
    whole (an id is never cut); 422 for a missing, empty, non-scalar or over-long one (never an
    event kept pending for an order that cannot exist)."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidPayload(f"{what} must be a string or an integer")
    out = str(value).strip()
    if not out:
        raise InvalidPayload(f"{what} is empty")
    if len(out) > EXTERNAL_REFERENCE_MAX:
        raise InvalidPayload(
            f"{what} {out[:40]!r}... is longer than {EXTERNAL_REFERENCE_MAX} characters"
        )
    return out


def platform_time(value: Any) -> datetime | None:
    """A platform's ISO 8601 time (``2025-03-01T10:00:00-05:00``; WooCommerce's ``*_gmt``
    fields have no offset and are UTC), or None when missing or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def guest_customer(customer_id: str | None, email: str | None, phone: str | None) -> dict[str, Any]:
    """The OrderCreate ``customer`` of a platform order: its id, email and phone (a phone oms
    cannot read as one is left out), or anonymous when it has none of them (point of sale)."""
    if phone is not None:
        try:
            phone = normalize_phone(phone)
        except ValueError:
            phone = None
    if customer_id is None and email is None and phone is None:
        return {"anonymous": True}
    return {"id": customer_id, "email": email, "phone": phone}


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
