"""Why isn't this order moving? Every blocker computed from what is stored, each with what
would clear it: holds, payment still owed, backordered units (with the earliest expected
receipt), shipments not picked within the handling time, inbound events still waiting for the
order, and outbound deliveries of its events that failed. Reads only, through each context's
services."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.inventory import service as inventory_service
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod, ShipmentStatus
from oms.payments import service as payments_service
from oms.waves import service as waves_service
from oms.waves.models import WavePolicy
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.outbound import service as outbound_service

OPEN = (OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.PICKED, OrderStatus.PACKED)
"""Statuses in which an order still has to move on before it ships."""
_LIST_LIMIT = 50


def _blocker(kind: str, detail: str, clears_when: str, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, "clears_when": clears_when, "data": data}


async def _wave_blocker(session: AsyncSession, channel: str, policy: WavePolicy) -> dict[str, Any]:
    """The order waits out of the pick queue for its channel's next wave: when that comes."""
    last = await waves_service.last_wave_at(session, channel=channel)
    triggers = []
    if policy.interval_s:
        triggers.append(f"every {policy.interval_s} s")
    if policy.max_pool:
        triggers.append(f"when {policy.max_pool} orders wait")
    if policy.cutoffs:
        triggers.append("at " + ", ".join(policy.cutoffs) + " UTC")
    when = ", ".join(triggers) + ", whichever comes first" if triggers else "when one is run"
    next_by_schedule = None
    if policy.interval_s:  # counted as the worker does (flows.waves.due_waves): from the last
        # wave, or from when waves were (re-)enabled if none ran since
        since = max(last or policy.enabled_at, policy.enabled_at)
        next_by_schedule = (since + timedelta(seconds=policy.interval_s)).isoformat()
    return _blocker(
        "wave",
        f"waiting for channel {channel}'s next wave (re-optimised with the other waiting "
        "orders before it goes to the pick queue)",
        f"the next wave of {channel} releases it ({when}); POST /v1/waves "
        f'{{"channel": "{channel}"}} runs one now',
        channel=channel,
        interval_s=policy.interval_s,
        max_pool=policy.max_pool,
        cutoffs=policy.cutoffs or [],
        last_wave_at=last.isoformat() if last else None,
        next_by_schedule=next_by_schedule,
    )


async def order_blockers(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    principal: Principal,
    handling_time: timedelta,
    now: datetime,
) -> tuple[str, list[dict[str, Any]]]:
    """The order's status and what stops it from moving on (empty once it has shipped, apart
    from failed deliveries of its events)."""
    order = await orders_service.get_order(session, order_id=order_id, principal=principal)
    status = OrderStatus(order.status)
    out: list[dict[str, Any]] = []
    open_ = status in OPEN
    if open_:
        for h in (await orders_service.holds_for(session, order_ids=[order_id]))[order_id]:
            out.append(
                _blocker(
                    "hold",
                    f"on hold: {h.reason}" + (f" ({h.note})" if h.note else ""),
                    f"POST /v1/orders/{order_id}/holds/{h.id}/release",
                    hold_id=str(h.id),
                    reason=h.reason,
                    rule=h.rule,
                    placed_by=h.placed_by,
                    placed_at=h.placed_at.isoformat(),
                )
            )
        cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY
        if order.paid_at is None and not cod:
            total, payments, _ = await payments_service.payments_of(
                session, order_id=order_id, principal=principal
            )
            captured = sum(p.captured_amount for p in payments)
            out.append(
                _blocker(
                    "payment",
                    f"{total} {order.currency} to pay, {captured} captured",
                    f"captured payments cover the total ({total - captured} {order.currency} more)",
                    total=total,
                    captured=captured,
                    currency=order.currency,
                    payment_method=order.payment_method,
                )
            )
        short = {ln.sku: ln.backordered for ln in order.lines if ln.backordered > 0}
        if short:
            supply = {
                a.sku: a.incoming_supply
                for a in await inventory_service.availability(session, skus=list(short))
            }
            for sku, units in short.items():
                first = supply[sku][0] if supply.get(sku) else None
                expected = f", expected on {first['expected_on']}" if first else ""
                out.append(
                    _blocker(
                        "backorder",
                        f"{units} unit(s) of {sku} backordered",
                        f"stock of {sku} arrives and is allocated{expected}",
                        sku=sku,
                        units=units,
                        expected_on=first["expected_on"] if first else None,
                        expected_warehouse=first["warehouse"] if first else None,
                    )
                )
        if status in (OrderStatus.PLACED, OrderStatus.PAID):
            policy = await waves_service.waits_for(
                session,
                order_id=order_id,
                channel=order.channel,
                priority=order.priority,
                created_at=order.created_at,
            )
            if policy is not None:
                out.append(await _wave_blocker(session, order.channel, policy))
        ready_since = order.paid_at or (order.created_at if cod else None)
        if ready_since is not None and now - ready_since > handling_time:
            views = (await orders_service.shipments_for(session, order_ids=[order_id]))[order_id]
            for v in views:
                if v.shipment.status == ShipmentStatus.PENDING.value:
                    out.append(
                        _blocker(
                            "late_pick",
                            f"shipment {v.shipment.seq} ({v.shipment.warehouse_code}) not picked "
                            f"within {handling_time.total_seconds() / 3600:g} h",
                            f"the warehouse {v.shipment.warehouse_code} picks shipment "
                            f"{v.shipment.id}",
                            shipment_id=str(v.shipment.id),
                            warehouse=v.shipment.warehouse_code,
                            ready_since=ready_since.isoformat(),
                        )
                    )
    if order.external_reference:
        pending, _ = await inbound_service.list_inbox(
            session,
            filters=inbound_service.InboxFilter(
                status=["pending"], external_reference=order.external_reference
            ),
            limit=_LIST_LIMIT,
            cursor=None,
        )
        for msg in pending:
            if msg.channel == order.channel:
                out.append(
                    _blocker(
                        "inbound_pending",
                        f"inbound event {msg.type or msg.topic} from {msg.connector_name} is "
                        "still pending",
                        f"the event is applied (POST /v1/webhooks/inbox/{msg.id}/replay)",
                        inbox_id=msg.id,
                        connector=msg.connector_name,
                        type=msg.type,
                        error_code=msg.error_code,
                    )
                )
    failed, _ = await outbound_service.list_deliveries(
        session,
        filters=outbound_service.DeliveryFilter(status=["failed", "dead"], order_id=order_id),
        limit=_LIST_LIMIT,
        cursor=None,
    )
    for d in failed:
        out.append(
            _blocker(
                "delivery_failed",
                f"delivery of {d.event_type} to subscription {d.subscription_id} is {d.status}",
                "the endpoint accepts it: it is retried"
                if d.status == "failed"
                else f"POST /v1/webhooks/deliveries/{d.id}/redeliver",
                delivery_id=d.id,
                event_type=d.event_type,
                status=d.status,
                subscription_id=str(d.subscription_id),
            )
        )
    return order.status, out
