"""The one list of event types oms emits to webhook subscribers.

Events are recorded with ``oms.outbox.service.record_event(type=...)``; any string works there.
This list is what subscriptions are validated against (and what ``GET /v1/webhooks/event-types``
shows). Add a new type here when you start emitting it. Wildcards (``order.*``) match by family,
so a subscriber to ``shipment.*`` also receives shipment types not yet listed here.
"""

from __future__ import annotations

import re

EVENT_TYPES: dict[str, str] = {
    "order.placed": "An order was accepted (routed and reserved)",
    "order.paid": "Payment for an order was captured",
    "order.picked": "An order's items were picked",
    "order.packed": "An order was packed",
    "order.shipped": "An order left the warehouse (carrier and tracking number in data)",
    "order.delivered": "An order was delivered",
    "order.returned": "A delivered order came back",
    "order.cancelled": "An order was cancelled",
    "order.rerouted": "An order's shipments were re-planned",
    "shipment.picked": "A shipment was picked",
    "shipment.packed": "A shipment was packed",
    "shipment.shipped": "A shipment left its warehouse",
    "shipment.delivered": "A shipment was delivered",
    "inventory.low_stock": "Available stock of a SKU fell to or below its threshold",
    "payment.authorized": "A payment was authorized (not yet captured)",
    "payment.captured": "A payment was captured (cash on delivery: at delivery)",
    "payment.failed": "A payment attempt failed",
    "refund.issued": "A refund was issued (by API, on return receipt, or reported by a provider)",
    "return.requested": "A return (RMA) was requested for a delivered order",
    "return.received": "Returned units were received (restocked or discarded)",
    "webhook.endpoint_disabled": "A webhook subscription was disabled after repeated failures",
}

_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*\.\*|[a-z][a-z0-9_]*\.[a-z0-9_.]+)$")


def families() -> set[str]:
    """The part before the first dot of every known type (``order``, ``shipment``...)."""
    return {t.split(".", 1)[0] for t in EVENT_TYPES}


def validate_pattern(pattern: str) -> str:
    """Accept a known type, ``<family>.*`` for a known family, or ``*``; raise ValueError."""
    if not _PATTERN.match(pattern):
        raise ValueError(f"'{pattern}' is not an event type or a pattern like 'order.*'")
    if pattern == "*":
        return pattern
    if pattern.endswith(".*"):
        if pattern[:-2] not in families():
            known = ", ".join(sorted(f"{f}.*" for f in families()))
            raise ValueError(f"unknown event family in '{pattern}'; known: {known}")
        return pattern
    if pattern not in EVENT_TYPES:
        raise ValueError(f"unknown event type '{pattern}'; see GET /v1/webhooks/event-types")
    return pattern


def matches(patterns: list[str], event_type: str) -> bool:
    """Whether a subscription's patterns select ``event_type``."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
