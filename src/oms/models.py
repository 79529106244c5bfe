"""Imports every model so that Base.metadata knows all tables (Alembic, tests)."""

from oms.auth.models import ApiKey
from oms.db import Base
from oms.inventory.block_models import StockBlock
from oms.inventory.models import (
    Allocation,
    IncomingSupply,
    InventoryMovement,
    StockLevel,
    Warehouse,
)
from oms.orders.exception_models import ShipmentException
from oms.orders.hold_models import ExpiryPolicy, HoldRule, OrderHold
from oms.orders.models import IdempotencyKey, Order, OrderEvent, OrderLine, Shipment
from oms.outbox.models import OutboxEvent
from oms.payments.models import Payment, Refund
from oms.returns.models import Return, ReturnLine
from oms.routing.models import RoutingPolicyRow
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
    "Attempt",
    "Base",
    "Connector",
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
    "Refund",
    "Return",
    "ReturnLine",
    "RelayState",
    "RoutingPolicyRow",
    "Shipment",
    "ShipmentException",
    "StockBlock",
    "StockLevel",
    "Subscription",
    "Warehouse",
]
