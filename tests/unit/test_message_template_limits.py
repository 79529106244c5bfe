"""Message templates cannot spin or bloat the process that renders them (the API when a template
is saved or previewed, the worker for every message): loops, calls and filters draw on one
budget per rendering, and nothing a template builds (a string, a list, a number) may grow past
the output limit, checked before it is built. Each case here took seconds to minutes of CPU, or
hundreds of megabytes, before these limits."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from oms.messages.context import sample
from oms.messages.rendering import TemplateRefused, TemplateSource, render

CPU = {
    "nested loops": "{% for a in range(1000) %}{% for b in range(1000) %}"
    "{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}x",
    "exponential macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(40) }}x",
    "huge slice": "{{ [1]|slice(100000000)|list|length }}",
    "huge batch": "{{ [1]|batch(100000000, 0)|list|length }}",
    "lipsum": "{{ lipsum(100000)|length }}",
    "growing number": "{% set ns = namespace(n=99999) %}{% for i in range(40) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
}

MEMORY = {
    "replace amplification": "{{ ('x' * 10000)|replace('x', 'y' * 10000)|length }}",
    "replace method": "{{ ('x' * 10000).replace('x', 'y' * 10000)|length }}",
    "join amplification": "{{ range(1000)|join('x' * 10000)|length }}",
    "join method": "{{ ('x' * 10000).join(range(1000)|map('string'))|length }}",
    "doubling concat": "{% set s = 'x' * 10000 %}{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}"
    "{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}{{ s|length }}",
    "doubling plus": "{% set s = 'x' * 10000 %}{% set s = s + s + s + s + s + s + s + s %}"
    "{% set s = s + s + s + s + s + s + s + s %}{{ s|length }}",
    "list of big strings": "{% set s = 'x' * 10000 %}{{ ([s] * 10000)|string|length }}",
    "nested lists": "{% set l = [1] * 9000 %}{{ ([l] * 9000)|length }}",
}


def _render(body: str) -> str:
    return render(TemplateSource(None, body, None), sample("order.placed"), channel="sms").body_text


@pytest.mark.parametrize("body", CPU.values(), ids=CPU.keys())
def test_a_template_that_would_spin_is_refused_quickly(body: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateRefused):
        _render(body)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("body", MEMORY.values(), ids=MEMORY.keys())
def test_a_template_that_would_bloat_is_refused_before_building_it(body: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRefused):
            _render(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_ordinary_templates_still_render() -> None:
    body = (
        "{% macro item(l) %}{{ l.quantity }} x {{ l.name }}{% endmacro %}"
        "Ciao {{ order.customer_name|title }}, ordine {{ order.number }} ({{ order.total }}):"
        "{% for l in order.lines %} {{ item(l) }}{% if not loop.last %},{% endif %}{% endfor %}."
        " {{ order.lines|map(attribute='name')|join(', ') }} {{ '%d'|length }}"
        " {{ 'a' ~ 'b' + 'c' }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ 12 * 12 }}"
        " {{ order.number|string|replace('0', 'o') }} {{ tracking_url|truncate(40) }}"
        " {% for b in range(10)|batch(3) %}{{ b|sum }};{% endfor %}"
    )
    out = _render(body)
    assert out.startswith("Ciao Ada Lovelace, ordine 1001 (49.98 EUR): 2 x T-shirt.")
    assert "T-shirt 2 abc ababab [1, 2, 3] 144 1oo1" in out
    assert out.endswith("3;12;21;9;")
