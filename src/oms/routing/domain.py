"""Pure order router: (order lines, destination, stock snapshot, policy) -> (plan, explanation).

Standard library only. Nothing here knows about the database or HTTP, so the planner can be
unit-tested and benchmarked in isolation (``bench/routing_quality.py``).

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
warehouses, visited in cost order and pruned by cost and by a per-SKU coverage bound; orders
that need more than three shipments (or that exhaust the node budget) fall back to a greedy
set cover, followed by redundancy removal and a cost-improving 1-swap local search. Within the
chosen set every line is shipped whole from the nearest warehouse that can take it, otherwise it
is split nearest-first (only if ``policy.allow_line_split``).

"Not enough stock" never raises: the plan lists shortages and ``fully_filled`` is false. The
caller decides between a 409 and a backorder (``policy.allow_backorder``). Invalid input
(non-positive quantities, duplicate ids, bad policy values) raises ``ValueError``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

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

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), used by :func:`haversine_km`."""

_MAX_SURFACE_KM = math.pi * EARTH_RADIUS_KM  # farthest two points can be (about 20,015 km)

# Search limits. Exact branch-and-bound for up to _EXACT_MAX_SHIPMENTS warehouses; node budgets
# keep the worst case bounded (p99 target: < 2 ms per order at 50 warehouses).
_EXACT_MAX_SHIPMENTS = 3
_SEARCH_NODE_BUDGET = 20_000
_RUNNER_UP_NODE_BUDGET = 600  # the runner-up is explanation only: keep it cheap

# Scalarised per-warehouse cost:
#   band * _W_BAND + cross_border * _W_CROSS_BORDER + priority_rank * _W_RANK + distance_hm,
# distance in units of 100 m. The weights keep the lexicographic order exact for sums over up to
# ~1,000 shipments (distance <= 200,151 hm each, priority-rank sums below 10**6).
_W_RANK = 10**9
_W_CROSS_BORDER = 10**15
_W_BAND = 10**18


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
    """

    max_shipments: int | None = None
    allow_line_split: bool = True
    allow_backorder: bool = False
    pickup_warehouse_id: str | None = None
    allowed_warehouse_ids: frozenset[str] | None = None
    distance_band_km: float = 400.0
    exclude_pickup_stores: bool = False
    prefer_domestic: bool = True


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

    @property
    def backorders(self) -> tuple[Shortage, ...]:
        """The shortages, when the policy accepts them as backorders (else empty)."""
        return self.shortages if self.allow_backorder else ()

    @property
    def acceptable(self) -> bool:
        """True when the order can be placed as planned (filled, or backorder allowed)."""
        return self.fully_filled or self.allow_backorder


_DEFAULT_POLICY = RoutingPolicy()

OBJECTIVE: tuple[str, ...] = (
    "unfilled_units",
    "shipments",
    "band_sum",
    "cross_border_shipments",
    "priority_rank_sum",
    "distance_km",
    "tie_break(code,id)",
)
_COST_FIELDS = OBJECTIVE[:-1]


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


# --------------------------------------------------------------------------------------------
# Planner internals
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cand:
    wh: WarehouseCandidate
    km: float | None
    band: int
    hm: int  # distance in 100 m units (unknown -> farthest possible)
    cov: tuple[int, ...]  # per order SKU: available units capped at the order's demand
    reason: ExclusionReason | None
    cross_border: int = 0
    rank: int = 0
    cost: int = 0


@dataclass(slots=True)
class _Found:
    key: tuple[int, int, tuple[int, ...]]  # (-fill, scalar cost, member indices)

    @property
    def members(self) -> tuple[int, ...]:
        return self.key[2]

    @property
    def fill(self) -> int:
        return -self.key[0]


def _offer(top: list[_Found], key: tuple[int, int, tuple[int, ...]]) -> None:
    top.append(_Found(key))
    if len(top) == 2 and top[1].key < top[0].key:
        top.reverse()
    elif len(top) == 3:
        top.sort(key=lambda f: f.key)
        del top[2:]


class _Problem:
    """One routing problem over the eligible warehouses, indexed in scalar-cost order.

    ``cov[i][s]`` is what warehouse ``i`` can contribute to SKU ``s`` (stock capped at demand).
    With line splitting, a set places ``sum_s min(demand_s, sum_i cov[i][s])`` units, and it
    reaches the best possible fill exactly when every SKU reaches ``target[s]``
    (``min(demand_s, all-warehouse stock)``): a covering problem, searched with bitmasks.
    """

    def __init__(
        self,
        lines: Sequence[RouteLine],
        sku_of_line: list[int],
        demand: list[int],
        cands: list[_Cand],
        split: bool,
    ) -> None:
        self.lines = lines
        self.sku_of_line = sku_of_line
        self.demand = demand
        self.split = split
        n = self.n = len(cands)
        m = self.m = len(demand)
        cov = self.cov = [c.cov for c in cands]
        cost = self.cost = [c.cost for c in cands]
        totals = [0] * m
        has = [0] * m
        for i, ci in enumerate(cov):
            bit = 1 << i
            for s in range(m):
                if ci[s]:
                    totals[s] += ci[s]
                    has[s] |= bit
        self.has = has
        self.target = [min(d, t) for d, t in zip(demand, totals, strict=True)]
        self.split_full = sum(self.target)
        pc = [0]
        for c in cost:
            pc.append(pc[-1] + c)
        self.prefix_cost = pc
        suf: list[tuple[int, ...]] = [tuple([0] * m)] * (n + 1)
        for i in range(n - 1, -1, -1):
            nxt = suf[i + 1]
            ci = cov[i]
            suf[i] = tuple([ci[s] if ci[s] > nxt[s] else nxt[s] for s in range(m)])
        self.sufmax = suf
        self.line_order = sorted(range(len(lines)), key=lambda i: (-lines[i].quantity, i))
        self._ge: list[tuple[list[int], list[int]]] | None = None
        self.nodes = 0
        self.exhausted = False

    # -- fill -------------------------------------------------------------------------------

    def fill(self, members: Sequence[int]) -> int:
        """Units the set can place (exact with line split; first-fit for whole lines)."""
        if self.split:
            m = self.m
            sums = [0] * m
            for i in members:
                ci = self.cov[i]
                for s in range(m):
                    sums[s] += ci[s]
            d = self.demand
            return sum([sums[s] if sums[s] < d[s] else d[s] for s in range(m)])
        return sum([q for _, _, q in self.assign(members)])

    def assign(self, members: Sequence[int]) -> list[tuple[int, int, int]]:
        """(line index, member index, quantity): members in cost order, whole lines first."""
        order = sorted(members)
        rem = {i: list(self.cov[i]) for i in order}
        out: list[tuple[int, int, int]] = []
        for li in self.line_order:
            s = self.sku_of_line[li]
            q = self.lines[li].quantity
            whole = next((i for i in order if rem[i][s] >= q), None)
            if whole is not None:
                rem[whole][s] -= q
                out.append((li, whole, q))
            elif self.split:
                for i in order:
                    take = min(q, rem[i][s])
                    if take > 0:
                        rem[i][s] -= take
                        q -= take
                        out.append((li, i, take))
                        if q == 0:
                            break
            else:
                best = max(order, key=lambda i: (rem[i][s], -i), default=None)
                if best is not None and rem[best][s] > 0:
                    out.append((li, best, rem[best][s]))
                    rem[best][s] = 0
        return out

    def minimal(self, members: Sequence[int], fill: int) -> bool:
        """True when no member can be dropped without losing placed units."""
        if len(members) < 2:
            return True
        if self.split:
            m, cov, d = self.m, self.cov, self.demand
            sums = [0] * m
            for i in members:
                for s in range(m):
                    sums[s] += cov[i][s]
            for j in members:
                cj = cov[j]
                f = 0
                for s in range(m):
                    v = sums[s] - cj[s]
                    f += v if v < d[s] else d[s]
                if f >= fill:
                    return False
            return True
        return all(self.fill([i for i in members if i != j]) < fill for j in members)

    # -- exact search -----------------------------------------------------------------------

    def best_sets(
        self, k: int, min_fill: int, budget: int, exclude: tuple[int, ...] | None = None
    ) -> list[_Found]:
        """The best two minimal sets of exactly ``k`` warehouses placing >= ``min_fill`` units,
        ranked by (-fill, scalar cost, indices); ``self.exhausted`` tells if the budget ran out.
        """
        self.nodes = 0
        self.exhausted = False
        if k < 1 or k > self.n:
            return []
        if self.split and min_fill >= self.split_full:
            return self._cover_search(k, budget, exclude)
        return self._search(k, min_fill, budget, exclude)

    def _mask_ge(self, s: int, v: int) -> int:
        """Bitmask of warehouses with ``cov[i][s] >= v``."""
        ge = self._ge
        if ge is None:
            ge = self._ge = []
            for t in range(self.m):
                order = sorted(range(self.n), key=lambda i: -self.cov[i][t])
                neg = [-self.cov[i][t] for i in order]
                pm = [0]
                acc = 0
                for i in order:
                    acc |= 1 << i
                    pm.append(acc)
                ge.append((neg, pm))
        neg, pm = ge[s]
        return pm[bisect_right(neg, -v)]

    def _cover_search(self, k: int, budget: int, exclude: tuple[int, ...] | None) -> list[_Found]:
        """Cheapest sets of ``k`` warehouses reaching every SKU's target (line split)."""
        top: list[_Found] = []
        n, m = self.n, self.m
        cov, cost, pc, suf, has = self.cov, self.cost, self.prefix_cost, self.sufmax, self.has
        full = self.split_full
        target = self.target

        def accept(members: tuple[int, ...], c: int) -> bool:
            key = (-full, c, members)
            if len(top) == 2 and key >= top[1].key:
                return False  # later candidates only cost more
            if members != exclude and self.minimal(members, full):
                _offer(top, key)
            return True

        if k == 1:
            for i in range(n):
                ci = cov[i]
                if all(ci[s] >= target[s] for s in range(m)):
                    self.nodes += 1
                    if not accept((i,), cost[i]):
                        break
            return top

        def rec(members: tuple[int, ...], need: list[int], c: int, start: int, r: int) -> None:
            if r == 1:
                mask = ((1 << n) - 1) >> start << start
                for s in range(m):
                    if need[s] > 0:
                        mask &= self._mask_ge(s, need[s])
                        if not mask:
                            return
                while mask:
                    low = mask & -mask
                    i = low.bit_length() - 1
                    self.nodes += 1
                    if not accept((*members, i), c + cost[i]):
                        return
                    mask ^= low
                return
            useful = 0
            for s in range(m):
                if need[s] > 0:
                    useful |= has[s]
            useful = useful >> start << start
            last = n - r
            r1 = r - 1
            while useful:
                low = useful & -useful
                i = low.bit_length() - 1
                if i > last:
                    return
                useful ^= low
                self.nodes += 1
                if self.nodes > budget:
                    self.exhausted = True
                    return
                lb = c + pc[i + r] - pc[i]
                if len(top) == 2 and lb >= top[1].key[1]:
                    return  # DFS visits index tuples in lexicographic order: ties lose too
                ci = cov[i]
                sm = suf[i + 1]
                new: list[int] = []
                for s in range(m):
                    v = need[s] - ci[s]
                    if v > r1 * sm[s]:
                        break
                    new.append(v)
                else:
                    rec((*members, i), new, c + cost[i], i + 1, r1)
                    if self.exhausted:
                        return

        rec((), list(target), 0, 0, k)
        return top

    def _search(
        self, k: int, min_fill: int, budget: int, exclude: tuple[int, ...] | None
    ) -> list[_Found]:
        """General branch and bound: maximise fill, then minimise cost (any fill target)."""
        top: list[_Found] = []
        n, m = self.n, self.m
        d = self.demand
        cov, cost, pc, suf, has = self.cov, self.cost, self.prefix_cost, self.sufmax, self.has
        full = sum(d)
        split = self.split
        any_stock = 0
        for mask in has:
            any_stock |= mask

        def rec(members: tuple[int, ...], sums: list[int], c: int, start: int, r: int) -> None:
            if split:
                useful = 0
                for s in range(m):
                    if sums[s] < d[s]:
                        useful |= has[s]
            else:
                useful = any_stock
            useful = useful >> start << start
            last = n - r
            while useful:
                low = useful & -useful
                i = low.bit_length() - 1
                if i > last:
                    return
                useful ^= low
                self.nodes += 1
                if self.nodes > budget:
                    self.exhausted = True
                    return
                lb = c + pc[i + r] - pc[i]
                if len(top) == 2:
                    k2 = top[1].key
                    if (-full, lb) >= (k2[0], k2[1]):
                        return  # not even a complete fill could beat the second best
                ci = cov[i]
                new = [sums[s] + ci[s] for s in range(m)]
                mem = (*members, i)
                if r == 1:
                    f = sum([new[s] if new[s] < d[s] else d[s] for s in range(m)])
                    if not split and f >= min_fill:
                        f = self.fill(mem)
                    if f < min_fill:
                        continue
                    key = (-f, c + cost[i], mem)
                    if len(top) == 2 and key >= top[1].key:
                        continue
                    if mem != exclude and self.minimal(mem, f):
                        _offer(top, key)
                    continue
                sm = suf[i + 1]
                ub = 0
                for s in range(m):
                    v = new[s] + (r - 1) * sm[s]
                    ub += v if v < d[s] else d[s]
                if ub < min_fill:
                    continue
                if len(top) == 2:
                    k2 = top[1].key
                    if (-ub, lb) >= (k2[0], k2[1]):
                        continue
                rec(mem, new, c + cost[i], i + 1, r - 1)
                if self.exhausted:
                    return

        rec((), [0] * m, 0, 0, k)
        return top

    # -- greedy fallback --------------------------------------------------------------------

    def greedy(self, target: int, cap: int) -> tuple[int, ...]:
        """Greedy set cover (most new units, then cheapest), pruned and 1-swap improved."""
        if self.split and target >= self.split_full:
            return self._greedy_cover(cap)
        return self._greedy_general(target, cap)

    def _greedy_cover(self, cap: int) -> tuple[int, ...]:
        """:meth:`greedy` for line split and a full target, on per-SKU need vectors."""
        m, cov, has = self.m, self.cov, self.has
        target = self.target
        need = list(target)
        chosen: list[int] = []
        taken = 0  # bitmask of chosen
        while len(chosen) < cap:
            useful = 0
            for s in range(m):
                if need[s] > 0:
                    useful |= has[s]
            useful &= ~taken
            if not useful:
                break
            best_i, best_gain = -1, 0
            while useful:
                low = useful & -useful
                i = low.bit_length() - 1
                useful ^= low
                ci = cov[i]
                gain = 0
                for s in range(m):
                    v = need[s]
                    if v > 0:
                        gain += ci[s] if ci[s] < v else v
                if gain > best_gain:  # ties keep the lower index = cheaper warehouse
                    best_i, best_gain = i, gain
            if best_i < 0:
                break
            chosen.append(best_i)
            taken |= 1 << best_i
            ci = cov[best_i]
            for s in range(m):
                need[s] -= ci[s]
        sums = [target[s] - need[s] for s in range(m)]  # may exceed target: that is fine
        reached = [min(sums[s], target[s]) for s in range(m)]

        def deficit_without(i: int) -> list[int]:
            ci = cov[i]
            return [reached[s] - (sums[s] - ci[s]) for s in range(m)]

        # drop members that are not needed, most expensive first
        for i in sorted(chosen, reverse=True):
            if all(d <= 0 for d in deficit_without(i)):
                chosen.remove(i)
                ci = cov[i]
                for s in range(m):
                    sums[s] -= ci[s]
        # 1-swap: replace a member by the cheapest outsider that keeps every SKU's level
        improved = True
        while improved:
            improved = False
            for i in sorted(chosen, reverse=True):
                mask = (1 << i) - 1
                for s, d in enumerate(deficit_without(i)):
                    if d > 0:
                        mask &= self._mask_ge(s, d)
                for j in chosen:
                    mask &= ~(1 << j)
                if mask:
                    j = (mask & -mask).bit_length() - 1
                    chosen[chosen.index(i)] = j
                    ci, cj = cov[i], cov[j]
                    for s in range(m):
                        sums[s] += cj[s] - ci[s]
                    improved = True
                    break
        return tuple(sorted(chosen))

    def _greedy_general(self, target: int, cap: int) -> tuple[int, ...]:
        """:meth:`greedy` for any target and whole-line mode (recomputes fills)."""
        chosen: list[int] = []
        cur = 0
        while cur < target and len(chosen) < cap:
            best_i = -1
            best_gain = 0
            for i in range(self.n):
                if i in chosen:
                    continue
                gain = self.fill([*chosen, i]) - cur
                if gain > best_gain:  # ties keep the lower index = cheaper warehouse
                    best_i, best_gain = i, gain
            if best_i < 0:
                break
            chosen.append(best_i)
            cur += best_gain
        # drop members that are not needed, most expensive first
        for i in sorted(chosen, reverse=True):
            rest = [j for j in chosen if j != i]
            if rest and self.fill(rest) >= cur:
                chosen = rest
        # 1-swap local search: replace a member by a cheaper outsider keeping the fill
        improved = True
        while improved:
            improved = False
            for i in sorted(chosen, reverse=True):
                for j in range(i):
                    if j in chosen:
                        continue
                    trial = [x if x != i else j for x in chosen]
                    if self.fill(trial) >= cur:
                        chosen = trial
                        improved = True
                        break
                if improved:
                    break
        return tuple(sorted(chosen))

    def set_cost(self, members: Sequence[int]) -> int:
        return sum([self.cost[i] for i in members])


def _validate(
    lines: Sequence[RouteLine], warehouses: Sequence[WarehouseCandidate], policy: RoutingPolicy
) -> None:
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


def _cost_of(members: Sequence[_Cand], unfilled: int) -> PlanCost:
    return PlanCost(
        unfilled_units=unfilled,
        shipments=len(members),
        band_sum=sum([c.band for c in members]),
        cross_border_shipments=sum([c.cross_border for c in members]),
        priority_rank_sum=sum([c.rank for c in members]),
        distance_km=round(sum([c.hm for c in members]) / 10.0, 1),
        max_band=max([c.band for c in members], default=0),
    )


_RULE_BY_FIELD: dict[str, DecidingRule] = {
    "unfilled_units": DecidingRule.MOST_UNITS_FILLED,
    "shipments": DecidingRule.FEWEST_SHIPMENTS,
    "band_sum": DecidingRule.DISTANCE_BAND,
    "cross_border_shipments": DecidingRule.DOMESTIC_FIRST,
    "priority_rank_sum": DecidingRule.PRIORITY,
    "distance_km": DecidingRule.DISTANCE,
}


def _separation(chosen: PlanCost, other: PlanCost) -> tuple[str, float]:
    for name in _COST_FIELDS:
        a = getattr(chosen, name)
        b = getattr(other, name)
        if a != b:
            diff = b - a
            return name, round(diff, 1) if isinstance(diff, float) else diff
    return "tie_break", 0


def _fmt_wh(c: _Cand) -> str:
    if c.km is None:
        return f"{c.wh.code} (distance unknown)"
    return f"{c.wh.code} ({c.km:.0f} km, band {c.band})"


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def plan_route(
    lines: Sequence[RouteLine],
    destination: Destination,
    warehouses: Sequence[WarehouseCandidate],
    policy: RoutingPolicy = _DEFAULT_POLICY,
) -> RoutePlan:
    """Plan which units of which line ship from which warehouse, and explain why.

    Never raises for lack of stock: the result lists shortages and ``fully_filled`` is false.
    Raises ``ValueError`` for invalid input. Deterministic: the order of ``warehouses`` does not
    change the result.
    """
    _validate(lines, warehouses, policy)
    band_km = policy.distance_band_km
    unknown_band = int(_MAX_SURFACE_KM // band_km) + 1
    unknown_hm = round(_MAX_SURFACE_KM * 10.0)
    notes: list[str] = []
    dest_point = destination.point
    if dest_point is None:
        notes.append(
            "destination has no coordinates: every distance is unknown (worst band), "
            "so priority decides among equal shipment counts"
        )
        lat1 = lon1 = cos_lat1 = 0.0
    else:
        lat1 = math.radians(dest_point.latitude)
        lon1 = dest_point.longitude
        cos_lat1 = math.cos(lat1)
    country = destination.country.upper()

    # distinct SKUs of the order and their demand
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
    total_units = sum(demand)

    # candidates: distance, coverage, eligibility (inlined: this loop runs per warehouse)
    channel = policy.allowed_warehouse_ids
    pickup = policy.pickup_warehouse_id
    no_stores = policy.exclude_pickup_stores
    domestic_first = policy.prefer_domestic
    sin, cos, asin, sqrt, radians = math.sin, math.cos, math.asin, math.sqrt, math.radians
    two_r = 2.0 * EARTH_RADIUS_KM
    all_cands: list[_Cand] = []
    eligible: list[_Cand] = []
    missing_coords: list[str] = []
    for w in warehouses:
        p = w.point
        if p is None:
            missing_coords.append(w.code)
            km: float | None = None
            band, hm = unknown_band, unknown_hm
        elif dest_point is None:
            km = None
            band, hm = unknown_band, unknown_hm
        else:
            lat2 = radians(p.latitude)
            dlat = lat2 - lat1
            dlon = radians(p.longitude - lon1)
            h = sin(dlat / 2.0) ** 2 + cos_lat1 * cos(lat2) * sin(dlon / 2.0) ** 2
            km = two_r * asin(min(1.0, sqrt(h)))
            band = int(km // band_km)
            hm = round(km * 10.0)
        av = w.available
        cov = tuple([_cap(av.get(sku, 0), d) for sku, d in sku_demand])
        reason: ExclusionReason | None = None
        if not w.active:
            reason = ExclusionReason.INACTIVE
        elif channel is not None and w.id not in channel:
            reason = ExclusionReason.NOT_IN_CHANNEL
        elif pickup is not None:
            if w.id != pickup:
                reason = ExclusionReason.NOT_PICKUP_STORE
            # the customer collects at the store: the destination country does not apply
        elif w.ships_to is not None and country not in w.ships_to:
            reason = ExclusionReason.COUNTRY_NOT_SERVED
        elif no_stores and w.is_pickup_store:
            reason = ExclusionReason.PICKUP_STORE_ONLY
        if reason is None and not any(cov):
            reason = ExclusionReason.NO_STOCK
        c = _Cand(w, km, band, hm, cov, reason)
        all_cands.append(c)
        if reason is None:
            eligible.append(c)
    if missing_coords:
        notes.append(
            "no coordinates for "
            + ", ".join(sorted(missing_coords))
            + ": distance unknown (worst band)"
        )

    # dense priority rank among eligible, scalar cost, cost order
    ranks = {p: r for r, p in enumerate(sorted({c.wh.priority for c in eligible}))}
    for c in eligible:
        c.rank = ranks[c.wh.priority]
        if domestic_first:
            wc = c.wh.country
            c.cross_border = 0 if wc is not None and wc.upper() == country else 1
        c.cost = c.band * _W_BAND + c.cross_border * _W_CROSS_BORDER + c.rank * _W_RANK + c.hm
    eligible.sort(key=lambda c: (c.cost, c.wh.code, c.wh.id))

    problem = _Problem(lines, sku_of_line, demand, eligible, policy.allow_line_split)
    n = problem.n
    cap = n if policy.max_shipments is None else min(policy.max_shipments, n)
    if pickup is not None:
        cap = min(cap, 1)

    chosen: tuple[int, ...] = ()
    runner: tuple[int, ...] | None = None
    search_kind = "none"
    proven = True
    capped = False
    if n > 0:
        target = problem.split_full if problem.split else problem.fill(range(n))
        chosen, runner, search_kind, proven, capped = _choose(problem, target, cap)
        if pickup is not None:
            search_kind = "pickup"

    # allocations from the chosen set
    assignment = problem.assign(chosen) if chosen else []
    per_member_units: dict[int, int] = {}
    placed_by_line = [0] * len(lines)
    for li, i, q in assignment:
        per_member_units[i] = per_member_units.get(i, 0) + q
        placed_by_line[li] += q
    used = tuple(i for i in sorted(chosen) if per_member_units.get(i, 0) > 0)
    assignment.sort()
    allocations = tuple(
        [
            Allocation(lines[li].line_id, lines[li].sku, eligible[i].wh.id, q)
            for li, i, q in assignment
        ]
    )
    shortages = tuple(
        [
            Shortage(line.line_id, line.sku, line.quantity, placed)
            for line, placed in zip(lines, placed_by_line, strict=True)
            if placed < line.quantity
        ]
    )
    unfilled = total_units - sum(placed_by_line)
    fully_filled = unfilled == 0
    used_cands = [eligible[i] for i in used]
    chosen_cost = _cost_of(used_cands, unfilled)

    # runner-up and deciding rule
    runner_up: AlternativePlan | None = None
    if runner is not None:
        r_cands = [eligible[i] for i in runner]
        r_cost = _cost_of(r_cands, total_units - problem.fill(runner))
        field_name, margin = _separation(chosen_cost, r_cost)
        runner_up = AlternativePlan(
            warehouses=tuple([c.wh.id for c in r_cands]),
            codes=tuple([c.wh.code for c in r_cands]),
            cost=r_cost,
            separated_by=field_name,
            margin=margin,
        )
    if not used:
        rule = DecidingRule.NO_STOCK
    elif pickup is not None:
        rule = DecidingRule.PICKUP_STORE
    elif runner_up is None:
        rule = DecidingRule.ONLY_OPTION
    elif runner_up.separated_by == "tie_break":
        rule = DecidingRule.TIE_BREAK
    else:
        rule = _RULE_BY_FIELD[runner_up.separated_by]
        if rule is DecidingRule.FEWEST_SHIPMENTS and len(used) == 1 and fully_filled:
            rule = DecidingRule.SINGLE_WAREHOUSE_FILL

    # candidate explanations, in input order
    used_units = {id(eligible[i]): per_member_units[i] for i in used}
    helpful: set[int] = set()
    if capped:
        base = problem.fill(used)
        helpful = {id(eligible[i]) for i in range(n) if problem.fill([*used, i]) > base}
    line_info = [
        (line.line_id, s, line.quantity) for line, s in zip(lines, sku_of_line, strict=True)
    ]
    candidates: list[CandidateExplanation] = []
    for c in all_cands:
        cid = id(c)
        units = used_units.get(cid, 0)
        why = c.reason
        if why is None and not units:
            why = (
                ExclusionReason.OVER_SHIPMENT_LIMIT
                if cid in helpful
                else ExclusionReason.NOT_NEEDED
            )
        cov = c.cov
        covered = sum(cov)
        candidates.append(
            CandidateExplanation(
                c.wh.id,
                c.wh.code,
                c.reason is None,
                units > 0,
                why,
                None if c.km is None else round(c.km, 1),
                c.band,
                c.wh.priority,
                c.rank if c.reason is None else None,
                covered,
                tuple([lid for lid, s, q in line_info if cov[s] >= q]),
                covered == total_units,
                units,
            )
        )

    if capped:
        notes.append(f"max_shipments={policy.max_shipments} prevents filling more units")
    if search_kind == "greedy":
        notes.append("many shipments needed: greedy set cover with local search (not proven)")
    elif not proven:
        notes.append("search budget exhausted: best plan found, not proven optimal")

    explanation = Explanation(
        summary=_summary(used_cands, runner_up, rule, unfilled, total_units, policy, n),
        deciding_rule=rule,
        chosen_cost=chosen_cost,
        runner_up=runner_up,
        candidates=tuple(candidates),
        search=search_kind,
        proven_optimal=proven,
        objective=OBJECTIVE,
        destination={
            "country": destination.country,
            "point": None
            if dest_point is None
            else {"latitude": dest_point.latitude, "longitude": dest_point.longitude},
            "point_source": destination.point_source,
        },
        notes=tuple(notes),
    )
    return RoutePlan(
        allocations=allocations,
        shortages=shortages,
        fully_filled=fully_filled,
        warehouses=tuple([c.wh.id for c in used_cands]),
        explanation=explanation,
        allow_backorder=policy.allow_backorder,
    )


def _cap(v: int, d: int) -> int:
    return d if v >= d else (v if v > 0 else 0)


def _choose(
    problem: _Problem, target: int, cap: int
) -> tuple[tuple[int, ...], tuple[int, ...] | None, str, bool, bool]:
    """Pick (chosen set, runner-up set, search kind, proven optimal, capped by max_shipments)."""
    n = problem.n
    lb = _lower_bound_shipments(problem, target)
    found: list[_Found] = []
    k_found = 0
    proven = True
    for k in range(max(1, lb), min(cap, _EXACT_MAX_SHIPMENTS) + 1):
        found = problem.best_sets(k, target, _SEARCH_NODE_BUDGET)
        if problem.exhausted:
            proven = False
        if found:
            k_found = k
            break
        if problem.exhausted:
            break  # unknown whether a k-set exists: let the greedy decide
    capped = False
    if found and not proven:
        # budget ran out: keep the greedy's plan when it is better
        greedy = problem.greedy(target, cap)
        g_fill = problem.fill(greedy)
        g_key = (-g_fill, len(greedy), problem.set_cost(greedy))
        if g_key < (-found[0].fill, k_found, found[0].key[1]):
            return greedy, None, "greedy", False, g_fill < target
    if found:
        kind = "single" if k_found == 1 else "exact"
    elif cap <= _EXACT_MAX_SHIPMENTS and proven:
        # max_shipments binds: no set within the cap reaches the target. Maximise the fill.
        capped = True
        kind = "exact"
        found = problem.best_sets(cap, 0, _SEARCH_NODE_BUDGET)
        proven = not problem.exhausted
        if not found:  # only when the budget ran out before the first complete set
            chosen = problem.greedy(target, cap)
            return chosen, None, "greedy", False, problem.fill(chosen) < target
        k_found = cap
        for k in range(1, cap):  # the same fill with fewer shipments?
            fewer = problem.best_sets(k, found[0].fill, _SEARCH_NODE_BUDGET)
            if fewer:
                found, k_found = fewer, k
                break
    else:
        chosen = problem.greedy(target, cap)
        return chosen, None, "greedy", False, problem.fill(chosen) < target

    # runner-up (explanation only, small budgets): second best of the same size, else the best
    # minimal set one shipment larger (up to three), else, for single-warehouse plans, the best
    # single warehouse that places fewer units.
    chosen = found[0].members
    runner: tuple[int, ...] | None = None
    if len(found) > 1:
        runner = found[1].members
    else:
        fill = found[0].fill
        if k_found + 1 <= min(cap, n, _EXACT_MAX_SHIPMENTS):
            more = problem.best_sets(k_found + 1, fill, _RUNNER_UP_NODE_BUDGET)
            if more:
                runner = more[0].members
        if runner is None and fill > 0 and k_found == 1:
            less = problem.best_sets(k_found, 0, _RUNNER_UP_NODE_BUDGET, exclude=chosen)
            if less:
                runner = less[0].members
    return chosen, runner, kind, proven, capped


def _lower_bound_shipments(problem: _Problem, target: int) -> int:
    """A valid lower bound on the shipments needed to place ``target`` units."""
    if target <= 0 or problem.n == 0:
        return 1
    lb = 1
    best_single = max([sum(c) for c in problem.cov])
    if best_single > 0:
        lb = -(-target // best_single)
    if problem.split and target >= problem.split_full:
        # every SKU must reach its target: count the largest covers it needs
        for s in range(problem.m):
            need = problem.target[s]
            if lb >= problem.n or need <= max([c[s] for c in problem.cov]):
                continue
            acc = k = 0
            for v in sorted([c[s] for c in problem.cov], reverse=True):
                acc += v
                k += 1
                if acc >= need:
                    break
            lb = max(lb, k)
    return lb


def _summary(
    used: list[_Cand],
    runner_up: AlternativePlan | None,
    rule: DecidingRule,
    unfilled: int,
    total: int,
    policy: RoutingPolicy,
    n_eligible: int,
) -> str:
    if not used:
        if n_eligible == 0:
            return f"No eligible warehouse has stock for this order: all {total} units are short."
        return f"No units can be placed: all {total} units are short."
    where = " + ".join(_fmt_wh(c) for c in used)
    head = f"Ship from {where}" if len(used) == 1 else f"Split into {len(used)} shipments: {where}"
    if unfilled:
        head += f"; {total - unfilled} of {total} units placed, {unfilled} short"
        if policy.allow_backorder:
            head += " (backorder)"
    alt = " + ".join(runner_up.codes) if runner_up is not None else ""
    shipments = runner_up.cost.shipments if runner_up is not None else 0
    reason = {
        DecidingRule.PICKUP_STORE: "click-and-collect at the chosen store",
        DecidingRule.ONLY_OPTION: "no other plan places as many units in as few shipments",
        DecidingRule.NO_STOCK: "no stock",
        DecidingRule.SINGLE_WAREHOUSE_FILL: (
            f"one warehouse fills the whole order, while the runner-up {alt} "
            f"needs {shipments} shipments"
        ),
        DecidingRule.FEWEST_SHIPMENTS: f"fewer shipments than the runner-up {alt}",
        DecidingRule.MOST_UNITS_FILLED: f"places more units than the runner-up {alt}",
        DecidingRule.DISTANCE_BAND: f"a closer distance band than the runner-up {alt}",
        DecidingRule.DOMESTIC_FIRST: (
            f"same shipments and distance bands as {alt}, but fewer cross-border shipments"
        ),
        DecidingRule.PRIORITY: (
            f"same shipments and distance bands as {alt}, but preferred warehouse priority"
        ),
        DecidingRule.DISTANCE: f"same shipments, bands and priority as {alt}, but fewer km",
        DecidingRule.TIE_BREAK: f"equal cost to {alt}; tie broken by warehouse code",
    }[rule]
    return f"{head}: {reason}."
