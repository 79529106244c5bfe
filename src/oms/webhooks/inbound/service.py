"""The inbound webhooks' public service functions: what the router, the intake flow and the
worker call.

Where things are: connectors and the principal a connector acts as (``connectors``), receive ->
verify -> store raw (``receiving``), process: parse, apply in a savepoint, record the outcome
(``processing``), pending events, the inbox API and replay (``inbox``), signature checks
(``verify``), the platforms' payload formats (``adapters/``).

Guarantees, and how:
* Stored before processed: the inbox row is inserted first; processing runs in a SAVEPOINT, so
  a processing error rolls back only the processing and the row is kept as ``failed`` with the
  reason (replayable). Deliveries whose signature fails are not stored (unauthenticated input).
* Deduplicated by event id: ``INSERT ... ON CONFLICT DO NOTHING`` on (connector, event id). A
  concurrent identical delivery waits for the first one's transaction, then returns its outcome.
  A duplicate of a *failed* event is processed again (that is how platforms retry).
* One order per (channel, external reference): different deliveries about the same order are
  serialized by a transaction-level advisory lock on that pair, and ``place_order`` refuses a
  second order with the same external reference (treated as "already exists", not a failure).
* Out of order: an event about an order that does not exist yet is kept ``pending`` (HTTP 202)
  and applied when the order is created through a connector, or by the worker's sweep when it
  was created some other way. Pending events are listed by the inbox API: never dropped.
"""

from __future__ import annotations

from oms.webhooks.inbound.connectors import (
    ConnectorPrincipal,
    connector_principal,
    create_connector,
    delete_connector,
    get_connector,
    list_connectors,
    update_connector,
)
from oms.webhooks.inbound.inbox import (
    InboxFilter,
    apply_pending,
    get_inbox_message,
    list_inbox,
    pending_report,
    replay,
    sweep_pending,
)
from oms.webhooks.inbound.processing import Applied, Applier, Reply, lock_target, process
from oms.webhooks.inbound.receiving import WEBHOOK_PATH, receive, stored_headers

__all__ = [
    "WEBHOOK_PATH",
    "Applied",
    "Applier",
    "ConnectorPrincipal",
    "InboxFilter",
    "Reply",
    "apply_pending",
    "connector_principal",
    "create_connector",
    "delete_connector",
    "get_connector",
    "get_inbox_message",
    "list_connectors",
    "list_inbox",
    "lock_target",
    "pending_report",
    "process",
    "receive",
    "replay",
    "stored_headers",
    "sweep_pending",
    "update_connector",
]
