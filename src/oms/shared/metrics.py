"""Prometheus metrics. With several worker processes set PROMETHEUS_MULTIPROC_DIR (oms serve
does this for you) so /metrics aggregates every process."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "oms_http_requests_total",
    "HTTP requests by method, route and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "oms_http_request_duration_seconds",
    "HTTP request latency by method and route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ORDER_TRANSITIONS = Counter(
    "oms_order_transitions_total",
    "Committed order status transitions",
    ["from_status", "to_status"],
)
ORDERS_PLACED = Counter("oms_orders_placed_total", "Committed orders by channel", ["channel"])
ADMISSION_WAITING = Gauge(
    "oms_http_admission_waiting",
    "Requests waiting for their turn now (OMS_MAX_IN_FLIGHT), all worker processes",
    multiprocess_mode="livesum",
)
ADMISSION_WAIT = Histogram(
    "oms_http_admission_wait_seconds",
    "How long requests that found every turn taken waited for one",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ADMISSION_REJECTED = Counter(
    "oms_http_admission_rejected_total",
    "Requests answered 503 server_busy: no turn within OMS_ADMISSION_TIMEOUT_S",
)


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics (all processes when in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
