"""The tracking page's HTML (English and Italian), rendered with autoescaping: no value from the
order reaches the page unescaped, and the page loads nothing (no script, no external asset)."""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the link is the key: never sent to another site
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

API_HEADERS = {
    k: HEADERS[k]
    for k in ("Cache-Control", "Referrer-Policy", "X-Robots-Tag", "X-Content-Type-Options")
}
"""The tracking JSON's headers: the page's, but those about rendering HTML."""

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Order {number}",
        "status": "Status",
        "placed_on": "Placed on",
        "destination": "Delivering to",
        "pickup": "Collect at store",
        "shipments": "Parcels",
        "parcel": "Parcel {n}",
        "carrier": "Carrier",
        "tracking": "Tracking number",
        "shipped": "Shipped",
        "delivered": "Delivered",
        "promise": "Expected delivery by",
        "ship_by": "Ships by",
        "none_yet": "Not shipped yet.",
        "returns": "Returns",
        "requested": "requested",
        "received": "received",
        "placed": "Received",
        "paid": "Paid",
        "picked": "Being prepared",
        "packed": "Packed",
        "ready_for_pickup": "Ready for pickup",
        "collected": "Collected",
        "returned": "Returned",
        "cancelled": "Cancelled",
        "pending": "Being prepared",
        "approved": "Approved",
        "rejected": "Rejected",
        "closed": "Closed",
        "not_found": "We could not find an order at this link.",
        "expired": "This tracking link has expired. The latest message about your order has a "
        "new one.",
        "error_title": "Order tracking",
    },
    "it": {
        "title": "Ordine {number}",
        "status": "Stato",
        "placed_on": "Effettuato il",
        "destination": "Consegna a",
        "pickup": "Ritiro in negozio",
        "shipments": "Pacchi",
        "parcel": "Pacco {n}",
        "carrier": "Corriere",
        "tracking": "Numero di tracciamento",
        "shipped": "Spedito",
        "delivered": "Consegnato",
        "promise": "Consegna prevista entro il",
        "ship_by": "Spedizione entro il",
        "none_yet": "Non ancora spedito.",
        "returns": "Resi",
        "requested": "richiesto",
        "received": "ricevuto",
        "placed": "Ricevuto",
        "paid": "Pagato",
        "picked": "In preparazione",
        "packed": "Imballato",
        "ready_for_pickup": "Pronto per il ritiro",
        "collected": "Ritirato",
        "returned": "Reso",
        "cancelled": "Annullato",
        "pending": "In preparazione",
        "approved": "Approvato",
        "rejected": "Rifiutato",
        "closed": "Chiuso",
        "not_found": "Non abbiamo trovato un ordine a questo link.",
        "expired": "Questo link di tracciamento è scaduto. L'ultimo messaggio sul tuo ordine ne "
        "contiene uno nuovo.",
        "error_title": "Tracciamento ordine",
    },
}

_STYLE = (
    "body{font-family:system-ui,Arial,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.5rem}section{border:1px solid #ddd;border-radius:6px;"
    "padding:.75rem 1rem;margin:.75rem 0}dt{font-weight:600}dd{margin:0 0 .5rem}"
    ".status{font-size:1.2rem}"
)

_PAGE = _ENV.from_string(
    """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body>
<h1 id="order-number">{{ title }}</h1>
<p class="status">{{ t.status }}: <strong id="order-status" data-status="{{ d.status }}">
{{- label(d.status) }}</strong></p>
<p>{{ t.placed_on }} <time id="placed-on">{{ d.placed_on }}</time></p>
{% if d.destination.pickup_store %}
<p id="destination">{{ t.pickup }}: {{ d.destination.pickup_store }}</p>
{% else %}
<p id="destination">{{ t.destination }}: {{ d.destination.city }}, {{ d.destination.country }}</p>
{% endif %}
<h2>{{ t.shipments }}</h2>
{% for s in d.shipments %}
<section class="shipment" data-status="{{ s.status }}">
<h3>{{ t.parcel.replace("{n}", s.number|string) }}: {{ label(s.status) }}</h3>
<dl>
{% if s.carrier %}<dt>{{ t.carrier }}</dt><dd class="carrier">{{ s.carrier }}</dd>{% endif %}
{% if s.tracking_number %}<dt>{{ t.tracking }}</dt><dd class="tracking-number">
{%- if s.tracking_link %}<a href="{{ s.tracking_link }}" rel="noreferrer noopener">
{{- s.tracking_number }}</a>
{%- else %}{{ s.tracking_number }}{% endif %}</dd>{% endif %}
{% if s.shipped_at %}<dt>{{ t.shipped }}</dt><dd>{{ s.shipped_at }}</dd>{% endif %}
{% if s.delivered_at %}<dt>{{ t.delivered }}</dt><dd>{{ s.delivered_at }}</dd>{% endif %}
{% if s.ship_by and not s.shipped_at %}
<dt>{{ t.ship_by }}</dt><dd class="ship-by">{{ s.ship_by }}</dd>{% endif %}
{% if s.deliver_by and not s.delivered_at %}
<dt>{{ t.promise }}</dt><dd class="deliver-by">{{ s.deliver_by }}</dd>{% endif %}
</dl>
{% if not s.carrier and not s.shipped_at %}<p>{{ t.none_yet }}</p>{% endif %}
</section>
{% endfor %}
{% if d.returns %}<h2>{{ t.returns }}</h2><ul id="returns">
{% for r in d.returns %}<li data-status="{{ r.status }}">
{{- label(r.status) }}: {{ t.requested }} {{ r.requested_on }}
{%- if r.received_on %}, {{ t.received }} {{ r.received_on }}{% endif %}</li>{% endfor %}
</ul>{% endif %}
</body></html>"""
)

_ERROR = _ENV.from_string(
    """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body><h1>{{ title }}</h1><p id="error" data-code="{{ code }}">{{ message }}</p></body></html>"""
)


def _labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def render_page(data: dict[str, Any], *, language: str) -> str:
    t = _labels(language)
    return _PAGE.render(
        lang=language if language in LABELS else "en",
        title=t["title"].replace("{number}", str(data["order_number"])),
        t=t,
        d=data,
        style=_STYLE,
        label=lambda status: t.get(str(status), str(status)),
    )


def render_error(*, code: str, language: str = "en") -> str:
    t = _labels(language)
    message = t["expired"] if code == "tracking_link_expired" else t["not_found"]
    return _ERROR.render(
        lang=language, title=t["error_title"], code=code, message=message, style=_STYLE
    )
