"""The outbound webhooks' public service functions: what the router and the worker call.

Where things are: subscriptions (``subscriptions``), outbox events fanned out into deliveries
(``fanout``), claiming and finishing deliveries for the worker, endpoint health (``delivery``),
the delivery log and manual redelivery (``redelivery``), signing and sending one request
(``sender``), where webhooks may go: URL rules, resolve-check-pin at delivery (``targets``).

Every function runs inside the caller's (short) transaction and never commits, and none of them
does network I/O: the worker sends between ``claim`` and ``finish``, outside any transaction.

* Fan-out is crash-safe and idempotent: deliveries are unique per (outbox event, subscription),
  inserted with ON CONFLICT DO NOTHING together with the relay's bookkeeping in one transaction.
  The cursor over the outbox only passes an id gap (a transaction that may still commit) after
  ``outbox_gap_grace_s``; events past a gap are fanned out right away and remembered in
  ``webhook_dispatched``, so nothing is skipped and nothing is fanned out twice.
* Claiming uses ``FOR UPDATE SKIP LOCKED``: concurrent workers share the work. A claimed
  delivery is leased (``next_attempt_at`` = lease expiry); if its worker dies, another one takes
  it after the lease: at least once, never silently dropped. Claims are per subscription, each
  up to its free in-flight slots, so a slow endpoint only holds its own.
* Per (subscription, ordering key = order) only the oldest unfinished delivery is eligible, so
  one order's events arrive in the order they were recorded.
"""

from __future__ import annotations

from oms.webhooks.outbound.delivery import (
    SUCCESS_STAMP_EVERY,
    Claimed,
    RetryPolicy,
    claim,
    disable_endpoint,
    finish,
)
from oms.webhooks.outbound.fanout import fan_out
from oms.webhooks.outbound.redelivery import (
    DeliveryFilter,
    get_delivery,
    list_deliveries,
    redeliver,
    redeliver_since,
)
from oms.webhooks.outbound.subscriptions import (
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    rotate_secret,
    update_subscription,
)

__all__ = [
    "SUCCESS_STAMP_EVERY",
    "Claimed",
    "DeliveryFilter",
    "RetryPolicy",
    "claim",
    "create_subscription",
    "delete_subscription",
    "disable_endpoint",
    "fan_out",
    "finish",
    "get_delivery",
    "get_subscription",
    "list_deliveries",
    "list_subscriptions",
    "redeliver",
    "redeliver_since",
    "rotate_secret",
    "update_subscription",
]
