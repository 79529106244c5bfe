"""Purchasing rules, pure: the purchase order state machine, order quantities and the reorder
suggestion's arithmetic with known numbers."""

from __future__ import annotations

import math

import pytest

from oms.purchasing.domain import (
    ALLOWED,
    IllegalPOAction,
    POAction,
    POStatus,
    after_receipt,
    check_action,
    demand,
    order_quantity,
    quantity_problem,
    suggest,
)


@pytest.mark.parametrize("status", list(POStatus))
@pytest.mark.parametrize("action", list(POAction))
def test_every_status_and_action(status: POStatus, action: POAction) -> None:
    allowed = {
        (POStatus.DRAFT, POAction.SEND),
        (POStatus.DRAFT, POAction.CANCEL),
        (POStatus.SENT, POAction.RECEIVE),
        (POStatus.SENT, POAction.CANCEL),
        (POStatus.PARTIALLY_RECEIVED, POAction.RECEIVE),
        (POStatus.PARTIALLY_RECEIVED, POAction.CANCEL),
    }
    if (status, action) in allowed:
        check_action(status, action)
    else:
        with pytest.raises(IllegalPOAction) as info:
            check_action(status, action)
        assert info.value.allowed == sorted(a.value for a in ALLOWED[status])


def test_after_receipt() -> None:
    assert after_receipt([(10, 10), (5, 5)]) is POStatus.RECEIVED
    assert after_receipt([(10, 10), (5, 4)]) is POStatus.PARTIALLY_RECEIVED


def test_order_quantity_minimum_and_packs() -> None:
    assert order_quantity(0, minimum=24, pack_size=12) == 0
    assert order_quantity(5, minimum=24, pack_size=12) == 24
    assert order_quantity(25, minimum=24, pack_size=12) == 36
    assert order_quantity(7, minimum=1, pack_size=1) == 7
    assert quantity_problem(12, minimum=24, pack_size=12) is not None
    assert quantity_problem(30, minimum=24, pack_size=12) is not None
    assert quantity_problem(36, minimum=24, pack_size=12) is None


def test_demand_of_a_steady_seller_has_no_variability() -> None:
    d = demand([10] * 28)
    assert (d.rate_per_day, d.std_per_day, d.units_in_window) == (10.0, 0.0, 280)
    assert d.alpha == pytest.approx(2 / 29, abs=1e-6)


def test_recent_days_weigh_more() -> None:
    rising = demand([0] * 14 + [10] * 14)
    falling = demand([10] * 14 + [0] * 14)
    assert rising.units_in_window == falling.units_in_window
    assert rising.rate_per_day > 5 > falling.rate_per_day
    assert rising.std_per_day > 0


def test_suggestion_with_known_numbers() -> None:
    s = suggest(
        daily_demand=[10] * 28,
        lead_time_days=7,
        review_days=7,
        safety_factor=1.65,
        on_hand=60,
        reserved=10,
        on_order=0,
        minimum_order_quantity=24,
        pack_size=12,
    )
    assert (s.safety_stock, s.reorder_point, s.order_up_to) == (0, 70, 140)
    assert (s.position, s.crossed, s.raw_quantity, s.quantity) == (50, True, 90, 96)
    # on order counts: 40 more expected put the position above the point
    s = suggest(
        daily_demand=[10] * 28,
        lead_time_days=7,
        review_days=7,
        safety_factor=1.65,
        on_hand=60,
        reserved=10,
        on_order=40,
        minimum_order_quantity=24,
        pack_size=12,
    )
    assert (s.position, s.crossed, s.quantity) == (90, False, 0)


def test_variable_demand_needs_safety_stock() -> None:
    daily = [0, 20] * 14
    s = suggest(
        daily_demand=daily,
        lead_time_days=9,
        review_days=7,
        safety_factor=2.0,
        on_hand=0,
        reserved=0,
        on_order=0,
        minimum_order_quantity=1,
        pack_size=1,
    )
    d = demand(daily)
    assert s.safety_stock == math.ceil(2.0 * d.std_per_day * 4) > 0
    assert s.reorder_point == math.ceil(d.rate_per_day * 9 + s.safety_stock)
    assert s.quantity == s.order_up_to  # from a position of 0


def test_a_level_reorder_point_overrides_and_a_silent_sku_is_not_reordered() -> None:
    silent = suggest(
        daily_demand=[0] * 28,
        lead_time_days=7,
        review_days=7,
        safety_factor=1.65,
        on_hand=0,
        reserved=0,
        on_order=0,
        minimum_order_quantity=1,
        pack_size=1,
    )
    assert silent.crossed is False and silent.quantity == 0
    manual = suggest(
        daily_demand=[0] * 28,
        lead_time_days=7,
        review_days=7,
        safety_factor=1.65,
        on_hand=3,
        reserved=0,
        on_order=0,
        minimum_order_quantity=1,
        pack_size=1,
        level_reorder_point=5,
        level_reorder_quantity=20,
    )
    assert (manual.reorder_point_source, manual.crossed, manual.quantity) == ("level", True, 20)
