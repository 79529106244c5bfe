"""Imports every model so that Base.metadata knows all tables (Alembic, tests)."""

from oms.auth.models import ApiKey
from oms.db import Base
from oms.orders.models import IdempotencyKey, Order, OrderEvent, OrderLine
from oms.outbox.models import OutboxEvent

__all__ = ["ApiKey", "Base", "IdempotencyKey", "Order", "OrderEvent", "OrderLine", "OutboxEvent"]
