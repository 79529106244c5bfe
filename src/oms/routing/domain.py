"""Pure order router: (order lines, destination, stock snapshot, policy) -> (plan, explanation).

Standard library only. Nothing here knows about the database or HTTP, so the planner can be
unit-tested and benchmarked in isolation (``bench/routing_quality.py``).

This module is the façade: :func:`plan_route` and the names other modules import. The work is
done, step by step, in

* :mod:`oms.routing.model` — the data types that go in and come out;
* :mod:`oms.routing.candidates` — validation, demand per SKU, each warehouse's distance band,
  coverage, eligibility and cost;
* :mod:`oms.routing.search` — which warehouses ship (exact search in :mod:`oms.routing.exact`,
  greedy fallback in :mod:`oms.routing.greedy`, both over :class:`oms.routing.problem.Problem`)
  and which units each ships;
* :mod:`oms.routing.explain` — why: cost, runner-up, deciding rule, candidates, summary.

Default objective, compared lexicographically over whole plans:

1. fill the order: fewest unfilled units;
2. fewest shipments (warehouses that ship something);
3. closest: the **sum** over shipments of the distance band of each shipping warehouse, where
   ``band = floor(great_circle_km / policy.distance_band_km)``, so small distance differences do
   not flip decisions. The sum is used (not the max) because carriers charge per parcel by zone:
   the sum of bands follows total shipping cost;
4. domestic first (``policy.prefer_domestic``): fewest shipments from warehouses outside the
   destination country (Shopify's "stay within the destination market", ShipBob's "in-country
   first"; placed inside the band so a much closer foreign warehouse still wins). Warehouses
   without ``country`` count as foreign, so without countries this criterion does nothing;
5. the sum of the warehouses' priority ranks (dense rank of ``priority`` among eligible
   warehouses, 0 = most preferred);
6. the sum of raw great-circle distances (100 m resolution), then a deterministic tie break on
   the warehouses' (code, id).

A warehouse without coordinates, or a destination without a point, has an *unknown* distance:
it is placed in the worst band (one past the farthest possible distance on Earth) and the
explanation says so.

Search: single warehouses first; then an exact branch-and-bound over sets of 2 and 3
warehouses (of any size when at most eight warehouses are eligible), visited in cost order and
pruned by cost and by a per-SKU coverage bound; orders that need more shipments (or that
exhaust the node budget) fall back to a greedy set cover, followed by redundancy removal and a
cost-improving 1-swap local search. Within the chosen set every line is shipped whole from the
nearest warehouse that can take it, otherwise it is split nearest-first (only if
``policy.allow_line_split``); without line split, the lines of one SKU are packed into the
set's stock to place the most units (several lines of one SKU: an exact search within a node
budget, see :func:`oms.routing.problem._pack`).

What a plan promises (checked against brute force in ``tests/unit/test_routing_brute_force.py``
on every plan of up to five warehouses and four lines): when ``explanation.proven_optimal``
(the search was exact and no node budget ran out), no plan within the policy places more
units, and none placing as many has a smaller ``(shipments, band_sum, cross_border_shipments,
priority_rank_sum)``. A greedy plan (``search == "greedy"``: more than three shipments among
more than eight eligible warehouses, or a spent budget) keeps the shipment cap and, with line
split and no cap, the best fill; its cost, and otherwise its fill, are not proven.

"Not enough stock" never raises: the plan lists shortages and ``fully_filled`` is false. The
caller decides between a 409 and a backorder (``policy.allow_backorder``). Invalid input
(non-positive quantities, duplicate ids, bad policy values) raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from oms.routing.candidates import index_demand, scan_warehouses, validate
from oms.routing.explain import explain
from oms.routing.model import (
    DEFAULT_POLICY,
    EARTH_RADIUS_KM,
    Allocation,
    AlternativePlan,
    CandidateExplanation,
    DecidingRule,
    Destination,
    ExclusionReason,
    Explanation,
    GeoPoint,
    PlanCost,
    RouteLine,
    RoutePlan,
    RoutingPolicy,
    Shortage,
    WarehouseCandidate,
    haversine_km,
)
from oms.routing.model import OBJECTIVE as OBJECTIVE
from oms.routing.problem import Problem
from oms.routing.search import allocate, choose_warehouses

__all__ = [
    "EARTH_RADIUS_KM",
    "Allocation",
    "AlternativePlan",
    "CandidateExplanation",
    "DecidingRule",
    "Destination",
    "ExclusionReason",
    "Explanation",
    "GeoPoint",
    "PlanCost",
    "RouteLine",
    "RoutePlan",
    "RoutingPolicy",
    "Shortage",
    "WarehouseCandidate",
    "haversine_km",
    "plan_route",
]


def plan_route(
    lines: Sequence[RouteLine],
    destination: Destination,
    warehouses: Sequence[WarehouseCandidate],
    policy: RoutingPolicy = DEFAULT_POLICY,
) -> RoutePlan:
    """Plan which units of which line ship from which warehouse, and explain why.

    Never raises for lack of stock: the result lists shortages and ``fully_filled`` is false.
    Raises ``ValueError`` for invalid input. Deterministic: the order of ``warehouses`` does not
    change the result.
    """
    validate(lines, warehouses, policy)
    demand = index_demand(lines)
    scan = scan_warehouses(warehouses, destination, demand, policy)
    problem = Problem(
        lines, demand.sku_of_line, demand.per_sku, scan.eligible, policy.allow_line_split
    )
    choice = choose_warehouses(problem, policy)
    allocated = allocate(problem, choice.chosen, lines)
    explanation = explain(
        problem=problem,
        scan=scan,
        choice=choice,
        allocated=allocated,
        destination=destination,
        policy=policy,
    )
    return RoutePlan(
        allocations=allocated.allocations,
        shortages=allocated.shortages,
        fully_filled=allocated.unfilled == 0,
        warehouses=tuple([scan.eligible[i].wh.id for i in allocated.used]),
        explanation=explanation,
        allow_backorder=policy.allow_backorder,
    )
