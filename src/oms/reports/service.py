"""The reports context's public service functions: reports computed in SQL over the order
history, one aggregate query per figure set.

Where things are: the window and the SQL every report shares (``window``), products, countries,
channels and days (``sales``), customers (``customers``), fulfilment KPIs and late orders
(``fulfilment``), returns (``returns``). Every function takes the request's session and never
commits.

Definitions (the API documentation repeats them):

* **Window**: orders *placed* (``orders.created_at``) in ``[start, end)``, optionally of one
  channel and/or one currency. Every report looks at the orders of its window, so a figure
  always belongs to the day the order was placed (cohort view), whenever it later shipped.
* **Sale**: an order of the window that is not ``cancelled``. Returned orders stay sales
  (revenue is gross of returns; the return figures show what came back).
* **Revenue**: ``sum(orders.total_amount)`` of sales (tax and shipping included), in minor
  units, **per currency**: amounts of different currencies are never added up.
* **Product revenue**: ``sum(order_lines.total_amount)`` of the sales' lines (tax included,
  shipping excluded), per currency.

Every query is plain SQL with bound parameters; the few pieces spliced into the text (sort
columns, the optional channel/currency predicates) come from fixed whitelists, never from input.
"""

from __future__ import annotations

from oms.reports.customers import (
    MAX_CANDIDATES,
    MAX_LOOKUPS,
    MAX_PRUNED_LIMIT,
    PRUNING,
    SEED_FACTOR,
    Pruning,
    customer_bounds,
    top_customers,
    top_customers_within,
)
from oms.reports.fulfilment import (
    DURATIONS,
    MIN_SAMPLE,
    PERCENTILES,
    SAMPLE_MASK,
    SAMPLING,
    SIGMAS,
    Sampling,
    fulfilment,
    late_orders,
)
from oms.reports.returns import returns_by_product, returns_by_reason
from oms.reports.sales import daily, top_channels, top_countries, top_products
from oms.reports.window import OPEN_STATUSES, Sort, Window

__all__ = [
    "DURATIONS",
    "MAX_CANDIDATES",
    "MAX_LOOKUPS",
    "MAX_PRUNED_LIMIT",
    "MIN_SAMPLE",
    "OPEN_STATUSES",
    "PERCENTILES",
    "PRUNING",
    "SAMPLE_MASK",
    "SAMPLING",
    "SEED_FACTOR",
    "SIGMAS",
    "Pruning",
    "Sampling",
    "Sort",
    "Window",
    "customer_bounds",
    "daily",
    "fulfilment",
    "late_orders",
    "returns_by_product",
    "returns_by_reason",
    "top_channels",
    "top_countries",
    "top_customers",
    "top_customers_within",
    "top_products",
]
