"""Click and collect across contexts: a pickup shipment made ready at its store (``orders``
moves it and the order, ``stores`` keeps the code and the deadline), collected with its code
(the units leave: consumed through the ledger; cash on delivery is captured, ``payments``),
or not collected in time (the worker: the order is cancelled, its units sellable again at the
store, and refunded if the store says so).

Every operation takes THE order lock first (``lock_order_of_shipment``), then the pickup row,
then checks state: a collection racing the expiry runs before or after it, never in between.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth.service import Principal, may_see_warehouse
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod, ShipmentStatus
from oms.orders.models import Order, Shipment
from oms.orders.schemas import TransitionRequest
from oms.outbox.service import record_event
from oms.payments import service as payments_service
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, ProblemError, Unprocessable
from oms.shared.roles import Role
from oms.stores import service as stores_service
from oms.stores.models import Pickup

log = logging.getLogger("oms.stores")

PICKUP_WORKER = Principal(
    key_id=uuid.UUID(int=0), name="pickup-expiry", role=Role.ADMIN, channel=None
)
"""Who marks pickups uncollected (the history's actor: ``apikey:pickup-expiry``)."""


@dataclass(frozen=True, slots=True)
class PickupResult:
    order: Order
    shipment: Shipment
    pickup: Pickup


async def make_ready(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    principal: Principal,
    defaults: stores_service.PickupTerms,
    request_id: str | None,
) -> PickupResult:
    """The picked shipment is waiting at the counter: ``ready_for_pickup`` (the order too once
    all its shipments are), a new collection code, the store's deadline, ``pickup.ready``.
    409 ``awaiting_transfer`` (naming it) while a transfer to fulfil it has not been received."""
    order, shipment = await orders_service.lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    awaited = await stores_service.awaited_transfers(session, shipment_id=shipment.id)
    if awaited:  # a transfer to fulfil: the units it brings must have arrived
        t = awaited[0]
        raise Conflict(
            f"the shipment waits for transfer {t.id} ({t.status}) to bring its units to "
            f"{shipment.warehouse_code}: it can be made ready once the transfer is received",
            code="awaiting_transfer",
            current_status=shipment.status,
            transfer_id=str(t.id),
            transfer_status=t.status,
        )
    await orders_service.advance_pickup(
        session,
        order=order,
        shipment=shipment,
        target=ShipmentStatus.READY_FOR_PICKUP,
        principal=principal,
        request_id=request_id,
    )
    terms = await stores_service.terms_for(
        session, warehouse_id=shipment.warehouse_id, defaults=defaults
    )
    pickup = await stores_service.open_pickup(
        session,
        shipment_id=shipment.id,
        order_id=order.id,
        warehouse_id=shipment.warehouse_id,
        terms=terms,
        now=utcnow(),
    )
    await record_event(
        session,
        type="pickup.ready",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **stores_service.pickup_payload(pickup, warehouse_code=shipment.warehouse_code),
            "collection_code": pickup.code,
            "order_number": order.number,
            "customer_name": order.ship_name,
            "customer_email": order.customer_email,
            "customer_phone": order.customer_phone,
        },
    )
    return PickupResult(order, shipment, pickup)


class WrongCode(Unprocessable):
    code = "collection_code_invalid"


async def collect(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    code: str,
    principal: Principal,
    request_id: str | None,
) -> PickupResult:
    """The customer shows the code at the counter: ``collected`` (the order ``delivered`` once
    all its shipments are), the units consumed, cash on delivery captured.

    A wrong code is counted (committed here, before the 422) and refused; after the store's
    allowance the pickup is locked (409 ``collection_locked``): a new code is issued with
    ``POST /v1/pickups/{shipment_id}/code``."""
    order, shipment = await orders_service.lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    if shipment.status != ShipmentStatus.READY_FOR_PICKUP.value:
        raise Conflict(
            f"the shipment is '{shipment.status}', not ready for pickup",
            code="pickup_not_ready",
            current_status=shipment.status,
        )
    pickup = await stores_service.pickup_for_update(session, shipment_id=shipment_id)
    if pickup.attempts >= pickup.max_attempts:
        raise Conflict(
            f"{pickup.attempts} wrong codes were given: the pickup is locked until a new code "
            "is issued",
            code="collection_locked",
            current_status=shipment.status,
        )
    if not stores_service.code_matches(pickup, code):
        left = await stores_service.count_wrong_attempt(session, pickup=pickup)
        await session.commit()  # the attempt counts even though the request is refused
        raise WrongCode(f"the collection code is wrong ({left} attempts left)", attempts_left=left)
    await orders_service.advance_pickup(
        session,
        order=order,
        shipment=shipment,
        target=ShipmentStatus.COLLECTED,
        principal=principal,
        request_id=request_id,
    )
    await stores_service.close_pickup(
        session, pickup=pickup, status="collected", actor=principal.actor, now=utcnow()
    )
    await _collect_cash_on_delivery(session, order=order, actor=principal.actor)
    await record_event(
        session,
        type="pickup.collected",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data=stores_service.pickup_payload(pickup, warehouse_code=shipment.warehouse_code),
    )
    return PickupResult(order, shipment, pickup)


async def reissue_code(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    principal: Principal,
    request_id: str | None,
) -> PickupResult:
    """A new collection code for a waiting pickup (attempts reset; deadline unchanged), sent
    again as ``pickup.ready``."""
    order, shipment = await orders_service.lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    if shipment.status != ShipmentStatus.READY_FOR_PICKUP.value:
        raise Conflict(
            f"the shipment is '{shipment.status}', not waiting for pickup: no code to issue",
            code="pickup_not_ready",
            current_status=shipment.status,
        )
    pickup = await stores_service.pickup_for_update(session, shipment_id=shipment_id)
    if pickup.status != "ready":
        raise Conflict(
            f"the pickup is '{pickup.status}': no code to issue",
            code="pickup_not_ready",
            current_status=shipment.status,
        )
    pickup.code = stores_service.new_code()
    pickup.attempts = 0
    await session.flush()
    await record_event(
        session,
        type="pickup.ready",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **stores_service.pickup_payload(pickup, warehouse_code=shipment.warehouse_code),
            "collection_code": pickup.code,
            "order_number": order.number,
            "customer_name": order.ship_name,
            "customer_email": order.customer_email,
            "customer_phone": order.customer_phone,
        },
    )
    return PickupResult(order, shipment, pickup)


async def _collect_cash_on_delivery(session: AsyncSession, *, order: Order, actor: str) -> None:
    """Cash on delivery is paid at the counter when the order is collected."""
    cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY.value
    if not cod or order.status != OrderStatus.DELIVERED.value or order.paid_at is not None:
        return
    await payments_service.record_cash_on_delivery(
        session, order_id=order.id, total=order.total_amount, currency=order.currency, actor=actor
    )
    await orders_service.mark_paid(session, order_id=order.id, actor=actor)


async def expire_pickup(session: AsyncSession, *, shipment_id: uuid.UUID, now: datetime) -> bool:
    """Mark one pickup uncollected if it still is due (under its order's lock): the order is
    cancelled (its reserved units released: sellable again at the store), refunded when the
    store's action is ``refund``, ``pickup.uncollected`` recorded. False when it is not due
    (collected, cancelled or re-issued meanwhile)."""
    order, shipment = await orders_service.lock_order_of_shipment(session, shipment_id=shipment_id)
    pickup = await stores_service.pickup_for_update(session, shipment_id=shipment_id)
    if pickup.status != "ready" or pickup.collect_by > now:
        return False
    if shipment.status != ShipmentStatus.READY_FOR_PICKUP.value:
        # the order was cancelled (or the shipment changed) some other way: close the record
        await stores_service.close_pickup(
            session, pickup=pickup, status="cancelled", actor=PICKUP_WORKER.actor, now=now
        )
        return False
    hours = round((pickup.collect_by - pickup.ready_at).total_seconds() / 3600)
    order = await orders_service.transition_order(
        session,
        order_id=order.id,
        change=TransitionRequest(
            to=OrderStatus.CANCELLED,
            reason=f"not collected at {shipment.warehouse_code} within {hours} h",
        ),
        principal=PICKUP_WORKER,
        request_id=None,
    )
    refunded = 0
    if pickup.uncollected_action == "refund":
        _, payments, _ = await payments_service.payments_of(
            session, order_id=order.id, principal=PICKUP_WORKER
        )
        refundable = sum(p.captured_amount - p.refunded_amount for p in payments)
        if refundable > 0:
            refunds = await payments_service.issue_refund(
                session,
                order_id=order.id,
                amount=refundable,
                reason="order not collected",
                principal=PICKUP_WORKER,
            )
            refunded = sum(r.amount for r in refunds)
    await stores_service.close_pickup(
        session, pickup=pickup, status="uncollected", actor=PICKUP_WORKER.actor, now=now
    )
    await record_event(
        session,
        type="pickup.uncollected",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **stores_service.pickup_payload(pickup, warehouse_code=shipment.warehouse_code),
            "action": pickup.uncollected_action,
            "refunded": refunded,
        },
    )
    log.info(
        "pickup uncollected",
        extra={
            "event": "pickup.uncollected",
            "order_id": str(order.id),
            "shipment_id": str(shipment_id),
            "refunded": refunded,
        },
    )
    return True


async def expire_uncollected(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    limit: int = 100,
    shipment_ids: list[uuid.UUID] | None = None,
) -> int:
    """Mark up to ``limit`` pickups past their deadline uncollected, each in a transaction of
    its own; returns how many."""
    async with sessionmaker() as session:
        due = await stores_service.due_pickups(
            session, now=now, limit=limit, shipment_ids=shipment_ids
        )
    expired = 0
    for shipment_id in due:
        try:
            async with sessionmaker() as session, session.begin():
                expired += await expire_pickup(session, shipment_id=shipment_id, now=now)
        except ProblemError as exc:  # e.g. part of the order was collected: a person decides
            log.warning(
                "uncollected pickup left for a person",
                extra={"shipment_id": str(shipment_id), "code": exc.code, "detail": exc.detail},
            )
    return expired


async def read_pickup(
    session: AsyncSession, *, shipment_id: uuid.UUID, principal: Principal
) -> PickupResult:
    """A pickup with its shipment and order as they are now (404 outside the key's scope)."""
    pickup = await stores_service.get_pickup(session, shipment_id=shipment_id)
    if not may_see_warehouse(principal, pickup.warehouse_id):
        raise NotFound(f"no pickup for shipment {shipment_id}", code="pickup_not_found")
    order = await orders_service.get_order(session, order_id=pickup.order_id, principal=principal)
    shipment = await session.get(Shipment, shipment_id)
    if shipment is None:  # pragma: no cover - shipments are never deleted
        raise NotFound(f"no pickup for shipment {shipment_id}", code="pickup_not_found")
    return PickupResult(order, shipment, pickup)
