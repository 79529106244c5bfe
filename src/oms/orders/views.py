"""Response mapping: orders and shipments as the API shows them (``OrderRead``,
``ShipmentRead``). Used by the router, and by placement to store an idempotent response."""

from __future__ import annotations

from typing import Any

from oms.orders import domain
from oms.orders.hold_models import OrderHold
from oms.orders.hold_schemas import HoldRead, HoldReason
from oms.orders.models import Order
from oms.orders.plans import NewOrder, ShipmentView
from oms.orders.schemas import (
    Address,
    Customer,
    OrderLineRead,
    OrderRead,
    ShipmentLine,
    ShipmentRead,
    Totals,
)


def shipment_read(view: ShipmentView) -> ShipmentRead:
    sh = view.shipment
    return ShipmentRead(
        id=sh.id,
        order_id=sh.order_id,
        seq=sh.seq,
        warehouse=sh.warehouse_code,
        status=domain.ShipmentStatus(sh.status),
        carrier=sh.carrier,
        tracking_number=sh.tracking_number,
        lines=[ShipmentLine(**ln) for ln in view.lines],
        created_at=sh.created_at,
        picked_at=sh.picked_at,
        packed_at=sh.packed_at,
        shipped_at=sh.shipped_at,
        delivered_at=sh.delivered_at,
        cancelled_at=sh.cancelled_at,
        ship_by=sh.ship_by,
        deliver_by=sh.deliver_by,
    )


def hold_read(hold: OrderHold) -> HoldRead:
    return HoldRead(
        id=hold.id,
        order_id=hold.order_id,
        reason=HoldReason(hold.reason),
        note=hold.note,
        rule=hold.rule,
        active=hold.released_at is None,
        placed_by=hold.placed_by,
        placed_at=hold.placed_at,
        released_by=hold.released_by,
        released_at=hold.released_at,
        release_note=hold.release_note,
    )


def to_read(
    order: Order | NewOrder,
    shipments: list[ShipmentView],
    holds: list[OrderHold] | None = None,
) -> OrderRead:
    cod = order.payment_method == domain.PaymentMethod.CASH_ON_DELIVERY
    return OrderRead(
        id=order.id,
        number=order.number,
        status=domain.OrderStatus(order.status),
        version=order.version,
        allowed_transitions=domain.allowed_next(
            domain.OrderStatus(order.status),
            cash_on_delivery=cod,
            pickup=order.fulfillment == "pickup",
            counter_sale=order.fulfillment == "counter",
        ),
        channel=order.channel,
        external_reference=order.external_reference,
        customer=Customer.model_construct(
            id=order.customer_id,
            email=order.customer_email,
            phone=order.customer_phone,
            anonymous=order.customer_anonymous,
        ),
        shipping_address=Address.model_construct(
            name=order.ship_name,
            lines=order.ship_lines,
            city=order.ship_city,
            postal_code=order.ship_postal_code,
            region=order.ship_region,
            country=order.ship_country,
            latitude=order.ship_latitude,
            longitude=order.ship_longitude,
        ),
        payment_method=domain.PaymentMethod(order.payment_method),
        priority=domain.Priority(order.priority),
        currency=order.currency,
        lines=[
            OrderLineRead(
                id=ln.id,
                line_no=ln.line_no,
                sku=ln.sku,
                name=ln.name,
                quantity=ln.quantity,
                unit_price=ln.unit_price,
                tax_rate_bps=ln.tax_rate_bps,
                backordered=ln.backordered,
                subtotal=ln.subtotal_amount,
                tax=ln.tax_amount,
                total=ln.total_amount,
            )
            for ln in order.lines
        ],
        totals=Totals(
            subtotal=order.subtotal_amount,
            tax_total=order.tax_amount,
            shipping_fee=order.shipping_fee,
            total=order.total_amount,
        ),
        fulfillment=order.fulfillment,
        pickup_store=order.pickup_warehouse_code,
        shipments=[shipment_read(v) for v in shipments],
        routed_to=list(order.routing["warehouses"]) if order.routing else [],
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        notes=order.notes,
        locale=order.locale,
        attributes=order.attributes,
        created_at=order.created_at,
        updated_at=order.updated_at,
        paid_at=order.paid_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
        holds=[hold_read(h) for h in holds or ()],
    )


def render(
    order: NewOrder, shipments: list[ShipmentView], holds: list[OrderHold] | None = None
) -> dict[str, Any]:
    """The JSON body of an order response (what an idempotent replay answers with)."""
    return to_read(order, shipments, holds).model_dump(mode="json")
