"""The canonical oms format: ``{"type": ..., "data": {...}}`` signed per Standard Webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from oms.webhooks.inbound.adapters.base import (
    EventType,
    InboundEvent,
    InvalidPayload,
    MalformedPayload,
    PaymentFact,
    header,
)
from oms.webhooks.inbound.schemas import (
    CanonicalEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    PaymentCapturedEvent,
    PaymentRefundedEvent,
)
from oms.webhooks.inbound.verify import SignatureRejected, verify_standard_webhook

_EVENT: TypeAdapter[
    OrderCreatedEvent | OrderCancelledEvent | PaymentCapturedEvent | PaymentRefundedEvent
] = TypeAdapter(CanonicalEvent)


def validation_errors(exc: ValidationError) -> list[dict[str, object]]:
    """Pydantic errors in the shape oms uses everywhere (field, loc, message, type)."""
    out: list[dict[str, object]] = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {"field": ".".join(loc), "loc": loc, "message": err.get("msg"), "type": err.get("type")}
        )
    return out


class OmsAdapter:
    format = "oms"

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
        verify_standard_webhook(body, headers, secret=secret, tolerance_s=tolerance_s, now=now)

    def event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        msg_id = header(headers, "webhook-id")
        if msg_id is None:  # verify() already demands it
            raise SignatureRejected("send the webhook-id header", code="missing_signature")
        return msg_id

    def topic(self, headers: Mapping[str, str]) -> str | None:
        return None

    def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        channel: str,
        sku_map: Mapping[str, str],
    ) -> InboundEvent:
        """The canonical body; its lines carry oms SKUs already (``sku_map`` is not used)."""
        try:
            event = _EVENT.validate_json(body)
        except ValidationError as exc:
            errors = validation_errors(exc)
            if any(e["type"] == "json_invalid" for e in errors):
                raise MalformedPayload("the body is not valid JSON") from exc
            raise InvalidPayload(
                "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                errors=errors,
            ) from exc
        if isinstance(event, OrderCreatedEvent):
            data = event.data
            if data.channel is not None and data.channel != channel:
                raise InvalidPayload(
                    f"this connector places orders in channel '{channel}', not '{data.channel}'",
                    code="channel_mismatch",
                )
            order = data.model_dump(mode="json", exclude={"payment", "channel"})
            payment = None
            if data.payment is not None:
                payment = PaymentFact(
                    amount=data.payment.amount,
                    currency=data.currency,
                    reference=data.payment.reference,
                )
            return InboundEvent(
                type=EventType.ORDER_CREATED,
                external_reference=data.external_reference,
                order=order,
                payment=payment,
            )
        if isinstance(event, OrderCancelledEvent):
            return InboundEvent(
                type=EventType.ORDER_CANCELLED,
                external_reference=event.data.external_reference,
                order_id=event.data.order_id,
                reason=event.data.reason,
            )
        kind = (
            EventType.PAYMENT_CAPTURED
            if isinstance(event, PaymentCapturedEvent)
            else EventType.PAYMENT_REFUNDED
        )
        return InboundEvent(
            type=kind,
            external_reference=event.data.external_reference,
            order_id=event.data.order_id,
            payment=PaymentFact(
                amount=event.data.amount,
                currency=event.data.currency,
                reference=event.data.reference,
            ),
        )
