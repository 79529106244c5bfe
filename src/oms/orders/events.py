"""Payloads of the order context's events (``order.*``, ``shipment.*``): one builder each, so
placement, transitions and re-routing announce an order the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oms.orders.models import Order, Shipment
    from oms.orders.plans import NewOrder, NewShipment


def order_summary(order: Order | NewOrder) -> dict[str, Any]:
    """The data carried by order.* events."""
    return {
        "order_id": str(order.id),
        "number": order.number,
        "status": order.status,
        "channel": order.channel,
        "external_reference": order.external_reference,
        "customer_id": order.customer_id,
        "customer_email": order.customer_email,
        "currency": order.currency,
        "total": order.total_amount,
        "lines": [{"sku": ln.sku, "quantity": ln.quantity} for ln in order.lines],
    }


def shipment_payload(shipment: Shipment | NewShipment) -> dict[str, Any]:
    """The data carried by shipment.* events."""
    return {
        "shipment_id": str(shipment.id),
        "order_id": str(shipment.order_id),
        "warehouse_code": shipment.warehouse_code,
        "status": shipment.status,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
    }
