"""The pure router's exclusions for shipment exceptions and moves: a warehouse left out of a
plan (``excluded``) and a (warehouse, SKU) whose stock does not count for now (``blocked``)."""

from __future__ import annotations

from oms.routing.domain import Destination, RouteLine, RoutingPolicy, plan_route
from tests.unit.test_routing_domain import BERLIN, MUNICH, POTSDAM, wh

TO_BERLIN = Destination("DE", BERLIN)
WAREHOUSES = [wh("ber", POTSDAM, {"A": 5, "B": 5}), wh("muc", MUNICH, {"A": 5})]


def _reasons(policy: RoutingPolicy, *lines: RouteLine) -> tuple[list[str], dict[str, str | None]]:
    plan = plan_route(list(lines), TO_BERLIN, WAREHOUSES, policy)
    return list(plan.warehouses), {c.code: c.reason for c in plan.explanation.candidates}


def test_an_excluded_warehouse_is_not_used_and_says_why() -> None:
    used, why = _reasons(
        RoutingPolicy(excluded_warehouse_ids=frozenset({"ber"})), RouteLine("1", "A", 2)
    )
    assert used == ["muc"]
    assert why["BER"] == "excluded"


def test_a_blocked_sku_counts_as_no_stock_there() -> None:
    used, why = _reasons(RoutingPolicy(blocked=frozenset({("ber", "A")})), RouteLine("1", "A", 2))
    assert used == ["muc"]
    assert why["BER"] == "blocked"
    # the warehouse's other SKUs still count
    used, _ = _reasons(
        RoutingPolicy(blocked=frozenset({("ber", "A")})),
        RouteLine("1", "A", 1),
        RouteLine("2", "B", 1),
    )
    assert sorted(used) == ["ber", "muc"]
