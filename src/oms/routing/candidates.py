"""The planner's view of the input: validated lines, demand per SKU, and every warehouse scored.

For each warehouse: its distance and distance band from the destination, what it can
contribute to each of the order's SKUs (stock capped at demand), whether it may ship at all
(and if not, why), and, for the eligible ones, the scalarised cost the search minimises. The
eligible warehouses come out in cost order; :mod:`oms.routing.search` indexes them that way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import asin, cos, radians, sin, sqrt

from oms.routing.model import (
    EARTH_RADIUS_KM,
    Destination,
    ExclusionReason,
    GeoPoint,
    RouteLine,
    RoutingPolicy,
    WarehouseCandidate,
)

__all__ = ["Candidate", "Demand", "Scan", "index_demand", "scan_warehouses", "validate"]

MAX_SURFACE_KM = math.pi * EARTH_RADIUS_KM  # farthest two points can be (about 20,015 km)
_TWO_R = 2.0 * EARTH_RADIUS_KM

# Scalarised per-warehouse cost:
#   band * _W_BAND + cross_border * _W_CROSS_BORDER + priority_rank * _W_RANK + distance_hm,
# distance in units of 100 m. The weights keep the lexicographic order exact for sums over up to
# ~1,000 shipments (distance <= 200,151 hm each, priority-rank sums below 10**6).
_W_RANK = 10**9
_W_CROSS_BORDER = 10**15
_W_BAND = 10**18


@dataclass(slots=True)
class Candidate:
    """A warehouse as the planner sees it (mutable: rank and cost are set once all are known)."""

    wh: WarehouseCandidate
    km: float | None
    band: int
    hm: int  # distance in 100 m units (unknown -> farthest possible)
    cov: tuple[int, ...]  # per order SKU: available units capped at the order's demand
    reason: ExclusionReason | None
    cross_border: int = 0
    rank: int = 0
    cost: int = 0


@dataclass(frozen=True, slots=True)
class Demand:
    """The order's distinct SKUs (in first-seen order) and how many units each needs."""

    sku_of_line: list[int]  # line index -> SKU index
    per_sku: list[int]  # SKU index -> units demanded
    sku_demand: list[tuple[str, int]]  # (sku, units) by SKU index
    total_units: int


@dataclass(frozen=True, slots=True)
class Scan:
    """Every warehouse scored (input order), the eligible ones in cost order, and notes."""

    all: list[Candidate]
    eligible: list[Candidate]
    notes: list[str]


def validate(
    lines: Sequence[RouteLine], warehouses: Sequence[WarehouseCandidate], policy: RoutingPolicy
) -> None:
    """Raise ``ValueError`` for invalid input (quantities, duplicate ids, policy values)."""
    if not policy.distance_band_km > 0 or math.isinf(policy.distance_band_km):
        raise ValueError("distance_band_km must be a positive finite number")
    if policy.max_shipments is not None and policy.max_shipments < 1:
        raise ValueError("max_shipments must be at least 1")
    line_ids = {line.line_id for line in lines}
    if len(line_ids) != len(lines):
        raise ValueError("duplicate line_id")
    for line in lines:
        if line.quantity < 1:
            raise ValueError(f"line {line.line_id!r}: quantity must be at least 1")
    if len({w.id for w in warehouses}) != len(warehouses):
        raise ValueError("duplicate warehouse id")


def index_demand(lines: Sequence[RouteLine]) -> Demand:
    """Number the order's distinct SKUs and add up their demand."""
    sku_index: dict[str, int] = {}
    sku_of_line: list[int] = []
    demand: list[int] = []
    for line in lines:
        s = sku_index.get(line.sku)
        if s is None:
            s = sku_index[line.sku] = len(demand)
            demand.append(0)
        demand[s] += line.quantity
        sku_of_line.append(s)
    sku_demand = list(zip(sku_index, demand, strict=True))
    return Demand(sku_of_line, demand, sku_demand, sum(demand))


def scan_warehouses(
    warehouses: Sequence[WarehouseCandidate],
    destination: Destination,
    demand: Demand,
    policy: RoutingPolicy,
) -> Scan:
    """Score every warehouse, then rank and cost-sort the eligible ones."""
    notes: list[str] = []
    if destination.point is None:
        notes.append(
            "destination has no coordinates: every distance is unknown (worst band), "
            "so priority decides among equal shipment counts"
        )
    country = destination.country.upper()
    ruler = _Ruler(destination.point, policy.distance_band_km)
    gate = _Gate(
        policy.allowed_warehouse_ids,
        policy.pickup_warehouse_id,
        policy.exclude_pickup_stores,
        country,
        policy.excluded_warehouse_ids,
    )
    sku_demand = demand.sku_demand
    all_cands: list[Candidate] = []
    eligible: list[Candidate] = []
    missing_coords: list[str] = []
    # this loop runs per warehouse: distance and eligibility are one call each
    for w in warehouses:
        if w.point is None:
            missing_coords.append(w.code)
        km, band, hm = ruler.measure(w.point)
        av = w.available
        blocked = policy.blocked
        if blocked:
            cov = tuple(
                [0 if (w.id, sku) in blocked else _cap(av.get(sku, 0), d) for sku, d in sku_demand]
            )
        else:
            cov = tuple([_cap(av.get(sku, 0), d) for sku, d in sku_demand])
        reason = gate.reason(w)
        if reason is None and not any(cov):
            reason = ExclusionReason.NO_STOCK
            if blocked and any((w.id, sku) in blocked and av.get(sku, 0) for sku, _ in sku_demand):
                reason = ExclusionReason.BLOCKED
        c = Candidate(w, km, band, hm, cov, reason)
        all_cands.append(c)
        if reason is None:
            eligible.append(c)
    if missing_coords:
        notes.append(
            "no coordinates for "
            + ", ".join(sorted(missing_coords))
            + ": distance unknown (worst band)"
        )
    _rank(eligible, country, policy.prefer_domestic)
    return Scan(all_cands, eligible, notes)


def _cap(v: int, d: int) -> int:
    return d if v >= d else (v if v > 0 else 0)


class _Ruler:
    """Great-circle distance and band from the destination (unknown -> the worst band).

    The haversine of :func:`oms.routing.model.haversine_km`, with the destination's terms
    computed once.
    """

    __slots__ = ("band_km", "cos_lat1", "lat1", "lon1", "origin", "unknown_band", "unknown_hm")

    def __init__(self, origin: GeoPoint | None, band_km: float) -> None:
        self.origin = origin
        self.band_km = band_km
        self.unknown_band = int(MAX_SURFACE_KM // band_km) + 1
        self.unknown_hm = round(MAX_SURFACE_KM * 10.0)
        if origin is None:
            self.lat1 = self.lon1 = self.cos_lat1 = 0.0
        else:
            self.lat1 = math.radians(origin.latitude)
            self.lon1 = origin.longitude
            self.cos_lat1 = math.cos(self.lat1)

    def measure(self, p: GeoPoint | None) -> tuple[float | None, int, int]:
        """(km or None when unknown, band, distance in 100 m units)."""
        if p is None or self.origin is None:
            return None, self.unknown_band, self.unknown_hm
        lat2 = radians(p.latitude)
        dlat = lat2 - self.lat1
        dlon = radians(p.longitude - self.lon1)
        h = sin(dlat / 2.0) ** 2 + self.cos_lat1 * cos(lat2) * sin(dlon / 2.0) ** 2
        km = _TWO_R * asin(min(1.0, sqrt(h)))
        return km, int(km // self.band_km), round(km * 10.0)


@dataclass(frozen=True, slots=True)
class _Gate:
    """Which warehouses may ship this order at all (stock aside)."""

    channel: frozenset[str] | None
    pickup: str | None
    no_stores: bool
    country: str
    excluded: frozenset[str] = frozenset()

    def reason(self, w: WarehouseCandidate) -> ExclusionReason | None:
        """Why ``w`` may not ship, or None."""
        if not w.active:
            return ExclusionReason.INACTIVE
        if w.id in self.excluded:
            return ExclusionReason.EXCLUDED
        if self.channel is not None and w.id not in self.channel:
            return ExclusionReason.NOT_IN_CHANNEL
        if self.pickup is not None:
            # the customer collects at the store: the destination country does not apply
            return ExclusionReason.NOT_PICKUP_STORE if w.id != self.pickup else None
        if w.ships_to is not None and self.country not in w.ships_to:
            return ExclusionReason.COUNTRY_NOT_SERVED
        if self.no_stores and w.is_pickup_store:
            return ExclusionReason.PICKUP_STORE_ONLY
        return None


def _rank(eligible: list[Candidate], country: str, domestic_first: bool) -> None:
    """Dense priority rank among the eligible, scalar cost, then sort by (cost, code, id)."""
    ranks = {p: r for r, p in enumerate(sorted({c.wh.priority for c in eligible}))}
    for c in eligible:
        c.rank = ranks[c.wh.priority]
        if domestic_first:
            wc = c.wh.country
            c.cross_border = 0 if wc is not None and wc.upper() == country else 1
        c.cost = c.band * _W_BAND + c.cross_border * _W_CROSS_BORDER + c.rank * _W_RANK + c.hm
    eligible.sort(key=lambda c: (c.cost, c.wh.code, c.wh.id))
