"""What a template sees: the order (number, status, the customer's name, city and country,
items, total), the shipment of a shipment event (carrier, tracking number and link, promised
dates), the refund of a refund event, and the customer's tracking link. Nothing else: no
internal ids, no addresses beyond the city."""

from __future__ import annotations

from typing import Any, Protocol

from oms.tracking.views import day as _day
from oms.tracking.views import shipment_context, tracking_link

_EXPONENTS = {"BIF": 0, "CLP": 0, "JPY": 0, "KRW": 0, "VND": 0, "XAF": 0, "XOF": 0, "ISK": 0}
_EXPONENTS |= {"BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3}


def money(amount: int, currency: str) -> str:
    """Minor units as a plain amount with its currency: ``1999, EUR`` -> ``19.99 EUR``."""
    exp = _EXPONENTS.get(currency.upper(), 2)
    if exp == 0:
        return f"{amount} {currency}"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d} {currency}"


class OrderLike(Protocol):
    number: int
    status: str
    ship_name: str | None
    ship_city: str
    ship_country: str
    currency: str
    total_amount: int
    fulfillment: str
    pickup_warehouse_code: str | None


def build(
    *,
    order: OrderLike,
    items: list[tuple[str, int]],
    event_type: str,
    data: dict[str, Any],
    shipment: Any | None,
    tracking_url: str,
    pickup: Any | None = None,
) -> dict[str, Any]:
    """The context of one message of ``event_type`` about ``order`` (``pickup``: the store
    pickup of a ``shipment.ready_for_pickup``, whose collection code the customer needs)."""
    context: dict[str, Any] = {
        "event": {"type": event_type},
        "order": {
            "number": order.number,
            "status": order.status,
            "customer_name": order.ship_name or "",
            "city": order.ship_city,
            "country": order.ship_country,
            "total": money(order.total_amount, order.currency),
            "fulfillment": order.fulfillment,
            "pickup_store": order.pickup_warehouse_code or "",
            "lines": [{"name": name, "quantity": qty} for name, qty in items],
        },
        "tracking_url": tracking_url,
    }
    if event_type.startswith("shipment."):
        if shipment is not None:
            context["shipment"] = shipment_context(shipment)
        else:  # the event's own data
            context["shipment"] = {
                "status": data.get("status"),
                "carrier": data.get("carrier"),
                "tracking_number": data.get("tracking_number"),
                "tracking_link": tracking_link(data.get("carrier"), data.get("tracking_number")),
                "shipped_at": None,
                "delivered_at": None,
                "ship_by": None,
                "deliver_by": None,
            }
    if event_type == "shipment.ready_for_pickup":
        context["pickup"] = {
            "code": getattr(pickup, "code", None),
            "collect_by": _day(getattr(pickup, "collect_by", None)),
        }
    if event_type.startswith("refund."):
        context["refund"] = {
            "amount": money(int(data.get("amount") or 0), str(data.get("currency") or "")),
            "reason": data.get("reason") or "",
        }
    return context


class _SampleOrder:
    number = 1001
    status = "shipped"
    ship_name: str | None = "Ada Lovelace"
    ship_city = "Milano"
    ship_country = "IT"
    currency = "EUR"
    total_amount = 4998
    fulfillment = "ship"
    pickup_warehouse_code: str | None = "MI-01"


def sample(event_type: str) -> dict[str, Any]:
    """A made-up context of ``event_type``: what a template is checked against when saved."""
    data = {
        "status": "shipped",
        "carrier": "DHL",
        "tracking_number": "JD014600003828",
        "amount": 1999,
        "currency": "EUR",
        "reason": "returned",
    }
    pickup = type("SamplePickup", (), {"code": "482913", "collect_by": None})()
    return build(
        pickup=pickup,
        order=_SampleOrder(),
        items=[("T-shirt", 2)],
        event_type=event_type,
        data=data,
        shipment=None,
        tracking_url="https://shop.example/track/SAMPLE",
    )
