"""Prometheus metrics of customer messages (exported with the rest on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

ATTEMPTS = Counter(
    "oms_message_attempts_total",
    "Customer message send attempts by channel and outcome (sent, retry, dead, lease_expired)",
    ["channel", "outcome"],
)
PRODUCED = Counter(
    "oms_messages_produced_total",
    "Customer messages produced from events by channel and status (pending, skipped, dead)",
    ["channel", "status"],
)
