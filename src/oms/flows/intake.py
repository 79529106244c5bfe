"""A connector's event applied to orders, across contexts: an order created by a marketplace
(placed through ``orders``, its payment recorded through ``payments``), updated or edited in
the sales channel (applied as an order edit), cancelled, paid or refunded. The inbox
(``webhooks.inbound``) verifies, stores and deduplicates deliveries and calls
:func:`apply_event` for each; it is given this function by the router and the worker.

Changes from the sales channel, applied as edits (``orders.edit_order``: only unpicked units
change; otherwise the edit's 409 fails the delivery with its reason and nothing is applied):

* ``order.updated`` (Shopify ``orders/updated``, WooCommerce ``order.updated``): the lines and
  address as they are now (an address that differs only by its coordinates, geocoded by the
  platform after the order was created, is no change). Lines are matched by the channel's
  line id when every line of the order has one (kept at intake), else by SKU (orders placed
  before oms kept the ids); more units go to the last line of a match, fewer are taken from
  the last; a line the channel no longer has keeps 0 units; a new one is added with its id. A
  WooCommerce update of a paid order carries its payment too: recorded (once, by reference)
  after the edit, since it pays the new total.
* ``order.edited`` (Shopify ``orders/edited``): units added to or removed from lines named by
  the channel's line id. An id no line of the order carries fails the delivery (422
  ``unknown_line_items``), nothing applied.
* Either is refused whole (422, the delivery failed with the reason, nothing applied) when it
  is in another currency than the order (``currency_mismatch``: prices of another currency are
  not this order's) or would leave a line with more units than an order line may have
  (``invalid_line_change``: :data:`LINE_QUANTITY_MAX`, as ``POST /v1/orders`` and the edits
  API).
* The channel's time of each applied change is kept on the order (``channel_updated_at``): an
  update older than it, or an edit committed before it (already in an update applied), is
  acknowledged and not applied again. A shipped, delivered, returned or cancelled order takes
  no change (acknowledged, not applied): what a channel removes from a shipped line is a
  return or a refund there.

Locks, in the lock order of ``oms.orders.locking``: the (channel, external reference) advisory
lock first, then the order's own lock (taken by the order and payment services)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod
from oms.orders.schemas import OrderCreate, TransitionRequest
from oms.payments import service as payments_service
from oms.shared.errors import Conflict, NotFound, Unprocessable
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.inbound.adapters.base import EventType, InboundEvent, LineChange
from oms.webhooks.inbound.models import Connector
from oms.webhooks.inbound.service import Applied


async def _find_order(
    session: AsyncSession, *, channel: str, event: InboundEvent
) -> orders_service.OrderRef | None:
    return await orders_service.find_order(
        session,
        channel=channel,
        order_id=event.order_id,
        external_reference=event.external_reference,
    )


async def apply_event(
    session: AsyncSession,
    *,
    event: InboundEvent,
    order_data: OrderCreate | None,
    connector: Connector,
    inbox_id: int,
    request_id: str | None,
) -> Applied:
    principal = inbound_service.connector_principal(connector)
    channel = connector.channel
    if event.external_reference is not None:
        await inbound_service.lock_target(
            session, channel=channel, external_reference=event.external_reference
        )
    if event.type is EventType.ORDER_CREATED:
        assert order_data is not None
        assert event.external_reference is not None
        try:
            order = await orders_service.place_order(
                session,
                data=order_data,
                principal=principal,
                request_id=request_id,
                risk_level=event.risk_level,
            )
            order_id, detail = order.id, "order created"
            created = True
            await orders_service.set_external_line_ids(
                session,
                order_id=order.id,
                line_ids=event.line_ids,
                channel_updated_at=event.channel_updated_at,
            )
        except Conflict as exc:
            if exc.code != "duplicate_external_reference":
                raise
            order_id, detail, created = uuid.UUID(exc.extra["order_id"]), "order exists", False
        if created and event.payment is not None:
            row = await _find_order(session, channel=channel, event=event)
            assert row is not None
            detail += "; " + await _capture(
                session,
                order=row,
                event=event,
                inbox_id=inbox_id,
                principal=principal,
                request_id=request_id,
            )
        applied = await inbound_service.apply_pending(
            session,
            channel=channel,
            external_reference=event.external_reference,
            request_id=request_id,
            apply=apply_event,
        )
        if applied:
            detail += f"; {applied} pending event(s) applied"
        return Applied("processed", order_id, detail)
    row = await _find_order(session, channel=channel, event=event)
    if row is None:
        if event.order_id is not None:
            raise NotFound(
                f"order {event.order_id} does not exist in channel '{channel}'",
                code="order_not_found",
            )
        return Applied(
            "pending",
            None,
            f"no order '{event.external_reference}' in channel '{channel}' yet; the event is "
            "kept and applied when the order arrives",
        )
    if event.type is EventType.ORDER_UPDATED:
        assert order_data is not None
        # the lines first: the payment a paid order's update carries is of its new total
        detail = await _update(
            session,
            order_id=row.id,
            data=order_data,
            event=event,
            principal=principal,
            request_id=request_id,
        )
        if event.payment is not None:
            detail += "; " + await _capture(
                session,
                order=row,
                event=event,
                inbox_id=inbox_id,
                principal=principal,
                request_id=request_id,
            )
        return Applied("processed", row.id, detail)
    if event.type is EventType.ORDER_EDITED:
        detail = await _edited(
            session, order_id=row.id, event=event, principal=principal, request_id=request_id
        )
        return Applied("processed", row.id, detail)
    if event.type is EventType.ORDER_CANCELLED:
        # the order's state is read under its lock (a concurrent cancel may be committing)
        locked = await orders_service.lock_order(session, order_id=row.id)
        if locked.status == OrderStatus.CANCELLED.value:
            return Applied("processed", row.id, "order was already cancelled")
        await orders_service.transition_order(
            session,
            order_id=row.id,
            change=TransitionRequest(to=OrderStatus.CANCELLED, reason=event.reason),
            principal=principal,
            request_id=request_id,
        )
        return Applied("processed", row.id, "order cancelled")
    if event.type is EventType.PAYMENT_CAPTURED:
        detail = await _capture(
            session,
            order=row,
            event=event,
            inbox_id=inbox_id,
            principal=principal,
            request_id=request_id,
        )
        return Applied("processed", row.id, detail)
    detail = await _refund(session, order=row, event=event, inbox_id=inbox_id, principal=principal)
    return Applied("processed", row.id, detail)


LINE_QUANTITY_MAX = 10_000
"""The most units an order line may hold (``OrderLineCreate.quantity``, the edits API): a
channel's change may not take a line past it either."""


def _too_many(quantities: dict[uuid.UUID, int], lines: Sequence[Any], what: str) -> None:
    """422 ``invalid_line_change`` naming the lines ``quantities`` takes past the limit."""
    skus = {ln.id: ln for ln in lines}
    over = [
        {"line_id": str(lid), "sku": skus[lid].sku, "quantity": q}
        for lid, q in quantities.items()
        if q > LINE_QUANTITY_MAX
    ]
    if over:
        raise Unprocessable(
            f"{what} leaves more than {LINE_QUANTITY_MAX} units on a line: "
            + ", ".join(f"{o['sku']} ({o['quantity']})" for o in over),
            code="invalid_line_change",
            lines=over,
        )


_NOT_APPLIED = (
    OrderStatus.SHIPPED.value,
    OrderStatus.DELIVERED.value,
    OrderStatus.RETURNED.value,
    OrderStatus.CANCELLED.value,
)
"""Orders a channel's line or address change no longer applies to: their lines are history
(what the channel removes from a shipped line is a return or a refund there)."""


def _stale(seen: datetime | None, at: datetime | None, *, or_equal: bool) -> bool:
    """The channel's change of ``at`` is older than (``or_equal``: or as old as) the state
    already applied to the order (``seen``)."""
    if at is None or seen is None:
        return False
    return at <= seen if or_equal else at < seen


_COORDINATES = ("latitude", "longitude")


def _same_place(new: dict[str, Any], current: dict[str, Any]) -> bool:
    """The same address but for its coordinates: a platform geocodes an address after the
    order was created (Shopify's ``latitude``/``longitude`` arrive in a later update), which is
    no change of where the order goes (no re-plan, nothing refused on a picked order)."""

    def place(address: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in address.items() if k not in _COORDINATES}

    return place(new) == place(current)


def _spread(lines: Sequence[Any], want: int, quantities: dict[uuid.UUID, int]) -> None:
    """``want`` units over the order lines of one match: more go to its last line, fewer are
    taken from the last ones first."""
    diff = want - sum(ln.quantity for ln in lines)
    if diff > 0:
        quantities[lines[-1].id] = lines[-1].quantity + diff
    for ln in reversed(lines):
        if diff >= 0:
            break
        take = min(-diff, ln.quantity)
        if take:
            quantities[ln.id] = ln.quantity - take
            diff += take


async def _update(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    data: OrderCreate,
    event: InboundEvent,
    principal: Principal,
    request_id: str | None,
) -> str:
    """The platform's lines and shipping address as they are now, applied to the order as an
    edit (``orders.edit_order``) where they differ. Edits that touch picked units are refused
    (409 ``units_not_editable``): the inbox row is kept as failed with that reason."""
    # read under the order's lock: a concurrent edit, pick or cancel may be committing
    order = await orders_service.lock_order(session, order_id=order_id)
    if order.status in _NOT_APPLIED:
        return f"order is '{order.status}'; the update is not applied"
    if _stale(order.channel_updated_at, event.channel_updated_at, or_equal=False):
        return (
            f"the update (of {event.channel_updated_at}) is older than the one applied "
            f"(of {order.channel_updated_at}); not applied"
        )
    if data.currency != order.currency:
        raise Unprocessable(
            f"the update is in {data.currency}, the order in {order.currency}: its prices are "
            "not this order's; nothing applied",
            code="currency_mismatch",
            title="Currency mismatch",
            order_currency=order.currency,
            update_currency=data.currency,
        )
    ids = list(event.line_ids) if len(event.line_ids) == len(data.lines) else []
    lines = sorted(order.lines, key=lambda ln: ln.line_no)
    by_id = bool(ids) and None not in ids and all(ln.external_line_id for ln in lines)
    key: Callable[[Any], str] = (
        (lambda ln: str(ln.external_line_id)) if by_id else (lambda ln: str(ln.sku))
    )
    wanted: dict[str, int] = defaultdict(int)
    platform: dict[str, list[int]] = defaultdict(list)  # match -> indexes of data.lines
    for i, new in enumerate(data.lines):
        k = ids[i] if by_id else new.sku
        assert k is not None
        wanted[k] += new.quantity
        platform[k].append(i)
    matched: dict[str, list[Any]] = defaultdict(list)
    for ln in lines:
        matched[key(ln)].append(ln)
    quantities: dict[uuid.UUID, int] = {}
    for k, group in matched.items():
        _spread(group, wanted.get(k, 0), quantities)
    _too_many(quantities, lines, "the update")
    added = [i for k, idx in platform.items() if k not in matched for i in idx]
    add = tuple(data.lines[i] for i in added)
    address = data.shipping_address
    same_address = _same_place(address.model_dump(mode="json"), orders_service.address_of(order))
    if not quantities and not add and same_address:
        if event.channel_updated_at is not None:
            await orders_service.record_channel_update(
                session, order_id=order_id, at=event.channel_updated_at
            )
        return "no change to the lines or the shipping address"
    result = await orders_service.edit_order(
        session,
        order_id=order_id,
        spec=orders_service.EditSpec(
            quantities=quantities,
            add=add,
            address=None if same_address else address,
            add_external_ids=tuple(ids[i] if ids else None for i in added),
        ),
        principal=principal,
        expected_version=None,
        reason="updated in the sales channel",
        request_id=request_id,
        dry_run=False,
    )
    if event.channel_updated_at is not None:
        await orders_service.record_channel_update(
            session, order_id=order_id, at=event.channel_updated_at
        )
    changed = sum(1 for ln in result.lines if ln["change"] != "unchanged")
    return f"order edited ({changed} line(s) changed" + (
        ")" if same_address else ", shipping address changed)"
    )


def _deltas(changes: Sequence[LineChange]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for c in changes:
        out[c.line_id] += c.delta
    return dict(out)


async def _edited(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    event: InboundEvent,
    principal: Principal,
    request_id: str | None,
) -> str:
    """The platform's edit (units added to or removed from its line items, by line item id)
    applied to the lines carrying those ids, as one order edit. An id no line carries: 422
    ``unknown_line_items``, nothing applied."""
    order = await orders_service.lock_order(session, order_id=order_id)
    edit = f"edit {event.edit_id}" if event.edit_id else "the edit"
    if order.status in _NOT_APPLIED:
        return f"order is '{order.status}'; {edit} is not applied"
    if _stale(order.channel_updated_at, event.channel_updated_at, or_equal=True):
        return (
            f"{edit} (of {event.channel_updated_at}) is already in the update applied "
            f"(of {order.channel_updated_at}); not applied again"
        )
    matched: dict[str, list[Any]] = defaultdict(list)
    for ln in sorted(order.lines, key=lambda ln: ln.line_no):
        if ln.external_line_id:
            matched[ln.external_line_id].append(ln)
    deltas = _deltas(event.line_changes)
    unknown = sorted(lid for lid in deltas if lid not in matched)
    if unknown:
        raise Unprocessable(
            f"{edit} names line items this order has no line for: "
            + ", ".join(unknown)
            + " (a line item added in the channel arrives with its SKU and price in the "
            "order's update, not in the edit)",
            code="unknown_line_items",
            title="Unknown line items",
            unknown_line_items=unknown,
        )
    quantities: dict[uuid.UUID, int] = {}
    too_few = []
    for lid, delta in deltas.items():
        have = sum(ln.quantity for ln in matched[lid])
        if have + delta < 0:
            too_few.append({"line_item_id": lid, "quantity": have, "delta": delta})
            continue
        _spread(matched[lid], have + delta, quantities)
    _too_many(quantities, order.lines, edit)
    if too_few:
        raise Unprocessable(
            f"{edit} removes more units than these lines have: "
            + ", ".join(f"{t['line_item_id']} ({t['quantity']}, {t['delta']})" for t in too_few),
            code="invalid_line_change",
            lines=too_few,
        )
    if not quantities:
        detail = f"{edit} changes no units"
    else:
        result = await orders_service.edit_order(
            session,
            order_id=order_id,
            spec=orders_service.EditSpec(quantities=quantities),
            principal=principal,
            expected_version=None,
            reason=f"{edit} in the sales channel",
            request_id=request_id,
            dry_run=False,
        )
        changed = sum(1 for ln in result.lines if ln["change"] != "unchanged")
        detail = f"order edited ({changed} line(s) changed by {edit})"
    if event.channel_updated_at is not None:
        await orders_service.record_channel_update(
            session, order_id=order_id, at=event.channel_updated_at
        )
    return detail


def _provider_reference(event: InboundEvent, inbox_id: int) -> str:
    assert event.payment is not None
    return event.payment.reference or f"inbox:{inbox_id}"


async def _capture(
    session: AsyncSession,
    *,
    order: orders_service.OrderRef,
    event: InboundEvent,
    inbox_id: int,
    principal: Principal,
    request_id: str | None,
) -> str:
    """Record the captured payment through the payments service (idempotent by reference)."""
    assert event.payment is not None
    payment, created = await payments_service.record_payment(
        session,
        order_id=order.id,
        principal=principal,
        method=PaymentMethod(order.payment_method),
        provider=principal.actor,
        provider_reference=_provider_reference(event, inbox_id),
        amount=event.payment.amount,
        currency=event.payment.currency,
        status="captured",
        request_id=request_id,
    )
    if not created:
        return "payment was already recorded"
    now = await orders_service.find_order(session, channel=order.channel, order_id=order.id)
    status = now.status if now is not None else None
    if status == OrderStatus.PAID.value and order.status == OrderStatus.PLACED.value:
        return "payment captured; order paid"
    return f"payment recorded ({payment.captured_amount} captured); order is '{status}'"


async def _refund(
    session: AsyncSession,
    *,
    order: orders_service.OrderRef,
    event: InboundEvent,
    inbox_id: int,
    principal: Principal,
) -> str:
    """Record the provider's refund through the payments service (idempotent by reference)."""
    assert event.payment is not None
    refunds, created = await payments_service.record_provider_refund(
        session,
        order_id=order.id,
        amount=event.payment.amount,
        currency=event.payment.currency,
        reason=event.reason or "refunded by the payment provider",
        provider_reference=_provider_reference(event, inbox_id),
        principal=principal,
    )
    if not created:
        return "refund was already recorded"
    return f"refund recorded ({sum(r.amount for r in refunds)} refunded)"
