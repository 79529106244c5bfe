"""Imports every model so that Base.metadata knows all tables (Alembic, tests)."""

from oms.auth.models import ApiKey, ApiKeyWarehouse
from oms.console.models import ConsoleSession
from oms.db import Base
from oms.inventory.block_models import StockBlock
from oms.inventory.feed_models import ChannelStock, StockChange, StockFeedCursor
from oms.inventory.models import (
    Allocation,
    IncomingSupply,
    InventoryMovement,
    StockLevel,
    Warehouse,
)
from oms.messages.models import (  # noqa: F401  (issue 22)
    Message,
    MessageAttempt,
    MessageOptOut,
    MessageProvider,
    MessageRelayState,
    MessageRule,
    MessageTemplate,
    ProducedEvent,
)
from oms.orders.exception_models import ShipmentException
from oms.orders.hold_models import ExpiryPolicy, HoldRule, OrderHold
from oms.orders.models import IdempotencyKey, Order, OrderEvent, OrderLine, Shipment
from oms.outbox.models import OutboxEvent
from oms.payments.models import Payment, Refund
from oms.promises.models import TransitTimeRow, WarehouseCalendar  # noqa: F401  (issue 18)
from oms.purchasing.models import (  # noqa: F401  (issue 18)
    PurchaseOrder,
    PurchaseOrderLine,
    PurchaseOrderReceipt,
    ReorderPolicy,
    Supplier,
)
from oms.returns.models import Return, ReturnLine
from oms.routing.models import RoutingPolicyRow
from oms.stores.models import Pickup, StorePolicy, TillSale, Transfer, TransferLine
from oms.tracking.models import TrackingKey  # noqa: F401  (issue 22)
from oms.waves.models import Wave, WaveOrder, WavePolicy  # noqa: F401  (issue 20)
from oms.webhooks.inbound.models import Connector, InboxMessage
from oms.webhooks.outbound.models import (
    Attempt,
    Delivery,
    DispatchedEvent,
    RelayState,
    Subscription,
)

__all__ = [
    "Allocation",
    "ApiKey",
    "ApiKeyWarehouse",
    "Attempt",
    "Base",
    "ChannelStock",
    "Connector",
    "ConsoleSession",
    "Delivery",
    "DispatchedEvent",
    "ExpiryPolicy",
    "HoldRule",
    "IdempotencyKey",
    "InboxMessage",
    "IncomingSupply",
    "InventoryMovement",
    "Order",
    "OrderEvent",
    "OrderHold",
    "OrderLine",
    "OutboxEvent",
    "Payment",
    "Pickup",
    "Refund",
    "Return",
    "ReturnLine",
    "RelayState",
    "RoutingPolicyRow",
    "Shipment",
    "ShipmentException",
    "StockBlock",
    "StockChange",
    "StockFeedCursor",
    "StockLevel",
    "StorePolicy",
    "Subscription",
    "TillSale",
    "Transfer",
    "TransferLine",
    "Warehouse",
]
