"""How a shipment is shown to its customer (tracking page and messages): status, carrier,
tracking number, the carrier's own tracking link, and the days it shipped, was delivered, and was
promised (``ship_by`` / ``deliver_by``, on databases that store them). Pure."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import quote

CARRIER_TRACKING_URLS: dict[str, str] = {
    "dhl": "https://www.dhl.com/global-en/home/tracking.html?tracking-id={number}",
    "ups": "https://www.ups.com/track?tracknum={number}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={number}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
    "gls": "https://gls-group.com/track/{number}",
    "brt": "https://vas.brt.it/vas/sped_det_show.hsm?Nspediz={number}",
    "poste": "https://www.poste.it/cerca/index.html#/risultati-spedizioni/{number}",
    "dpd": "https://tracking.dpd.de/status/en_US/parcel/{number}",
}
"""Carrier name (lower case) -> its public tracking page; other carriers get no link."""


def tracking_link(carrier: str | None, number: str | None) -> str | None:
    """The carrier's own tracking page for a parcel, when oms knows the carrier."""
    if not carrier or not number:
        return None
    pattern = CARRIER_TRACKING_URLS.get(carrier.strip().lower())
    return pattern.format(number=quote(number, safe="")) if pattern else None


def day(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return None


def shipment_context(shipment: Any) -> dict[str, Any]:
    """A shipment as templates and the tracking page see it (promise dates when stored)."""
    return {
        "status": shipment.status,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
        "tracking_link": tracking_link(shipment.carrier, shipment.tracking_number),
        "shipped_at": day(shipment.shipped_at),
        "delivered_at": day(shipment.delivered_at),
        # the promise (ship_by / deliver_by), on databases that store it
        "ship_by": day(getattr(shipment, "ship_by", None)),
        "deliver_by": day(getattr(shipment, "deliver_by", None)),
    }
