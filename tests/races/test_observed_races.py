"""The three races reported in the issue, replayed as they were seen, several rounds each.

Each starts from the state the reporter had, fires the requests together, and checks that
exactly the serial outcomes are possible: one request wins, the others get a 409 problem, and
the order's stock, allocations, counts, money, history and outbox agree with what won.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from sqlalchemy import text

from tests.races.conftest import (
    ROUNDS,
    Harness,
    Outcome,
    answer_problems,
    at_once,
    order_invariant_violations,
    stock_baseline,
    stock_violations_since,
)

OBSERVED_ROUNDS = max(ROUNDS, 5)


def _report(rounds: list[tuple[list[Outcome], list[str]]]) -> str:
    """The rounds that broke; the last entry is the database-wide check after all rounds."""
    *races, (_, everywhere) = rounds
    lines = []
    for i, (outcomes, bad) in enumerate(races, start=1):
        if bad:
            lines.append(f"round {i}: " + "; ".join(str(o) for o in outcomes))
            lines += [f"    {b}" for b in bad]
    lines += [f"after all rounds: {b}" for b in everywhere]
    failed = sum(1 for _, bad in races if bad)
    return f"{failed} of {len(races)} rounds broke:\n" + "\n".join(lines)


def _one_winner(outcomes: list[Outcome]) -> list[str]:
    bad = answer_problems(outcomes)
    winners = [o for o in outcomes if o.won]
    if len(winners) != 1:
        bad.append(f"{len(winners)} of {len(outcomes)} requests succeeded; exactly one may")
    bad += [f"the loser is not a 409: {o}" for o in outcomes if not o.won and o.status != 409]
    return bad


async def test_a_parcel_shipped_while_the_order_is_cancelled(harness: Harness) -> None:
    """Reported: both 200 in 10 of 10 tries; the order ended cancelled, the shipped parcel was
    flipped to cancelled with its units still deducted, and subscribers got
    ``shipment.shipped`` then ``order.cancelled``."""
    baseline = await stock_baseline(harness.engine)
    rounds = []
    for _ in range(OBSERVED_ROUNDS):
        order = await harness.build("packed")  # both parcels packed, neither shipped
        outcomes = await at_once(
            ("ship shipment 1", partial(harness.shipment_to, order, 1, "shipped")),
            ("cancel the order", partial(harness.order_to, order, "cancelled")),
        )
        bad = _one_winner(outcomes)
        bad += await order_invariant_violations(harness.engine, order.id)
        rounds.append((outcomes, bad))
    rounds.append(([], await stock_violations_since(harness.engine, baseline)))
    assert not any(bad for _, bad in rounds), _report(rounds)


async def _drive_live_shipments_to_shipped(harness: Harness, order_id: str) -> None:
    """What the warehouse does next: every parcel that is not cancelled is moved on until it
    has shipped (refusals are fine: the point is what the data says afterwards)."""
    got = await harness.client.get(f"/v1/orders/{order_id}", headers=harness.headers("admin"))
    flow = ["pending", "picked", "packed", "shipped"]
    for sh in got.json()["shipments"]:
        if sh["status"] not in flow:
            continue
        for step in flow[flow.index(sh["status"]) + 1 :]:
            body: dict[str, Any] = {"to": step}
            if step == "shipped":
                body |= {"carrier": "UPS", "tracking_number": "1Z1"}
            await harness.post(f"/v1/shipments/{sh['id']}/transitions", "fulfillment", body)


async def test_reroute_while_a_parcel_is_picked(harness: Harness) -> None:
    """Reported: both 200 in 15 of 16 tries; the picked parcel kept going while its allocation
    was released and two new parcels were added: 13 units shipped for an 8-unit order."""
    baseline = await stock_baseline(harness.engine)
    rounds = []
    for _ in range(OBSERVED_ROUNDS):
        order = await harness.build("paid", shirts=5, mugs=3)  # 8 units
        reroute = f"/v1/orders/{order.id}/reroute"
        outcomes = await at_once(
            ("reroute the order", partial(harness.post, reroute, "admin", {"reason": "race"})),
            ("pick shipment 1", partial(harness.shipment_to, order, 1, "picked")),
        )
        bad = _one_winner(outcomes)
        bad += await order_invariant_violations(harness.engine, order.id)
        await _drive_live_shipments_to_shipped(harness, order.id)
        after = await order_invariant_violations(harness.engine, order.id)
        bad += [f"after shipping every live parcel: {b}" for b in after if b not in bad]
        rounds.append((outcomes, bad))
    rounds.append(([], await stock_violations_since(harness.engine, baseline)))
    assert not any(bad for _, bad in rounds), _report(rounds)


async def test_eight_receipts_of_one_return_at_once(harness: Harness) -> None:
    """Reported: eight concurrent receipts of one approved return (restock 2, refund 100) all
    answered 200; stock went up by 16 instead of 2, and eight refunds were issued."""
    baseline = await stock_baseline(harness.engine)
    rounds = []
    for _ in range(OBSERVED_ROUNDS):
        order = await harness.build("return_approved")
        before = await harness.on_hand("BER", order.shirt)
        outcomes = await at_once(
            *((f"receive #{i}", partial(harness.receive_return, order)) for i in range(1, 9))
        )
        bad = _one_winner(outcomes)
        restocked = await harness.on_hand("BER", order.shirt) - before
        if restocked != 2:
            bad.append(f"stock went up by {restocked}, not 2")
        refunds = await _refunds(harness, order.id)
        if refunds != [100]:
            bad.append(f"refunds issued: {refunds}, not one of 100")
        bad += await order_invariant_violations(harness.engine, order.id)
        rounds.append((outcomes, bad))
    rounds.append(([], await stock_violations_since(harness.engine, baseline)))
    assert not any(bad for _, bad in rounds), _report(rounds)


async def _refunds(harness: Harness, order_id: str) -> list[int]:
    async with harness.engine.connect() as conn:
        amounts = await conn.scalars(
            text("SELECT amount FROM refunds WHERE order_id = :oid ORDER BY created_at"),
            {"oid": uuid.UUID(order_id)},
        )
        return [int(a) for a in amounts]
