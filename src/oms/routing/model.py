"""The router's plain data: what goes in (lines, destination, warehouses, policy) and what comes
out (plan, allocations, shortages, explanation). Standard library only; no behaviour beyond
validation of coordinates, ``to_dict()`` for JSON and great-circle distance.

The planner itself is :func:`oms.routing.domain.plan_route`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_POLICY",
    "EARTH_RADIUS_KM",
    "OBJECTIVE",
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
]

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), used by :func:`haversine_km`."""

# --------------------------------------------------------------------------------------------
# Input value objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 point in decimal degrees."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.latitude <= 90.0) or not (-180.0 <= self.longitude <= 180.0):
            raise ValueError(f"coordinates out of range: {self.latitude}, {self.longitude}")


@dataclass(frozen=True, slots=True)
class RouteLine:
    """One order line to place: ``quantity`` units of ``sku``."""

    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the order goes. ``point`` is already resolved (see :mod:`oms.routing.geo`)."""

    country: str
    point: GeoPoint | None
    point_source: str | None = None  # e.g. "address", "postal_code", "country_centroid"


@dataclass(frozen=True, slots=True)
class WarehouseCandidate:
    """A warehouse (or store) and its available stock for the order's SKUs."""

    id: str
    code: str
    point: GeoPoint | None
    priority: int  # lower = preferred
    active: bool = True
    ships_to: frozenset[str] | None = None  # ISO country codes; None = ships everywhere
    is_pickup_store: bool = False
    available: Mapping[str, int] = field(default_factory=dict)  # sku -> available units
    country: str | None = None  # the warehouse's own ISO country code (domestic-first rule)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How to route. Defaults: fill, then fewest shipments, then nearest (banded), then priority.

    - ``max_shipments``: cap on warehouses used (``None`` = no cap).
    - ``allow_line_split``: may one line's units come from several warehouses.
    - ``allow_backorder``: informational for the caller; the planner always returns the best
      partial plan with its shortages.
    - ``pickup_warehouse_id``: click-and-collect; only this store may be used (its country is not
      checked against the destination: the customer comes to the store).
    - ``allowed_warehouse_ids``: the sales channel's warehouse list (``None`` = all).
    - ``exclude_pickup_stores``: do not ship from warehouses flagged ``is_pickup_store`` (they
      remain usable as the click-and-collect store).
    - ``distance_band_km``: width of a distance band.
    - ``prefer_domestic``: within the same distance bands, prefer warehouses in the destination
      country (``WarehouseCandidate.country``); no effect when warehouses have no country.
    - ``excluded_warehouse_ids``: warehouses this plan may not use (reason ``excluded``): the
      warehouse that rejected units of a shipment, or every warehouse but a move's target.
    - ``blocked``: (warehouse id, SKU) pairs whose stock does not count for now (a shelf found
      empty or damaged); a warehouse left with nothing to give is ``blocked``.
    """

    max_shipments: int | None = None
    allow_line_split: bool = True
    allow_backorder: bool = False
    pickup_warehouse_id: str | None = None
    allowed_warehouse_ids: frozenset[str] | None = None
    distance_band_km: float = 400.0
    exclude_pickup_stores: bool = False
    prefer_domestic: bool = True
    excluded_warehouse_ids: frozenset[str] = frozenset()
    blocked: frozenset[tuple[str, str]] = frozenset()


# --------------------------------------------------------------------------------------------
# Output value objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allocation:
    """``quantity`` units of line ``line_id`` ship from ``warehouse_id``."""

    line_id: str
    sku: str
    warehouse_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Shortage:
    """Units of a line that could not be placed: ``requested`` asked, ``available`` placed."""

    line_id: str
    sku: str
    requested: int
    available: int

    @property
    def missing(self) -> int:
        """Units that could not be placed."""
        return self.requested - self.available


class ExclusionReason(StrEnum):
    """Why a candidate warehouse was not used."""

    INACTIVE = "inactive"
    NOT_IN_CHANNEL = "not_in_channel"
    NOT_PICKUP_STORE = "not_pickup_store"
    COUNTRY_NOT_SERVED = "country_not_served"
    PICKUP_STORE_ONLY = "pickup_store_only"
    NO_STOCK = "no_stock"
    NOT_NEEDED = "not_needed"
    OVER_SHIPMENT_LIMIT = "over_shipment_limit"
    EXCLUDED = "excluded"  # left out of this plan on purpose (a shipment exception, a move)
    BLOCKED = "blocked"  # its stock of the SKUs is blocked for now (after a shipment exception)


class DecidingRule(StrEnum):
    """The criterion that separated the chosen plan from the runner-up."""

    SINGLE_WAREHOUSE_FILL = "single_warehouse_fill"  # one shipment fills all; runner-up needs more
    MOST_UNITS_FILLED = "most_units_filled"
    FEWEST_SHIPMENTS = "fewest_shipments"
    DISTANCE_BAND = "distance_band"
    DOMESTIC_FIRST = "domestic_first"  # same bands: fewer shipments from abroad
    PRIORITY = "priority"
    DISTANCE = "distance"  # same bands and priority: raw kilometres decided
    TIE_BREAK = "tie_break"  # identical costs: warehouse code/id decided
    ONLY_OPTION = "only_option"
    PICKUP_STORE = "pickup_store"
    NO_STOCK = "no_stock"


@dataclass(frozen=True, slots=True)
class PlanCost:
    """The cost key of a plan, compared in this field order (lower is better)."""

    unfilled_units: int
    shipments: int
    band_sum: int
    cross_border_shipments: int  # shipments from outside the destination country (or unknown)
    priority_rank_sum: int
    distance_km: float  # sum over shipments, rounded to 0.1 km (unknown -> farthest possible)
    max_band: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "unfilled_units": self.unfilled_units,
            "shipments": self.shipments,
            "band_sum": self.band_sum,
            "cross_border_shipments": self.cross_border_shipments,
            "priority_rank_sum": self.priority_rank_sum,
            "distance_km": self.distance_km,
            "max_band": self.max_band,
        }


class CandidateExplanation(NamedTuple):
    """One candidate warehouse as the router saw it (immutable; a NamedTuple because a plan
    builds one per warehouse and tuples are three times cheaper to create than frozen
    dataclasses)."""

    warehouse_id: str
    code: str
    eligible: bool
    selected: bool
    reason: ExclusionReason | None  # None when selected
    distance_km: float | None  # rounded to 0.1 km; None = unknown
    band: int  # unknown distance -> worst band
    priority: int
    priority_rank: int | None  # dense rank among eligible warehouses (0 = best)
    coverable_units: int  # units of this order it could ship (stock capped by demand)
    whole_lines: tuple[str, ...]  # lines it could ship complete on its own
    fills_order: bool
    allocated_units: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse_id": self.warehouse_id,
            "code": self.code,
            "eligible": self.eligible,
            "selected": self.selected,
            "reason": None if self.reason is None else self.reason.value,
            "distance_km": self.distance_km,
            "band": self.band,
            "priority": self.priority,
            "priority_rank": self.priority_rank,
            "coverable_units": self.coverable_units,
            "whole_lines": list(self.whole_lines),
            "fills_order": self.fills_order,
            "allocated_units": self.allocated_units,
        }


@dataclass(frozen=True, slots=True)
class AlternativePlan:
    """The runner-up plan, and what separated it from the chosen one."""

    warehouses: tuple[str, ...]  # warehouse ids
    codes: tuple[str, ...]
    cost: PlanCost
    separated_by: str  # PlanCost field that differed first ("tie_break" if none)
    margin: float  # runner-up minus chosen on that field (0 for a tie break)

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouses": list(self.warehouses),
            "codes": list(self.codes),
            "cost": self.cost.to_dict(),
            "separated_by": self.separated_by,
            "margin": self.margin,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the router chose this plan; ``to_dict()`` is JSON-serialisable."""

    summary: str
    deciding_rule: DecidingRule
    chosen_cost: PlanCost
    runner_up: AlternativePlan | None
    candidates: tuple[CandidateExplanation, ...]
    search: str  # "single", "exact", "greedy", "pickup", "none"
    proven_optimal: bool
    objective: tuple[str, ...]
    destination: Mapping[str, Any]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "deciding_rule": self.deciding_rule.value,
            "objective": list(self.objective),
            "chosen_cost": self.chosen_cost.to_dict(),
            "runner_up": None if self.runner_up is None else self.runner_up.to_dict(),
            "search": self.search,
            "proven_optimal": self.proven_optimal,
            "destination": dict(self.destination),
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RoutePlan:
    """The routing decision. ``warehouses`` are the shipments, nearest (cheapest) first."""

    allocations: tuple[Allocation, ...]
    shortages: tuple[Shortage, ...]
    fully_filled: bool
    warehouses: tuple[str, ...]
    explanation: Explanation
    allow_backorder: bool = False
    unknown_skus: frozenset[str] = frozenset()
    """SKUs of the order that no warehouse has a stock level for. Not the router's concern (it
    sees availability only): filled in by ``oms.routing.service.plan`` from the snapshot, and
    only when the plan is not fully filled."""

    @property
    def backorders(self) -> tuple[Shortage, ...]:
        """The shortages, when the policy accepts them as backorders (else empty)."""
        return self.shortages if self.allow_backorder else ()

    @property
    def acceptable(self) -> bool:
        """True when the order can be placed as planned (filled, or backorder allowed)."""
        return self.fully_filled or self.allow_backorder


DEFAULT_POLICY = RoutingPolicy()

OBJECTIVE: tuple[str, ...] = (
    "unfilled_units",
    "shipments",
    "band_sum",
    "cross_border_shipments",
    "priority_rank_sum",
    "distance_km",
    "tie_break(code,id)",
)
"""The plan cost fields in comparison order, then the final tie break."""


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points, in kilometres."""
    lat1 = math.radians(a.latitude)
    lat2 = math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2.0) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
