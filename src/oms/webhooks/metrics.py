"""Prometheus metrics of the webhook pipeline (exported with the rest on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INBOUND = Counter(
    "oms_webhook_inbound_total",
    "Inbound webhook deliveries by connector format and outcome",
    ["format", "outcome"],
)
OUTBOUND_ATTEMPTS = Counter(
    "oms_webhook_delivery_attempts_total",
    "Outbound webhook attempts by outcome (succeeded, retry, dead, lease_expired)",
    ["outcome"],
)
OUTBOUND_LATENCY = Histogram(
    "oms_webhook_delivery_duration_seconds",
    "Outbound webhook HTTP attempt duration",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ENDPOINTS_DISABLED = Counter(
    "oms_webhook_endpoints_disabled_total", "Subscriptions disabled after repeated failures"
)
