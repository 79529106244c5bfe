"""Event types as subscribers see them: patterns and matching.

Events are recorded with ``oms.outbox.service.record_event(type=...)``, checked against the
registry in ``oms.shared.events``; this module matches subscriptions against it (and
``GET /v1/webhooks/event-types`` shows it). Add a new type there when you start emitting it.
Wildcards (``order.*``) match by family, so a subscriber to ``shipment.*`` also receives
shipment types not yet listed.
"""

from __future__ import annotations

import re

from oms.shared.events import EVENTS

EVENT_TYPES: dict[str, str] = {t: spec.description for t, spec in EVENTS.items()}

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
