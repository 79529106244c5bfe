"""The stored routing decision after a shipment exception, move, split or merge
(``plans.changed_routing``): the current plan on top, the plan of placement kept once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oms.orders.plans import changed_routing

AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
PLACED = {
    "warehouses": ["BER"],
    "fully_filled": True,
    "backorders": [],
    "explanation": {"summary": "Ship from BER"},
}


def test_the_first_change_keeps_placement_and_later_ones_keep_it_unchanged() -> None:
    moved = changed_routing(
        PLACED,
        kind="shipment_exception",
        at=AT,
        warehouses=["BER", "MUC"],
        backorders=[],
        explanation={"summary": "Ship from MUC"},
    )
    assert moved["warehouses"] == ["BER", "MUC"]
    assert moved["explanation"] == {"summary": "Ship from MUC"}
    assert moved["change"] == {"kind": "shipment_exception", "at": AT.isoformat()}
    assert moved["placement"] == PLACED
    split = changed_routing(
        moved,
        kind="shipment_split",
        at=AT,
        warehouses=["BER", "MUC"],
        backorders=[{"line_id": "l1", "sku": "X", "quantity": 1}],
        explanation=None,
    )
    assert split["explanation"] == {"summary": "Ship from MUC"}  # a split decides nothing
    assert split["fully_filled"] is False
    assert split["placement"] == PLACED  # placement's, not the exception's


def test_an_order_without_a_stored_decision_and_an_unknown_change() -> None:
    fresh = changed_routing(
        None, kind="shipment_merged", at=AT, warehouses=["BER"], backorders=[], explanation=None
    )
    assert (fresh["placement"], fresh["explanation"]) == (None, None)
    with pytest.raises(ValueError, match="unknown routing change"):
        changed_routing(
            PLACED, kind="edited", at=AT, warehouses=[], backorders=[], explanation=None
        )
