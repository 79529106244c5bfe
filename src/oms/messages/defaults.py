"""What oms sends out of the box: the default rules (which events send an email and/or an SMS)
and the packaged templates, in English and Italian, for every customer event.

A rule saved for a sales channel (``PUT /v1/messages/rules/{channel}``) replaces these rules for
it; a template saved through the API replaces the packaged one of the same (event, channel,
language). Any registered event type that carries an ``order_id`` may be given a rule and
templates (``shipment.ready_for_pickup`` and a promise change among them).
"""

from __future__ import annotations

from oms.messages.rendering import TemplateSource

LANGUAGES = ("en", "it")

DEFAULT_RULES: dict[str, dict[str, bool]] = {
    "order.placed": {"email": True, "sms": False},
    "shipment.shipped": {"email": True, "sms": True},
    "shipment.ready_for_pickup": {"email": True, "sms": True},
    "order.delivered": {"email": True, "sms": False},
    "order.cancelled": {"email": True, "sms": False},
    "refund.issued": {"email": True, "sms": False},
    "return.received": {"email": True, "sms": False},
}
"""Event type -> channels, for a sales channel without a saved rule."""

_LAYOUT = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{{{{ subject }}}}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;color:#222;max-width:560px;margin:auto">
{body}
<p><a href="{{{{ tracking_url }}}}">{track}</a></p>
<p style="color:#777;font-size:12px">{footer}</p>
</body></html>"""

_TRACK = {"en": "Follow your order", "it": "Segui il tuo ordine"}
_FOOTER = {
    "en": "Order {{ order.number }}. This is an automatic message; please do not reply.",
    "it": "Ordine {{ order.number }}. Messaggio automatico, si prega di non rispondere.",
}

# (event, language) -> (subject, text, html paragraph(s), sms)
_COPY: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("order.placed", "en"): (
        "Order {{ order.number }} confirmed",
        "Hello {{ order.customer_name }},\n\nthank you: we received your order "
        "{{ order.number }} ({{ order.total }}).\n{% for line in order.lines %}- "
        "{{ line.quantity }} x {{ line.name }}\n{% endfor %}\nFollow it: {{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>thank you: we received your order "
        "<b>{{ order.number }}</b> ({{ order.total }}).</p><ul>{% for line in order.lines %}"
        "<li>{{ line.quantity }} &times; {{ line.name }}</li>{% endfor %}</ul>",
        "Order {{ order.number }} confirmed. Follow it: {{ tracking_url }}",
    ),
    ("order.placed", "it"): (
        "Ordine {{ order.number }} confermato",
        "Ciao {{ order.customer_name }},\n\ngrazie: abbiamo ricevuto il tuo ordine "
        "{{ order.number }} ({{ order.total }}).\n{% for line in order.lines %}- "
        "{{ line.quantity }} x {{ line.name }}\n{% endfor %}\nSeguilo: {{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>grazie: abbiamo ricevuto il tuo ordine "
        "<b>{{ order.number }}</b> ({{ order.total }}).</p><ul>{% for line in order.lines %}"
        "<li>{{ line.quantity }} &times; {{ line.name }}</li>{% endfor %}</ul>",
        "Ordine {{ order.number }} confermato. Seguilo: {{ tracking_url }}",
    ),
    ("shipment.shipped", "en"): (
        "Your order {{ order.number }} has shipped",
        "Hello {{ order.customer_name }},\n\na parcel of your order {{ order.number }} is on "
        "its way with {{ shipment.carrier }}, tracking number {{ shipment.tracking_number }}."
        "{% if shipment.tracking_link %}\nCarrier tracking: {{ shipment.tracking_link }}"
        "{% endif %}{% if shipment.deliver_by %}\nExpected by {{ shipment.deliver_by }}."
        "{% endif %}\n\nFollow your order: {{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>a parcel of your order "
        "<b>{{ order.number }}</b> is on its way with {{ shipment.carrier }}, tracking number "
        '{% if shipment.tracking_link %}<a href="{{ shipment.tracking_link }}">'
        "{{ shipment.tracking_number }}</a>{% else %}{{ shipment.tracking_number }}{% endif %}."
        "</p>{% if shipment.deliver_by %}<p>Expected by {{ shipment.deliver_by }}.</p>"
        "{% endif %}",
        "Order {{ order.number }} shipped with {{ shipment.carrier }} "
        "({{ shipment.tracking_number }}). {{ tracking_url }}",
    ),
    ("shipment.shipped", "it"): (
        "Il tuo ordine {{ order.number }} è stato spedito",
        "Ciao {{ order.customer_name }},\n\nun pacco del tuo ordine {{ order.number }} è in "
        "viaggio con {{ shipment.carrier }}, numero di tracciamento "
        "{{ shipment.tracking_number }}.{% if shipment.tracking_link %}\nTracciamento del "
        "corriere: {{ shipment.tracking_link }}{% endif %}{% if shipment.deliver_by %}\n"
        "Consegna prevista entro il {{ shipment.deliver_by }}.{% endif %}\n\n"
        "Segui il tuo ordine: {{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>un pacco del tuo ordine "
        "<b>{{ order.number }}</b> è in viaggio con {{ shipment.carrier }}, numero di "
        'tracciamento {% if shipment.tracking_link %}<a href="{{ shipment.tracking_link }}">'
        "{{ shipment.tracking_number }}</a>{% else %}{{ shipment.tracking_number }}{% endif %}."
        "</p>{% if shipment.deliver_by %}<p>Consegna prevista entro il "
        "{{ shipment.deliver_by }}.</p>{% endif %}",
        "Ordine {{ order.number }} spedito con {{ shipment.carrier }} "
        "({{ shipment.tracking_number }}). {{ tracking_url }}",
    ),
    ("shipment.ready_for_pickup", "en"): (
        "Order {{ order.number }} is ready for pickup",
        "Hello {{ order.customer_name }},\n\nyour order {{ order.number }} is ready: you can "
        "collect it at store {{ order.pickup_store }}{% if pickup.collect_by %} until "
        "{{ pickup.collect_by }}{% endif %}.{% if pickup.code %}\nYour collection code: "
        "{{ pickup.code }}{% endif %}\n\nDetails: {{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>your order <b>{{ order.number }}</b> is "
        "ready: you can collect it at store {{ order.pickup_store }}{% if pickup.collect_by %} "
        "until {{ pickup.collect_by }}{% endif %}.</p>{% if pickup.code %}<p>Your collection "
        "code: <b>{{ pickup.code }}</b></p>{% endif %}",
        "Order {{ order.number }} is ready for pickup at {{ order.pickup_store }}."
        "{% if pickup.code %} Code {{ pickup.code }}.{% endif %} {{ tracking_url }}",
    ),
    ("shipment.ready_for_pickup", "it"): (
        "L'ordine {{ order.number }} è pronto per il ritiro",
        "Ciao {{ order.customer_name }},\n\nil tuo ordine {{ order.number }} è pronto: puoi "
        "ritirarlo nel negozio {{ order.pickup_store }}{% if pickup.collect_by %} entro il "
        "{{ pickup.collect_by }}{% endif %}.{% if pickup.code %}\nIl tuo codice di ritiro: "
        "{{ pickup.code }}{% endif %}\n\nDettagli: {{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>il tuo ordine <b>{{ order.number }}</b> è "
        "pronto: puoi ritirarlo nel negozio {{ order.pickup_store }}{% if pickup.collect_by %} "
        "entro il {{ pickup.collect_by }}{% endif %}.</p>{% if pickup.code %}<p>Il tuo codice "
        "di ritiro: <b>{{ pickup.code }}</b></p>{% endif %}",
        "Ordine {{ order.number }} pronto per il ritiro in {{ order.pickup_store }}."
        "{% if pickup.code %} Codice {{ pickup.code }}.{% endif %} {{ tracking_url }}",
    ),
    ("order.delivered", "en"): (
        "Order {{ order.number }} delivered",
        "Hello {{ order.customer_name }},\n\nyour order {{ order.number }} was delivered. "
        "We hope you enjoy it.\n\n{{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>your order <b>{{ order.number }}</b> was "
        "delivered. We hope you enjoy it.</p>",
        "Order {{ order.number }} delivered. {{ tracking_url }}",
    ),
    ("order.delivered", "it"): (
        "Ordine {{ order.number }} consegnato",
        "Ciao {{ order.customer_name }},\n\nil tuo ordine {{ order.number }} è stato "
        "consegnato. Speriamo che ti piaccia.\n\n{{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>il tuo ordine <b>{{ order.number }}</b> è "
        "stato consegnato. Speriamo che ti piaccia.</p>",
        "Ordine {{ order.number }} consegnato. {{ tracking_url }}",
    ),
    ("order.cancelled", "en"): (
        "Order {{ order.number }} cancelled",
        "Hello {{ order.customer_name }},\n\nyour order {{ order.number }} was cancelled. "
        "Any payment taken will be refunded.\n\n{{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>your order <b>{{ order.number }}</b> was "
        "cancelled. Any payment taken will be refunded.</p>",
        "Order {{ order.number }} cancelled. {{ tracking_url }}",
    ),
    ("order.cancelled", "it"): (
        "Ordine {{ order.number }} annullato",
        "Ciao {{ order.customer_name }},\n\nil tuo ordine {{ order.number }} è stato "
        "annullato. Quanto già pagato sarà rimborsato.\n\n{{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>il tuo ordine <b>{{ order.number }}</b> è "
        "stato annullato. Quanto già pagato sarà rimborsato.</p>",
        "Ordine {{ order.number }} annullato. {{ tracking_url }}",
    ),
    ("refund.issued", "en"): (
        "Refund for order {{ order.number }}",
        "Hello {{ order.customer_name }},\n\nwe refunded {{ refund.amount }} for your order "
        "{{ order.number }}. It may take a few days to appear on your statement.\n\n"
        "{{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>we refunded <b>{{ refund.amount }}</b> for "
        "your order <b>{{ order.number }}</b>. It may take a few days to appear on your "
        "statement.</p>",
        "Refund of {{ refund.amount }} issued for order {{ order.number }}.",
    ),
    ("refund.issued", "it"): (
        "Rimborso per l'ordine {{ order.number }}",
        "Ciao {{ order.customer_name }},\n\nabbiamo rimborsato {{ refund.amount }} per il tuo "
        "ordine {{ order.number }}. Potrebbero servire alcuni giorni perché compaia "
        "nell'estratto conto.\n\n{{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>abbiamo rimborsato <b>{{ refund.amount }}</b> "
        "per il tuo ordine <b>{{ order.number }}</b>. Potrebbero servire alcuni giorni perché "
        "compaia nell'estratto conto.</p>",
        "Rimborso di {{ refund.amount }} emesso per l'ordine {{ order.number }}.",
    ),
    ("return.received", "en"): (
        "We received your return for order {{ order.number }}",
        "Hello {{ order.customer_name }},\n\nwe received the items you returned from order "
        "{{ order.number }}. We will let you know about the refund.\n\n{{ tracking_url }}",
        "<p>Hello {{ order.customer_name }},</p><p>we received the items you returned from "
        "order <b>{{ order.number }}</b>. We will let you know about the refund.</p>",
        "Return for order {{ order.number }} received. {{ tracking_url }}",
    ),
    ("return.received", "it"): (
        "Abbiamo ricevuto il reso dell'ordine {{ order.number }}",
        "Ciao {{ order.customer_name }},\n\nabbiamo ricevuto gli articoli resi dell'ordine "
        "{{ order.number }}. Ti aggiorneremo sul rimborso.\n\n{{ tracking_url }}",
        "<p>Ciao {{ order.customer_name }},</p><p>abbiamo ricevuto gli articoli resi "
        "dell'ordine <b>{{ order.number }}</b>. Ti aggiorneremo sul rimborso.</p>",
        "Reso dell'ordine {{ order.number }} ricevuto. {{ tracking_url }}",
    ),
}


def _build() -> dict[tuple[str, str, str], TemplateSource]:
    out: dict[tuple[str, str, str], TemplateSource] = {}
    for (event, lang), (subject, text, html, sms) in _COPY.items():
        page = _LAYOUT.format(lang=lang, body=html, track=_TRACK[lang], footer=_FOOTER[lang])
        out[(event, "email", lang)] = TemplateSource(subject, text, page)
        out[(event, "sms", lang)] = TemplateSource(None, sms, None)
    return out


DEFAULT_TEMPLATES: dict[tuple[str, str, str], TemplateSource] = _build()
"""(event type, channel, language) -> the packaged template."""
