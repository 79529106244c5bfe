"""Purchasing rules, pure: the purchase order state machine, order quantities (minimum order,
pack size) and the reorder suggestion with every input it was computed from.

Purchase orders: ``draft → sent → partially_received → received``, and ``cancelled`` from any
open state (a cancelled order expects nothing more; units already received stay received).
Receipts move a sent order to ``partially_received`` or ``received``; nothing else does.

A reorder suggestion for one (warehouse, SKU):

* **demand rate**: an exponentially weighted moving average of the units placed per day over
  the policy's window of N days, ``alpha = 2 / (N + 1)`` (the usual "span" of N days), started
  at the window's plain mean so that the first days do not dominate;
* **variability**: the exponentially weighted standard deviation of the daily units (same
  alpha);
* **lead time** L: the supplier's, in days; **review period** R: the policy's;
* **safety stock** = ``safety_factor × σ × √(L + R)`` (the safety factor: 1.65 ≈ a 95 % cycle
  service level under normal demand);
* **reorder point** = ``rate × L + safety stock``, rounded up (or the level's own
  ``reorder_point`` when an admin set one);
* **position** = on hand − reserved + on order (units expected from sent purchase orders and
  other expected receipts): the units free to sell now or soon;
* crossed when position ≤ reorder point: the **quantity** brings the position up to
  ``rate × (L + R) + safety stock`` (at least the level's ``reorder_quantity`` when set), then
  the supplier's minimum order and pack size apply (rounded up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class POStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    PARTIALLY_RECEIVED = "partially_received"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class POAction(StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    CANCEL = "cancel"


OPEN = frozenset({POStatus.DRAFT, POStatus.SENT, POStatus.PARTIALLY_RECEIVED})

ALLOWED: dict[POStatus, frozenset[POAction]] = {
    POStatus.DRAFT: frozenset({POAction.SEND, POAction.CANCEL}),
    POStatus.SENT: frozenset({POAction.RECEIVE, POAction.CANCEL}),
    POStatus.PARTIALLY_RECEIVED: frozenset({POAction.RECEIVE, POAction.CANCEL}),
    POStatus.RECEIVED: frozenset(),
    POStatus.CANCELLED: frozenset(),
}
"""What may be done to a purchase order in each status: the only authority."""


class IllegalPOAction(Exception):
    """The action is not allowed in the order's current status."""

    def __init__(self, status: POStatus, action: POAction) -> None:
        super().__init__(f"cannot {action.value} a purchase order that is {status.value}")
        self.status = status
        self.action = action
        self.allowed = sorted(a.value for a in ALLOWED[status])


def check_action(status: POStatus, action: POAction) -> None:
    """Raise :class:`IllegalPOAction` unless ``action`` is allowed in ``status``."""
    if action not in ALLOWED[status]:
        raise IllegalPOAction(status, action)


def after_receipt(quantities: Sequence[tuple[int, int]]) -> POStatus:
    """The status after a receipt, from each line's (ordered, received)."""
    if all(received >= ordered for ordered, received in quantities):
        return POStatus.RECEIVED
    return POStatus.PARTIALLY_RECEIVED


def order_quantity(units: int, *, minimum: int, pack_size: int) -> int:
    """``units`` as the supplier sells them: at least the minimum order, whole packs (0 stays
    0: nothing to order)."""
    if units <= 0:
        return 0
    units = max(units, minimum)
    return math.ceil(units / pack_size) * pack_size


def quantity_problem(units: int, *, minimum: int, pack_size: int) -> str | None:
    """Why a purchase order line of ``units`` is not orderable from this supplier, or None."""
    if units < minimum:
        return f"below the supplier's minimum order of {minimum} units"
    if units % pack_size:
        return f"not a whole number of packs of {pack_size}"
    return None


@dataclass(frozen=True, slots=True)
class Demand:
    window_days: int
    alpha: float
    rate_per_day: float
    std_per_day: float
    units_in_window: int


def demand(daily: Sequence[int]) -> Demand:
    """The EWMA demand rate and its standard deviation over ``daily`` units (oldest first)."""
    n = len(daily)
    if n == 0:
        return Demand(0, 1.0, 0.0, 0.0, 0)
    alpha = 2.0 / (n + 1)
    mean = sum(daily) / n
    var = sum((x - mean) ** 2 for x in daily) / n
    for x in daily:
        diff = x - mean
        mean += alpha * diff
        var = (1 - alpha) * (var + alpha * diff * diff)
    return Demand(
        window_days=n,
        alpha=round(alpha, 6),
        rate_per_day=round(mean, 4),
        std_per_day=round(math.sqrt(max(var, 0.0)), 4),
        units_in_window=sum(daily),
    )


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A reorder suggestion and every input it was computed from."""

    demand_window_days: int
    ewma_alpha: float
    demand_rate_per_day: float
    demand_std_per_day: float
    units_sold_in_window: int
    lead_time_days: int
    review_days: int
    safety_factor: float
    safety_stock: int
    reorder_point: int
    reorder_point_source: str
    """``computed``, or ``level`` when the stock level's own reorder point was used."""
    order_up_to: int
    on_hand: int
    reserved: int
    on_order: int
    position: int
    crossed: bool
    raw_quantity: int
    minimum_order_quantity: int
    pack_size: int
    quantity: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest(
    *,
    daily_demand: Sequence[int],
    lead_time_days: int,
    review_days: int,
    safety_factor: float,
    on_hand: int,
    reserved: int,
    on_order: int,
    minimum_order_quantity: int,
    pack_size: int,
    level_reorder_point: int | None = None,
    level_reorder_quantity: int | None = None,
) -> Suggestion:
    """The reorder suggestion for one (warehouse, SKU); see the module docstring."""
    d = demand(daily_demand)
    safety = math.ceil(safety_factor * d.std_per_day * math.sqrt(lead_time_days + review_days))
    computed_point = math.ceil(d.rate_per_day * lead_time_days + safety)
    point = computed_point if level_reorder_point is None else level_reorder_point
    up_to = max(point, math.ceil(d.rate_per_day * (lead_time_days + review_days) + safety))
    position = on_hand - reserved + on_order
    crossed = position <= point and (d.rate_per_day > 0 or level_reorder_point is not None)
    raw = 0
    if crossed:
        raw = max(up_to - position, level_reorder_quantity or 0, 1 if position <= point else 0)
    return Suggestion(
        demand_window_days=d.window_days,
        ewma_alpha=d.alpha,
        demand_rate_per_day=d.rate_per_day,
        demand_std_per_day=d.std_per_day,
        units_sold_in_window=d.units_in_window,
        lead_time_days=lead_time_days,
        review_days=review_days,
        safety_factor=safety_factor,
        safety_stock=safety,
        reorder_point=point,
        reorder_point_source="computed" if level_reorder_point is None else "level",
        order_up_to=up_to,
        on_hand=on_hand,
        reserved=reserved,
        on_order=on_order,
        position=position,
        crossed=crossed,
        raw_quantity=raw,
        minimum_order_quantity=minimum_order_quantity,
        pack_size=pack_size,
        quantity=order_quantity(raw, minimum=minimum_order_quantity, pack_size=pack_size),
    )
