"""Every pair of state-changing operations on one order, at once, many rounds.

The registry below lists each entry point that changes an order (order and shipment moves,
re-routing, payments, refunds, returns, the payment provider's webhooks) with the order states
from which it succeeds on its own. For every unordered pair (an operation with itself
included) that shares such a state, each round builds a fresh order in that state through the
API, fires both requests together and checks:

* every answer is a success or a 4xx problem document (never a 5xx), and at least one wins;
* the outcome is one a serial execution gives: both requests were run one after the other, in
  each order, on fresh orders first; the race must end like one of those runs (or, when a
  loser was refused where it would have succeeded after the winner, like the winner alone);
* the order invariants (``check_order_invariants``): stock, allocations, the order's counts,
  returns, money, history and outbox agree with the final state.

The serial runs double as a check of the registry: each operation, run first, must succeed.
``RACED_ROUTES`` and ``NOT_RACED`` (below ``OPS``) account for every writing route of the app;
``test_race_registry.py`` fails when one is in neither.

Rounds per pair: ``OMS_RACE_ROUNDS`` (default 3). Each pair races from the latest state both
operations apply to; ``OMS_RACE_ALL_STATES=1`` races it from every shared state.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from oms.flows.expiry import expire_unpaid
from oms.flows.pickup import expire_uncollected
from oms.flows.promises import announce
from oms.flows.waves import released_by, run_wave
from oms.shared.clock import utcnow
from tests.races.conftest import (
    ROUNDS,
    STATES,
    Harness,
    Outcome,
    RaceOrder,
    answer_problems,
    at_once,
    check_order_invariants,
    fingerprint_diff,
    order_fingerprint,
    order_invariant_violations,
    stock_baseline,
    stock_violations_since,
)

pytestmark = pytest.mark.slow

Call = Callable[[Harness, RaceOrder], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Op:
    """One state-changing entry point, and the states from which it succeeds on its own."""

    name: str
    states: tuple[str, ...]
    call: Call


def _states(*names: str) -> tuple[str, ...]:
    assert set(names) <= set(STATES), names
    return tuple(s for s in STATES if s in names)


UNSHIPPED = _states("placed", "authorized", "paid", "split", "picked_one", "picked", "packed")
UNSHIPPED_OR_HELD = _states(*UNSHIPPED, "held")  # a held order can still be cancelled
CAPTURED = _states(
    "paid",
    "picked_one",
    "picked",
    "packed",
    "shipped",
    "delivered",
    "return_requested",
    "return_approved",
)
# Click-and-collect orders (off the chain), paid: what works on a paid order works on them.
# An operation lists the off-chain states it succeeds from where that adds pairs with the
# operations of those states without moving any of its other pairs off the state they race
# from (a pair races from the latest state both list; see _pairs)
PICKUP_OFF_CHAIN = _states(
    "pickup_picked", "ready_for_pickup", "transfer_awaited", "transfer_in_transit"
)


def _order_to(to: str) -> Call:
    return lambda h, o: h.order_to(o, to)


def _shipment_to(seq: int, to: str) -> Call:
    return lambda h, o: h.shipment_to(o, seq, to)


async def _reroute(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.post(f"/v1/orders/{o.id}/reroute", "admin", {"reason": "race"})


async def _pay(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.pay(o)  # a captured payment of the whole total, new provider reference


async def _capture(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.post(f"/v1/payments/{o.payment_id}/capture", "admin", {})


async def _refund(h: Harness, o: RaceOrder) -> httpx.Response:
    body = {"amount": o.total, "reason": "race"}  # everything: a second one cannot fit
    return await h.post(f"/v1/orders/{o.id}/refunds", "admin", body)


async def _request_return(h: Harness, o: RaceOrder) -> httpx.Response:
    lines = [
        {"order_line_id": line, "quantity": qty, "reason_code": "other"}
        for line, qty in ((o.lines["shirt"], 2), (o.lines["mug"], 1))
    ]  # every delivered unit: a second request cannot fit
    return await h.post(f"/v1/orders/{o.id}/returns", "storefront", {"lines": lines})


def _decide(verdict: str) -> Call:
    return lambda h, o: h.post(f"/v1/returns/{o.return_id}/{verdict}", "admin")


async def _receive(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.receive_return(o)  # restock 2, refund 100


async def _close(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.post(f"/v1/returns/{o.return_id}/close", "fulfillment")


async def _ship1_exception(h: Harness, o: RaceOrder) -> httpx.Response:
    """BER cannot find one of shipment 1's T-shirts: re-planned to MUC, written off in BER."""
    line = {"order_line_id": o.lines["shirt"], "quantity": 1, "reason": "not_found"}
    return await h.post(
        f"/v1/shipments/{o.shipments[0]}/exceptions", "fulfillment", {"lines": [line]}
    )


async def _ship1_picked_exception(h: Harness, o: RaceOrder) -> httpx.Response:
    """Packing picked shipment 1, BER finds one T-shirt damaged: written off in BER, re-planned
    to MUC as a new pending parcel (a picked order steps back to paid)."""
    line = {"order_line_id": o.lines["shirt"], "quantity": 1, "reason": "damaged"}
    return await h.post(
        f"/v1/shipments/{o.shipments[0]}/exceptions", "fulfillment", {"lines": [line]}
    )


async def _ship_move(h: Harness, o: RaceOrder) -> httpx.Response:
    """Shipment 1 (T-shirts, BER) moves to MUC."""
    return await h.post(f"/v1/shipments/{o.shipments[0]}/move", "admin", {"warehouse": "MUC"})


async def _ship_split(h: Harness, o: RaceOrder) -> httpx.Response:
    """One of shipment 1's two T-shirts goes to a new shipment at BER."""
    line = {"order_line_id": o.lines["shirt"], "quantity": 1}
    return await h.post(f"/v1/shipments/{o.shipments[0]}/split", "fulfillment", {"lines": [line]})


async def _ship_merge(h: Harness, o: RaceOrder) -> httpx.Response:
    """Shipment 3 (split off shipment 1, both at BER) joins shipment 1 again."""
    body = {"shipment_id": o.shipments[2]}
    return await h.post(f"/v1/shipments/{o.shipments[0]}/merge", "fulfillment", body)


async def _hook_cancel(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.hook("order.cancelled", order_id=o.id, reason="cancelled at the marketplace")


async def _hook_capture(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.hook(
        "payment.captured", order_id=o.id, amount=o.total, currency="EUR", reference=_ref("pi")
    )


async def _hook_refund(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.hook(
        "payment.refunded", order_id=o.id, amount=o.total, currency="EUR", reference=_ref("re")
    )


def _shopify_order(o: RaceOrder, *, mugs: int) -> dict[str, Any]:
    """The race order as its marketplace (Shopify) has it now: two T-shirts, ``mugs`` mugs,
    the same address (``tests.helpers.ORDER``)."""
    items = [
        (o.external_lines["shirt"], o.shirt, 2, "19.99", "0.19"),
        (o.external_lines["mug"], o.mug, mugs, "8.50", "0.07"),
    ]
    return {
        "id": int(str(o.external_reference)),
        "currency": "EUR",
        "email": "ada@example.com",
        "customer": {"id": 1},
        "shipping_address": {
            "name": "Ada Lovelace",
            "address1": "Unter den Linden 1",
            "city": "Berlin",
            "zip": "10117",
            "country_code": "DE",
        },
        "shipping_lines": [{"price": "4.95"}],
        "line_items": [
            {
                "id": int(line_id),
                "sku": sku,
                "title": sku,
                "quantity": qty,
                "price": price,
                "tax_lines": [{"rate": rate}],
            }
            for line_id, sku, qty, price, rate in items
        ],
    }


async def _hook_update(h: Harness, o: RaceOrder) -> httpx.Response:
    """The marketplace's ``orders/updated`` (connector ``race-shop``): the order as it is there
    now, with two mugs instead of one, applied as an edit (``flows.intake``)."""
    return await h.shopify("orders/updated", _shopify_order(o, mugs=2))


async def _hook_edited(h: Harness, o: RaceOrder) -> httpx.Response:
    """The marketplace's ``orders/edited``: one mug added to the mug's line item."""
    edit = {
        "id": int(uuid.uuid4().int % 10**12),
        "order_id": int(str(o.external_reference)),
        "line_items": {"additions": [{"id": int(o.external_lines["mug"]), "delta": 1}]},
    }
    return await h.shopify("orders/edited", {"order_edit": edit})


async def _hold_place(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.hold(o, "address_check")


async def _hold_release(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.post(f"/v1/orders/{o.id}/holds/{o.hold_id}/release", "admin", {"note": "race"})


async def _receipt(h: Harness, o: RaceOrder) -> httpx.Response:
    return await h.receipt(o)  # one mug at HAM: what the backordered line waits for


async def _edit(h: Harness, o: RaceOrder) -> httpx.Response:
    """Two mugs instead of one (the mug's shipment is pending up to "picked_one"), against
    the version read just before: a concurrent change makes it a 409 version_conflict."""
    got = await h.client.get(f"/v1/orders/{o.id}", headers=h.headers("storefront"))
    if got.status_code != 200:
        return got
    body = {
        "expected_version": got.json()["version"],
        "lines": [{"line_id": o.lines["mug"], "quantity": 2}],
    }
    return await h.post(f"/v1/orders/{o.id}/edits", "storefront", body)


async def _cancel_lines(h: Harness, o: RaceOrder) -> httpx.Response:
    """Cancel one of the two T-shirts, refunding what was paid beyond the new total."""
    body = {"lines": [{"line_id": o.lines["shirt"], "quantity": 1}], "refund": True}
    return await h.post(f"/v1/orders/{o.id}/cancel-lines", "admin", body)


async def _expire(h: Harness, o: RaceOrder) -> httpx.Response:
    """The worker's expiry of unpaid orders (``flows.expiry``), a year and a day later, for
    this order only: 200 when it expired, else 409 (not due: paid or cancelled meanwhile)."""
    expired = await expire_unpaid(
        h.sessionmaker, now=utcnow() + timedelta(days=367), order_ids=[uuid.UUID(o.id)]
    )
    if expired:
        return httpx.Response(200, json={"expired": expired})
    return httpx.Response(
        409,
        json={"code": "order_not_expired"},
        headers={"content-type": "application/problem+json"},
    )


async def _wave(h: Harness, o: RaceOrder) -> httpx.Response:
    """A wave of web over the race order only (``flows.waves``): 200 when it released the order
    (moved, kept, or skipped because it changed while the wave solved), else 409 (not waiting:
    cancelled, picked or released meanwhile)."""
    oid = uuid.UUID(o.id)
    wave_id = await run_wave(h.sessionmaker, channel="web", trigger="manual", order_ids=[oid])
    async with h.sessionmaker() as session:
        outcome = await released_by(session, wave_id=wave_id, order_id=oid)
    if outcome is not None:
        return httpx.Response(200, json={"wave_id": str(wave_id), "outcome": outcome})
    return httpx.Response(
        409,
        json={"code": "order_not_waiting"},
        headers={"content-type": "application/problem+json"},
    )


async def _collect(h: Harness, o: RaceOrder) -> httpx.Response:
    """#19: the customer shows the code sent in ``pickup.ready`` at the counter."""
    code = await h.collection_code(o)
    return await h.post(f"/v1/pickups/{o.shipments[0]}/collect", "fulfillment", {"code": code})


async def _pickup_expire(h: Harness, o: RaceOrder) -> httpx.Response:
    """#19: the worker's sweep of uncollected pickups (``flows.pickup``), after the store's
    window (72 h by default), for this order's pickup only: 200 when it marked it
    uncollected, else 409 (collected or cancelled meanwhile)."""
    expired = await expire_uncollected(
        h.sessionmaker, now=utcnow() + timedelta(days=4), shipment_ids=[uuid.UUID(o.shipments[0])]
    )
    if expired:
        return httpx.Response(200, json={"expired": expired})
    return httpx.Response(
        409,
        json={"code": "pickup_not_due"},
        headers={"content-type": "application/problem+json"},
    )


async def _pickup_ready(h: Harness, o: RaceOrder) -> httpx.Response:
    """#19: the store puts the picked parcel on the pickup shelf (a collection code sent)."""
    return await h.post(f"/v1/pickups/{o.shipments[0]}/ready", "fulfillment")


async def _pickup_code(h: Harness, o: RaceOrder) -> httpx.Response:
    """#19: the customer lost the code: a new one is issued (the old one stops working)."""
    return await h.post(f"/v1/pickups/{o.shipments[0]}/code", "fulfillment")


async def _sla_late(h: Harness, o: RaceOrder) -> httpx.Response:
    """#18: the worker's SLA check (``flows.promises.announce``) a year later, for shipment 1:
    200 when it announced it late, else 409 (already announced, shipped or cancelled)."""
    async with h.sessionmaker() as session, session.begin():
        kind = await announce(
            session,
            shipment_id=uuid.UUID(o.shipments[0]),
            now=utcnow() + timedelta(days=366),
            lead=timedelta(hours=4),
        )
    if kind is not None:
        return httpx.Response(200, json={"announced": kind})
    return httpx.Response(
        409,
        json={"code": "shipment_not_late"},
        headers={"content-type": "application/problem+json"},
    )


def _transfer(step: str) -> Callable[[Harness, RaceOrder], Awaitable[httpx.Response]]:
    """#19: ship the order's transfer to fulfil, or receive the T-shirt it carries."""

    async def call(h: Harness, o: RaceOrder) -> httpx.Response:
        body = {"lines": [{"sku": o.shirt, "quantity": 1}]} if step == "receive" else None
        return await h.post(f"/v1/transfers/{o.transfer_id}/{step}", "fulfillment", body)

    return call


async def _po_receipt(h: Harness, o: RaceOrder) -> httpx.Response:
    """#18: a purchase order for the backordered mug at HAM, drafted, sent and received (the
    receipt goes through the ledger and fills the waiting order, as any receipt)."""
    await h.post(
        "/v1/suppliers", "admin", {"code": "RACE-SUP", "name": "races", "lead_time_days": 1}
    )  # 409 once it exists
    lines = [{"sku": o.mug, "quantity": 1}]
    po = await h.ok(
        "/v1/purchase-orders", "admin", {"supplier": "RACE-SUP", "warehouse": "HAM", "lines": lines}
    )
    await h.ok(f"/v1/purchase-orders/{po['id']}/send", "admin")
    receipt = {"reference": "R", "lines": lines}
    return await h.post(f"/v1/purchase-orders/{po['id']}/receipts", "fulfillment", receipt)


def _ref(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


OPS: tuple[Op, ...] = (
    # order transitions (POST /v1/orders/{id}/transitions), admin key
    Op("order-paid", _states("placed", "authorized"), _order_to("paid")),
    Op(
        "order-picked",
        _states("paid", "transfer_awaited", "transfer_in_transit", "picked_one"),
        _order_to("picked"),
    ),
    Op("order-packed", _states("picked"), _order_to("packed")),
    Op("order-shipped", _states("packed"), _order_to("shipped")),
    Op("order-delivered", _states("shipped"), _order_to("delivered")),
    Op("order-cancelled", UNSHIPPED_OR_HELD, _order_to("cancelled")),
    Op(
        "order-returned",
        _states("delivered", "return_requested", "return_approved"),
        _order_to("returned"),
    ),
    # shipment transitions (POST /v1/shipments/{id}/transitions), fulfillment key
    Op("ship1-picked", _states("paid"), _shipment_to(1, "picked")),
    Op("ship2-picked", _states("paid", "picked_one"), _shipment_to(2, "picked")),
    Op("ship1-packed", _states("picked_one", "picked"), _shipment_to(1, "packed")),
    Op("ship2-packed", _states("picked"), _shipment_to(2, "packed")),
    Op("ship1-shipped", _states("packed"), _shipment_to(1, "shipped")),
    Op("ship2-shipped", _states("packed"), _shipment_to(2, "shipped")),
    Op("ship1-delivered", _states("shipped"), _shipment_to(1, "delivered")),
    Op("ship2-delivered", _states("shipped"), _shipment_to(2, "delivered")),
    # re-routing, payments and refunds
    Op("reroute", _states("placed", "authorized", "paid"), _reroute),
    Op("pay", _states("placed", "authorized"), _pay),
    Op("capture", _states("authorized"), _capture),
    Op("refund", _states(*CAPTURED, *PICKUP_OFF_CHAIN, "held"), _refund),
    # returns
    Op("return-request", _states("delivered"), _request_return),
    Op("return-approve", _states("return_requested"), _decide("approve")),
    Op("return-reject", _states("return_requested"), _decide("reject")),
    Op("return-receive", _states("return_approved"), _receive),
    Op("return-close", _states("return_received"), _close),
    # changes of pending shipments (exceptions, moves, splits)
    Op(
        "ship1-exception",
        _states("placed", "authorized", "paid", "backordered", "split"),
        _ship1_exception,
    ),
    Op("ship-move", _states("placed", "authorized", "paid", "split"), _ship_move),
    Op("ship-split", _states("placed", "authorized", "paid"), _ship_split),
    Op("ship-merge", _states("split"), _ship_merge),
    # the payment provider's webhooks (POST /v1/webhooks/inbound/psp, format oms)
    Op("hook-cancel", _states(*UNSHIPPED_OR_HELD, *PICKUP_OFF_CHAIN), _hook_cancel),
    Op("hook-capture", _states("placed", "authorized"), _hook_capture),
    Op("hook-refund", _states(*CAPTURED, *PICKUP_OFF_CHAIN, "held"), _hook_refund),
    # holds (POST /v1/orders/{id}/holds, .../holds/{hold_id}/release), admin key
    # (a second hold on a held order is placed as the first)
    Op("hold-place", _states(*UNSHIPPED, *PICKUP_OFF_CHAIN, "held", "backordered"), _hold_place),
    Op("hold-release", _states("held"), _hold_release),
    # the worker's expiry of unpaid orders (a policy for web/card is set up by the harness)
    Op("expire", _states("placed", "authorized"), _expire),
    # backorders filled as stock arrives (POST /v1/inventory/adjustments receive), and the
    # moves that race a fill, from a paid order whose mug is backordered
    Op("receipt", _states("backordered"), _receipt),
    Op("backordered-cancelled", _states("backordered"), _order_to("cancelled")),
    Op("backordered-picked", _states("backordered"), _order_to("picked")),
    # edits and partial cancellation (POST /v1/orders/{id}/edits, .../cancel-lines)
    Op("edit", _states("placed", "authorized", "paid", "held", "picked_one"), _edit),
    Op("cancel-lines", _states("placed", "authorized", "paid"), _cancel_lines),
    # -- #17 follow-up (exceptions on picked shipments) --
    Op("ship1-picked-exception", _states("picked_one", "picked"), _ship1_picked_exception),
    # -- #18 (purchase-order receipts, availability) --
    Op("po-receipt", _states("backordered"), _po_receipt),
    # the worker's SLA check announcing shipment 1 late (its ship_by long past)
    Op(
        "sla-late",
        _states(
            *UNSHIPPED_OR_HELD,
            "pickup_picked",
            "transfer_awaited",
            "transfer_in_transit",
            "backordered",
        ),
        _sla_late,
    ),
    # -- #19 (stores: collection, pickup expiry, transfers, till sales) --
    # a click-and-collect order ready at its store: collected with its code, marked
    # uncollected by the worker (after the store's window), or cancelled by the storefront
    Op("pickup-ready", _states("pickup_picked"), _pickup_ready),
    Op("pickup-code", _states("ready_for_pickup"), _pickup_code),
    Op("collect", _states("ready_for_pickup"), _collect),
    Op("pickup-expire", _states("ready_for_pickup"), _pickup_expire),
    Op("pickup-cancelled", _states("pickup_picked", "ready_for_pickup"), _order_to("cancelled")),
    # a click-and-collect order short at its store, its transfer to fulfil from BER shipped,
    # received at the store, or the order cancelled (which cancels a draft transfer)
    Op("transfer-ship", _states("transfer_awaited"), _transfer("ship")),
    Op("transfer-receive", _states("transfer_in_transit"), _transfer("receive")),
    Op(
        "transfer-order-cancelled",
        _states("transfer_awaited", "transfer_in_transit"),
        _order_to("cancelled"),
    ),
    # -- #20 (waves) --
    Op(
        "wave",
        _states(
            "placed",
            "authorized",
            "paid",
            "transfer_awaited",
            "transfer_in_transit",
            "held",
            "split",
            "picked_one",
        ),
        _wave,
    ),
    # -- #22 (messages) --
    # -- the marketplace's changes (POST /v1/webhooks/inbound/race-shop, format shopify):
    # applied as edits of the mug's line, pending up to "picked_one" --
    Op("hook-update", _states("placed", "authorized", "paid", "held", "picked_one"), _hook_update),
    Op("hook-edited", _states("placed", "authorized", "paid", "held", "picked_one"), _hook_edited),
)
BY_NAME = {op.name: op for op in OPS}

_ORDER_MOVES = tuple(op.name for op in OPS if op.name.startswith("order-")) + (
    "backordered-cancelled",
    "backordered-picked",
    "pickup-cancelled",
    "transfer-order-cancelled",
)
_SHIPMENT_MOVES = tuple(
    op.name
    for op in OPS
    if op.name.startswith(("ship1-", "ship2-")) and not op.name.endswith("exception")
)
_HOOKS = ("hook-cancel", "hook-capture", "hook-refund", "hook-update", "hook-edited")

RACED_ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    # Every writing route of the app that changes an order (or its shipments, lines,
    # allocations, holds, payments, returns), and the operations of OPS that race it. Checked
    # against the app's routes by tests/races/test_race_registry.py: a new writing route fails
    # there until it is listed here (with its operations) or in NOT_RACED (with the reason).
    ("POST", "/v1/orders/{order_id}/transitions"): _ORDER_MOVES,
    ("POST", "/v1/shipments/{shipment_id}/transitions"): _SHIPMENT_MOVES,
    ("POST", "/v1/orders/{order_id}/reroute"): ("reroute",),
    ("POST", "/v1/orders/{order_id}/payments"): ("pay",),
    ("POST", "/v1/payments/{payment_id}/capture"): ("capture",),
    ("POST", "/v1/orders/{order_id}/refunds"): ("refund",),
    ("POST", "/v1/orders/{order_id}/returns"): ("return-request",),
    ("POST", "/v1/returns/{return_id}/approve"): ("return-approve",),
    ("POST", "/v1/returns/{return_id}/reject"): ("return-reject",),
    ("POST", "/v1/returns/{return_id}/receive"): ("return-receive",),
    ("POST", "/v1/returns/{return_id}/close"): ("return-close",),
    ("POST", "/v1/shipments/{shipment_id}/exceptions"): (
        "ship1-exception",
        "ship1-picked-exception",
    ),
    ("POST", "/v1/shipments/{shipment_id}/move"): ("ship-move",),
    ("POST", "/v1/shipments/{shipment_id}/split"): ("ship-split",),
    ("POST", "/v1/shipments/{shipment_id}/merge"): ("ship-merge",),
    ("POST", "/v1/orders/{order_id}/holds"): ("hold-place",),
    ("POST", "/v1/orders/{order_id}/holds/{hold_id}/release"): ("hold-release",),
    ("POST", "/v1/orders/{order_id}/edits"): ("edit",),
    ("POST", "/v1/orders/{order_id}/cancel-lines"): ("cancel-lines",),
    ("POST", "/v1/pickups/{shipment_id}/ready"): ("pickup-ready",),
    ("POST", "/v1/pickups/{shipment_id}/code"): ("pickup-code",),
    ("POST", "/v1/pickups/{shipment_id}/collect"): ("collect",),
    ("POST", "/v1/transfers/{transfer_id}/ship"): ("transfer-ship",),
    ("POST", "/v1/transfers/{transfer_id}/receive"): ("transfer-receive",),
    ("POST", "/v1/waves"): ("wave",),
    # connectors' webhooks, and a stored one replayed: the same intake (flows.intake), which
    # takes the order lock for each kind of event
    ("POST", "/v1/webhooks/inbound/{connector_name}"): _HOOKS,
    ("POST", "/v1/webhooks/inbox/{inbox_id}/replay"): _HOOKS,
    # stock arriving fills backorders: each order filled under its lock by
    # orders.backorders.fill_order, whichever stock change brought the units
    ("POST", "/v1/inventory/adjustments"): ("receipt",),
    ("POST", "/v1/inventory/bulk"): ("receipt",),
    ("POST", "/v1/purchase-orders/{po_id}/receipts"): ("po-receipt",),
    # the console's forms call the API's own flow functions, which take the lock
    ("POST", "/console/orders/{order_id}/transitions"): _ORDER_MOVES,
    ("POST", "/console/orders/{order_id}/holds"): ("hold-place",),
    ("POST", "/console/orders/{order_id}/holds/{hold_id}/release"): ("hold-release",),
    ("POST", "/console/orders/{order_id}/reroute"): ("reroute",),
    ("POST", "/console/warehouse/{code}/orders/{order_id}/shipments/{shipment_id}"): (
        _SHIPMENT_MOVES
    ),
    ("POST", "/console/inventory/adjustments"): ("receipt",),
    ("POST", "/console/integrations/inbox/{inbox_id}/replay"): _HOOKS,
}

WORKER_OPS = ("expire", "pickup-expire", "sla-late", "wave")
"""Operations of OPS that are the worker's jobs (no route of their own, or not only one)."""

_CONFIG = "configuration: read when an order is placed, routed or swept later, never an order"
NOT_RACED: dict[tuple[str, str], str] = {
    # Writing routes that change no existing order (checked with RACED_ROUTES, see above).
    ("POST", "/v1/orders"): "placement: the order does not exist before its INSERT commits",
    ("POST", "/v1/stores/{code}/sales"): "a till sale places its own order (placement); a "
    "retry answers with that order, changing nothing",
    ("POST", "/v1/stores/{code}/sales/batch"): "till sales, as POST /v1/stores/{code}/sales",
    ("POST", "/v1/routing/preview"): "a plan, nothing written",
    ("POST", "/v1/routing/simulations"): "a what-if over orders, nothing written",
    ("POST", "/v1/transfers"): "a draft transfer between locations: nothing moves",
    ("POST", "/v1/transfers/{transfer_id}/cancel"): "a draft transfer that fulfils no order "
    "(one that does is refused: it is cancelled with its order)",
    ("POST", "/v1/inventory/incoming"): "expected supply: promises of later orders",
    ("POST", "/v1/inventory/incoming/{supply_id}/{outcome}"): "expected supply closed",
    ("PATCH", "/v1/inventory/levels/{warehouse}/{sku:path}"): "stock settings; units it "
    "frees for backorders are filled by the worker's sweep (as receipt's fill)",
    ("POST", "/v1/warehouses"): _CONFIG,
    ("PATCH", "/v1/warehouses/{code}"): _CONFIG,
    ("PUT", "/v1/warehouses/{code}/calendar"): _CONFIG,
    ("DELETE", "/v1/warehouses/{code}/calendar"): _CONFIG,
    ("PUT", "/v1/transit-times/{country}"): _CONFIG,
    ("DELETE", "/v1/transit-times/{country}"): _CONFIG,
    ("PUT", "/v1/routing-policies/{channel}"): _CONFIG,
    ("PUT", "/v1/hold-rules/{channel}/{name}"): _CONFIG,
    ("DELETE", "/v1/hold-rules/{channel}/{name}"): _CONFIG,
    ("PUT", "/v1/expiry-policies/{channel}/{payment_method}"): _CONFIG,
    ("DELETE", "/v1/expiry-policies/{channel}/{payment_method}"): _CONFIG,
    ("PUT", "/v1/wave-policies/{channel}"): _CONFIG,
    ("PUT", "/v1/stores/{code}/policy"): _CONFIG,
    ("PUT", "/v1/reorder-policies/{warehouse}"): _CONFIG,
    ("DELETE", "/v1/reorder-policies/{warehouse}"): _CONFIG,
    ("PUT", "/v1/reorder-policies/{warehouse}/{sku:path}"): _CONFIG,
    ("DELETE", "/v1/reorder-policies/{warehouse}/{sku:path}"): _CONFIG,
    ("POST", "/v1/suppliers"): "purchasing: no order",
    ("PATCH", "/v1/suppliers/{code}"): "purchasing: no order",
    ("POST", "/v1/purchase-orders"): "purchasing: no order",
    ("POST", "/v1/purchase-orders/{po_id}/send"): "purchasing: no order",
    ("POST", "/v1/purchase-orders/{po_id}/cancel"): "purchasing: no order",
    ("PUT", "/v1/api-keys/{key_id}/warehouses"): "keys",
    ("POST", "/v1/connectors"): "connectors",
    ("PATCH", "/v1/connectors/{name}"): "connectors",
    ("DELETE", "/v1/connectors/{name}"): "connectors",
    ("POST", "/v1/webhooks/subscriptions"): "outbound webhooks: no order",
    ("PATCH", "/v1/webhooks/subscriptions/{subscription_id}"): "outbound webhooks: no order",
    ("DELETE", "/v1/webhooks/subscriptions/{subscription_id}"): "outbound webhooks: no order",
    ("POST", "/v1/webhooks/subscriptions/{subscription_id}/redeliver"): "outbound webhooks",
    ("POST", "/v1/webhooks/subscriptions/{subscription_id}/rotate-secret"): "outbound webhooks",
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/redeliver"): "outbound webhooks",
    ("POST", "/v1/messages/preview"): "messages: a rendering, nothing written",
    ("PUT", "/v1/messages/providers/email"): "messages: no order",
    ("PUT", "/v1/messages/providers/sms"): "messages: no order",
    ("PUT", "/v1/messages/rules/{sales_channel}"): "messages: no order",
    ("PUT", "/v1/messages/templates/{event_type}/{message_channel}/{language}"): "messages",
    ("DELETE", "/v1/messages/templates/{event_type}/{message_channel}/{language}"): "messages",
    ("PUT", "/v1/messages/opt-outs/{message_channel}/{address}"): "messages: a customer's "
    "address, not an order",
    ("DELETE", "/v1/messages/opt-outs/{message_channel}/{address}"): "messages: as above",
    ("POST", "/console/sign-in"): "console sessions",
    ("POST", "/console/sign-out"): "console sessions",
    ("POST", "/console/integrations/deliveries/{delivery_id}/redeliver"): "outbound webhooks",
}
ALL_STATES = os.environ.get("OMS_RACE_ALL_STATES", "") not in ("", "0")


def _pairs() -> list[Any]:
    params = []
    for a, b in itertools.combinations_with_replacement(OPS, 2):
        shared = [s for s in STATES if s in a.states and s in b.states]
        for state in shared if ALL_STATES else shared[-1:]:
            params.append(pytest.param(a.name, b.name, state, id=f"{a.name}+{b.name}@{state}"))
    return params


PAIRS = _pairs()


async def test_every_state_passes_the_invariants(harness: Harness) -> None:
    """The checker accepts every state the races start from (a failure in a race is the race)."""
    for state in STATES:
        order = await harness.build(state)
        await check_order_invariants(harness.engine, order.id)


@dataclass
class Serial:
    """One serial run: which of the two won, and what the order looked like afterwards."""

    won: tuple[bool, ...]
    fingerprint: dict[str, Any]


async def _serial(
    harness: Harness, order: RaceOrder, ops: list[tuple[int, Op]]
) -> tuple[Serial, list[str]]:
    """Run ``ops`` one after the other on ``order``; ``won`` is indexed like the pair."""
    won = [False, False]
    for i, op in ops:
        won[i] = (await op.call(harness, order)).status_code in (200, 201)
    bad = await order_invariant_violations(harness.engine, order.id)
    return Serial(tuple(won), await order_fingerprint(harness.engine, order.id)), bad


@pytest.mark.parametrize(("a", "b", "state"), PAIRS)
async def test_pair_at_once(harness: Harness, a: str, b: str, state: str) -> None:
    op_a, op_b = BY_NAME[a], BY_NAME[b]
    baseline = await stock_baseline(harness.engine)
    same = a == b  # an operation with itself: "b then a" is "a then b" with the roles swapped
    serial_orders = [[(0, op_a), (1, op_b)]] + ([] if same else [[(1, op_b), (0, op_a)]])
    built = await harness.build_many(state, len(serial_orders) + ROUNDS)
    serial_runs, racing = built[: len(serial_orders)], built[len(serial_orders) :]
    runs = await asyncio.gather(
        *(_serial(harness, o, ops) for o, ops in zip(serial_runs, serial_orders, strict=True))
    )
    (ab, ab_bad), (ba, ba_bad) = runs[0], runs[-1]
    if same:
        ba, ba_bad = Serial(ab.won[::-1], ab.fingerprint), []
    serial = {"a then b": ab, "b then a": ba}
    serial_bad = [f"serial a then b: {x}" for x in ab_bad] + [
        f"serial b then a: {x}" for x in ba_bad
    ]
    # the registry is right: alone, each succeeds from this state (so both losing is the race)
    serial_bad += [
        f"{op.name} alone was refused from {state}"
        for op, w in ((op_a, ab.won[0]), (op_b, ba.won[1]))
        if not w
    ]

    async def alone(i: int) -> Serial:
        """The winner alone: for a loser refused where it would have succeeded after it."""
        key = f"{'ab'[i]} alone"
        if key not in serial:
            serial[key], bad = await _serial(
                harness, await harness.build(state), [(i, (op_a, op_b)[i])]
            )
            serial_bad.extend(f"serial {key}: {x}" for x in bad)
        return serial[key]

    rounds: list[tuple[list[Outcome], list[str]]] = []
    for order in racing:
        outcomes = await at_once(
            (f"{a} (a)", partial(op_a.call, harness, order)),
            (f"{b} (b)", partial(op_b.call, harness, order)),
        )
        bad = answer_problems(outcomes)
        won = (outcomes[0].won, outcomes[1].won)
        if not any(won):
            bad.append("both were refused: run one after the other, the first succeeds")
        elif not bad:
            got = await order_fingerprint(harness.engine, order.id)
            candidates = [s for s in serial.values() if s.won == won]
            if not candidates and not all(won):  # serially both win: the loser changed nothing
                candidates = [await alone(won.index(True))]
            if not candidates:
                seen = {k: s.won for k, s in serial.items()}
                bad.append(f"both won, but serially one is refused: {seen}")
            elif not any(s.fingerprint == got for s in candidates):
                diff = " | ".join(fingerprint_diff(s.fingerprint, got) for s in candidates)
                bad.append(f"no serial run ends like this (serial vs race): {diff}")
        bad += await order_invariant_violations(harness.engine, order.id)
        rounds.append((outcomes, bad))
    serial_bad += await stock_violations_since(harness.engine, baseline)
    assert not serial_bad and not any(bad for _, bad in rounds), _report(serial_bad, rounds)


def _report(serial_bad: list[str], rounds: list[tuple[list[Outcome], list[str]]]) -> str:
    lines = list(serial_bad)
    for i, (outcomes, bad) in enumerate(rounds, start=1):
        if bad:
            lines.append(f"round {i}: " + "; ".join(str(o) for o in outcomes))
            lines += [f"    {x}" for x in bad]
    failed = sum(1 for _, bad in rounds if bad)
    return f"{failed} of {len(rounds)} rounds broke:\n" + "\n".join(lines)
