"""Point-of-sale sales across contexts (#19): a sale at a store's till becomes an order of
channel ``pos`` (``orders``: fulfilment ``counter``), paid (``payments``) and handed over in one
call, its units taken off the store's on hand at once (``inventory`` ledger: a ``sale``
movement; no reservation lifecycle), like any other order in reports and events.

Retry-safe by the till's receipt id: the first thing a sale writes is its ``till_sales`` row
(unique per store and receipt id), so of concurrent retries one writes and the others wait for
it and answer with its order. A sale the store's stock no longer covers is recorded all the
same (the goods have left): what stock there was is taken, the rest is flagged as a stock
discrepancy of the store (``store.stock_discrepancy``), never dropped.

Lock order: the new order's rows first (nobody else can see them yet), its payment and moves,
then the store's stock rows last, in the fixed order, for the shortest hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal, may_see_warehouse
from oms.inventory import service as inventory_service
from oms.inventory.models import Allocation
from oms.orders import domain
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus
from oms.orders.domain import PaymentMethod as PaymentMethod  # (for the stores' router)
from oms.orders.models import CustomerOrderTotal, Order, OrderEvent, OrderLine, Shipment
from oms.orders.schemas import TransitionRequest
from oms.outbox.service import record_event
from oms.payments import service as payments_service
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, ProblemError, Unprocessable
from oms.shared.roles import Role
from oms.stores.models import TillSale

CHANNEL = "pos"


@dataclass(frozen=True, slots=True)
class SaleLine:
    sku: str
    quantity: int
    unit_price: int
    tax_rate_bps: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Sale:
    """One till receipt."""

    receipt_id: str
    currency: str
    lines: list[SaleLine]
    payment_method: PaymentMethod
    customer_id: str | None
    customer_email: str | None
    sold_at: datetime | None

    def fingerprint(self) -> str:
        """What makes a retry the same sale (the receipt's content)."""
        data = dataclasses.asdict(self)
        data["sold_at"] = self.sold_at.isoformat() if self.sold_at else None
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SaleResult:
    sale: TillSale
    order: Order
    replayed: bool


def _acting(principal: Principal) -> Principal:
    """The till sale's own moves (paid, handed over) are the flow's to make, whatever the
    staff key's role: recorded under the staff key's name."""
    return dataclasses.replace(principal, role=Role.ADMIN, channel=None, warehouse_ids=None)


async def _existing(session: AsyncSession, *, warehouse_id: uuid.UUID, receipt_id: str) -> TillSale:
    sale = await session.scalar(
        select(TillSale)
        .where(TillSale.warehouse_id == warehouse_id, TillSale.receipt_id == receipt_id)
        .execution_options(populate_existing=True)
    )
    if sale is None:  # pragma: no cover - the conflicting insert committed it
        raise NotFound("the till sale vanished", code="till_sale_not_found")
    return sale


async def lock_till(session: AsyncSession, *, store_id: uuid.UUID) -> None:
    """Serialize the till sales of one store (an advisory lock held to the commit): the first
    lock of the lock order (``oms.orders.locking``), before the receipt's claim, the order and
    the stock. A batch claims its receipts one after the other and holds the stock rows of
    the first sales while it claims the next: without this lock, a single retry of one of its
    receipts (or another batch) claiming in another order would deadlock with it."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"oms.till:{store_id}"},
    )


async def record_sale(
    session: AsyncSession,
    *,
    store_code: str,
    sale: Sale,
    principal: Principal,
    offline: bool,
    request_id: str | None,
) -> SaleResult:
    """Record one till sale (or answer with the order it already became)."""
    store = await inventory_service.get_warehouse(session, code=store_code)
    if not may_see_warehouse(principal, store.id):
        raise NotFound(f"warehouse '{store_code}' does not exist", code="warehouse_not_found")
    now = utcnow()
    sold_at = sale.sold_at or now
    if sold_at > now:
        raise Unprocessable("a sale cannot be in the future", code="sold_in_the_future")
    await lock_till(session, store_id=store.id)
    fingerprint = sale.fingerprint()
    order_id = uuid.uuid4()
    claimed = (
        await session.execute(
            pg_insert(TillSale)
            .values(
                id=uuid.uuid4(),
                warehouse_id=store.id,
                receipt_id=sale.receipt_id,
                order_id=order_id,
                request_hash=fingerprint,
                offline=offline,
                sold_at=sold_at,
                created_by=principal.actor,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["warehouse_id", "receipt_id"])
            .returning(TillSale.id)
        )
    ).scalar_one_or_none()
    if claimed is None:  # a retry: the first one committed (this insert waited for it)
        first = await _existing(session, warehouse_id=store.id, receipt_id=sale.receipt_id)
        if first.request_hash != fingerprint:
            raise Conflict(
                f"receipt '{sale.receipt_id}' of {store.code} was recorded with other content",
                code="receipt_conflict",
                order_id=str(first.order_id),
            )
        order = await orders_service.lock_order(session, order_id=first.order_id)
        return SaleResult(first, order, replayed=True)

    acting = _acting(principal)
    amounts = [
        domain.line_amounts(ln.quantity, ln.unit_price, ln.tax_rate_bps) for ln in sale.lines
    ]
    totals = domain.order_totals(amounts, 0)
    email = sale.customer_email.lower() if sale.customer_email else None
    lines = [
        OrderLine(
            id=uuid.uuid4(),
            order_id=order_id,
            line_no=i,
            sku=ln.sku,
            name=ln.name,
            quantity=ln.quantity,
            unit_price=ln.unit_price,
            tax_rate_bps=ln.tax_rate_bps,
            backordered=0,
            cancelled=0,
            subtotal_amount=a.subtotal,
            tax_amount=a.tax,
            total_amount=a.total,
            placed_at=sold_at,
            channel=CHANNEL,
            currency=sale.currency,
        )
        for i, (ln, a) in enumerate(zip(sale.lines, amounts, strict=True), start=1)
    ]
    order = Order(
        id=order_id,
        status=OrderStatus.PLACED.value,
        version=1,
        channel=CHANNEL,
        external_reference=f"{store.code}:{sale.receipt_id}",
        customer_id=sale.customer_id,
        customer_email=email,
        customer_phone=None,
        customer_anonymous=sale.customer_id is None and email is None,
        currency=sale.currency,
        payment_method=sale.payment_method.value,
        priority=domain.Priority.STANDARD.value,
        ship_name=store.name,
        # handed over at the store: its address. Stores need not record one in full, but an
        # order's address is whole (>= 1 non-empty line, a city), so the name stands in.
        ship_lines=[ln for ln in store.address_lines or () if ln] or [store.name],
        ship_city=store.city or store.name,
        ship_postal_code=store.postal_code or None,
        ship_region=None,
        ship_country=store.country,
        ship_latitude=store.latitude,
        ship_longitude=store.longitude,
        subtotal_amount=totals.subtotal,
        tax_amount=totals.tax_total,
        shipping_fee=0,
        total_amount=totals.total,
        fulfillment="counter",
        pickup_warehouse_code=store.code,
        attributes={"receipt_id": sale.receipt_id, "offline": offline},
        routing={"warehouses": [store.code], "fully_filled": True, "backorders": []},
        created_by=principal.actor,
        created_at=sold_at,
        updated_at=now,
        units_ordered=sum(ln.quantity for ln in sale.lines),
        units_shipped=0,
        live_shipments=1,
        units_returned=0,
        lines=lines,
    )
    shipment = Shipment(
        id=uuid.uuid4(),
        order_id=order_id,
        seq=1,
        warehouse_id=store.id,
        warehouse_code=store.code,
        status=domain.ShipmentStatus.PENDING.value,
        version=1,
        created_at=sold_at,
        updated_at=now,
    )
    session.add(order)
    await session.flush()  # the order row first: lines and shipment reference it
    session.add_all([*lines, shipment])
    session.add(
        OrderEvent(
            order_id=order_id,
            kind="transition",
            from_status=None,
            to_status=OrderStatus.PLACED.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason="till sale",
            data={"receipt_id": sale.receipt_id, "store": store.code},
            request_id=request_id,
            created_at=sold_at,
        )
    )
    key = sale.customer_id or email
    if key is not None:  # the top-customers report's totals, as placement keeps them
        await session.execute(
            pg_insert(CustomerOrderTotal)
            .values(
                currency=sale.currency,
                guest=sale.customer_id is None,
                customer_key=key,
                orders=1,
                amount=totals.total,
            )
            .on_conflict_do_update(
                index_elements=["currency", "guest", "customer_key"],
                set_={
                    "orders": CustomerOrderTotal.orders + 1,
                    "amount": orders_service.saturating_total(
                        CustomerOrderTotal.amount, totals.total
                    ),
                },
            )
        )
    await session.flush()
    await record_event(
        session,
        type="order.placed",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={**orders_service.order_summary(order), "warehouses": [store.code]},
    )
    # paid ...
    if totals.total > 0:
        await payments_service.record_payment(
            session,
            order_id=order_id,
            principal=acting,
            method=sale.payment_method,
            provider="till",
            provider_reference=f"{store.code}:{sale.receipt_id}",
            amount=totals.total,
            currency=sale.currency,
            status="captured",
            request_id=request_id,
        )
    else:
        await orders_service.transition_order(
            session,
            order_id=order_id,
            change=TransitionRequest(to=OrderStatus.PAID, reason="nothing to pay"),
            principal=acting,
            request_id=request_id,
        )
    # ... and handed over (the state machine's counter-sale edge: paid → delivered)
    order = await orders_service.transition_order(
        session,
        order_id=order_id,
        change=TransitionRequest(to=OrderStatus.DELIVERED, reason="handed over at the till"),
        principal=acting,
        request_id=request_id,
    )
    # the store's stock last: what it holds unreserved is taken, the rest is a discrepancy
    taken = await inventory_service.take_out(
        session,
        warehouse_id=store.id,
        units=[inventory_service.Units(ln.sku, ln.quantity) for ln in sale.lines],
        movement_type="sale",
        reference_type="shipment",
        reference_id=str(shipment.id),
        actor=principal.actor,
        partial=True,
    )
    left = {t.sku: t.taken for t in taken}
    for ln in lines:
        units = min(ln.quantity, left[ln.sku])
        left[ln.sku] -= units
        if units:
            session.add(
                Allocation(
                    id=uuid.uuid4(),
                    order_id=order_id,
                    order_line_id=ln.id,
                    shipment_id=shipment.id,
                    warehouse_id=store.id,
                    sku=ln.sku,
                    quantity=units,
                    status="consumed",
                    created_at=now,
                    closed_at=now,
                    placed_at=sold_at,
                    channel=CHANNEL,
                    currency=sale.currency,
                )
            )
    shipped = sum(t.taken for t in taken)
    await session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(units_shipped=shipped)
        .execution_options(synchronize_session=False)
    )
    uncovered = [{"sku": t.sku, "quantity": t.uncovered} for t in taken if t.uncovered]
    till = await _existing(session, warehouse_id=store.id, receipt_id=sale.receipt_id)
    if uncovered:
        till.stock_discrepancy = True
        till.uncovered = uncovered
        await record_event(
            session,
            type="store.stock_discrepancy",
            aggregate_type="store",
            aggregate_id=store.code,
            data={
                "store": store.code,
                "receipt_id": sale.receipt_id,
                "order_id": str(order_id),
                "uncovered": uncovered,
            },
        )
    await session.flush()
    return SaleResult(till, order, replayed=False)


@dataclass(frozen=True, slots=True)
class BatchItem:
    receipt_id: str
    result: SaleResult | None
    problem: dict[str, Any] | None


async def record_batch(
    session: AsyncSession,
    *,
    store_code: str,
    sales: list[Sale],
    principal: Principal,
    request_id: str | None,
) -> list[BatchItem]:
    """Sales a till kept while offline, in one request: each recorded (or replayed) on its
    own savepoint, so one refused receipt (other content under a known receipt id, a sale in
    the future) is reported and the others still stand. The store's till lock is taken first
    and held to the commit (see :func:`lock_till`)."""
    store = await inventory_service.get_warehouse(session, code=store_code)
    await lock_till(session, store_id=store.id)
    out: list[BatchItem] = []
    for sale in sales:
        try:
            async with session.begin_nested():
                result = await record_sale(
                    session,
                    store_code=store_code,
                    sale=sale,
                    principal=principal,
                    offline=True,
                    request_id=request_id,
                )
            out.append(BatchItem(sale.receipt_id, result, None))
        except ProblemError as exc:
            if exc.code == "warehouse_not_found":
                raise
            out.append(BatchItem(sale.receipt_id, None, exc.to_dict()))
    return out
