"""The per-order router against brute force on small instances (no DB).

What the router promises (``oms.routing.domain``), checked here against every possible plan:

1. **Fill.** When the explanation says ``proven_optimal``, no plan within the policy (eligible
   warehouses, ``max_shipments``, line split or whole lines) places more units.
2. **Cost.** Then also no plan with that fill has a smaller cost key ``(shipments, band sum,
   cross-border shipments, priority-rank sum)``: the key is *equal* to brute force's. Raw
   kilometres and the final tie break are not compared (sums of rounded distances).
3. The search is exact, so proven, whenever the plan needs at most three shipments or at most
   eight warehouses are eligible (and no node budget ran out): every instance here (up to five
   warehouses) must come out proven. Greedy plans (more warehouses) promise less and are not
   tested here.

Brute force enumerates every assignment: each line to one warehouse or none (whole lines; a
line may be part-filled from its warehouse), or, with line split, every set of warehouses
(the best fill of a set is then per SKU ``min(demand, stock of the set)``). Orders often hold
the same SKU on two lines, which is what first-fit packing got wrong.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from oms.routing.domain import (
    Destination,
    GeoPoint,
    RouteLine,
    RoutePlan,
    RoutingPolicy,
    WarehouseCandidate,
    plan_route,
)

SKUS = ["A", "B", "C"]
TO_BERLIN = Destination("DE", GeoPoint(52.52, 13.405))

Key = tuple[int, int, int, int, int]
Case = tuple[list[RouteLine], list[WarehouseCandidate], RoutingPolicy]


def _key_of(plan: RoutePlan) -> Key:
    c = plan.explanation.chosen_cost
    return (
        c.unfilled_units,
        c.shipments,
        c.band_sum,
        c.cross_border_shipments,
        c.priority_rank_sum,
    )


def brute_force(
    lines: list[RouteLine], whs: list[WarehouseCandidate], policy: RoutingPolicy, plan: RoutePlan
) -> Key:
    """The best (unfilled, shipments, band sum, cross-border, rank sum) over every plan the
    policy allows. Bands and ranks come from the plan's explanation (per candidate)."""
    cap = policy.max_shipments
    cands = {c.warehouse_id: c for c in plan.explanation.candidates if c.eligible}
    ids = sorted(cands)
    stock = {w.id: w.available for w in whs}
    country = {w.id: w.country for w in whs}
    total = sum(ln.quantity for ln in lines)

    def cost(used: set[str], filled: int) -> Key:
        return (
            total - filled,
            len(used),
            sum(cands[w].band for w in used),
            sum(0 if country[w] == "DE" else 1 for w in used),
            sum(cands[w].priority_rank or 0 for w in used),
        )

    best: Key | None = None
    if policy.allow_line_split:
        demand: dict[str, int] = defaultdict(int)
        for ln in lines:
            demand[ln.sku] += ln.quantity
        for k in range(len(ids) + 1):
            if cap is not None and k > cap:
                break
            for subset in itertools.combinations(ids, k):
                filled = sum(
                    min(d, sum(max(0, stock[w].get(s, 0)) for w in subset))
                    for s, d in demand.items()
                )
                key = cost(set(subset), filled)
                best = key if best is None or key < best else best
    else:
        for choice in itertools.product([None, *ids], repeat=len(lines)):
            packed: dict[tuple[str, str], int] = defaultdict(int)
            for ln, w in zip(lines, choice, strict=True):
                if w is not None:
                    packed[(w, ln.sku)] += ln.quantity
            placed = {(w, s): min(q, max(0, stock[w].get(s, 0))) for (w, s), q in packed.items()}
            used = {w for (w, _), q in placed.items() if q > 0}
            if cap is not None and len(used) > cap:
                continue
            key = cost(used, sum(placed.values()))
            best = key if best is None or key < best else best
    assert best is not None
    return best


def _route(lines: list[RouteLine], whs: list[WarehouseCandidate], policy: RoutingPolicy) -> Key:
    """Route, check the promises against brute force, return the plan's key."""
    plan = plan_route(lines, TO_BERLIN, whs, policy)
    best = brute_force(lines, whs, policy, plan)
    got = _key_of(plan)
    # the plan itself is feasible: within stock, one warehouse per line without line split
    taken: dict[tuple[str, str], int] = defaultdict(int)
    per_line: dict[str, set[str]] = defaultdict(set)
    for a in plan.allocations:
        taken[(a.warehouse_id, a.sku)] += a.quantity
        per_line[a.line_id].add(a.warehouse_id)
    stock = {w.id: w.available for w in whs}
    assert all(q <= stock[w].get(s, 0) for (w, s), q in taken.items())
    if not policy.allow_line_split:
        assert all(len(v) == 1 for v in per_line.values())
    if policy.max_shipments is not None:
        assert got[1] <= policy.max_shipments
    assert plan.explanation.proven_optimal  # at most eight warehouses: always exact
    assert got[0] == best[0], f"fill: router leaves {got[0]} short, best plan {best[0]}"
    assert got == best, f"proven plan {got} but brute force finds {best}"
    return got


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Up to 5 warehouses and 4 lines over 3 SKUs: SKUs often repeat across lines."""
    lines = [
        RouteLine(f"l{i}", draw(st.sampled_from(SKUS)), draw(st.integers(1, 4)))
        for i in range(draw(st.integers(1, 4)))
    ]
    whs = []
    for i in range(draw(st.integers(1, 5))):
        held = draw(st.sets(st.sampled_from(SKUS), min_size=1, max_size=3))
        whs.append(
            WarehouseCandidate(
                id=f"w{i}",
                code=f"W{i}",
                point=draw(
                    st.one_of(
                        st.just(None), st.builds(GeoPoint, st.floats(45, 56), st.floats(0, 25))
                    )
                ),
                priority=draw(st.integers(0, 2)),
                available={s: draw(st.integers(0, 6)) for s in held},
                country=draw(st.sampled_from(["DE", "PL"])),
            )
        )
    policy = RoutingPolicy(
        allow_line_split=draw(st.booleans()),
        max_shipments=draw(st.one_of(st.none(), st.integers(1, 4))),
        distance_band_km=150.0,
    )
    return lines, whs, policy


@settings(max_examples=400, deadline=None)
@given(cases())
def test_router_matches_brute_force(case: Case) -> None:
    _route(*case)


@st.composite
def packable_cases(draw: st.DrawFn) -> Case:
    """Orders with a full plan by construction: each line is given to a warehouse, and each
    warehouse stocks what it was given (sometimes a unit more or less). The full plan often
    needs lines of one SKU packed exactly, which first-fit misses."""
    n_wh = draw(st.integers(2, 4))
    lines: list[RouteLine] = []
    stock: list[dict[str, int]] = [{} for _ in range(n_wh)]
    for i in range(draw(st.integers(2, 5))):
        sku = draw(st.sampled_from(SKUS[:2]))
        q = draw(st.integers(1, 5))
        lines.append(RouteLine(f"l{i}", sku, q))
        w = draw(st.integers(0, n_wh - 1))
        stock[w][sku] = stock[w].get(sku, 0) + q
    for held in stock:
        for sku in held:
            held[sku] = max(0, held[sku] + draw(st.integers(-1, 1)))
    whs = [
        WarehouseCandidate(
            id=f"w{i}",
            code=f"W{i}",
            point=GeoPoint(52.5 - 1.5 * draw(st.integers(0, 3)), 13.4),
            priority=draw(st.integers(0, 1)),
            available=held,
            country="DE",
        )
        for i, held in enumerate(stock)
    ]
    policy = RoutingPolicy(
        allow_line_split=False,
        max_shipments=draw(st.one_of(st.none(), st.integers(1, 3))),
        distance_band_km=150.0,
    )
    return lines, whs, policy


@settings(max_examples=300, deadline=None)
@given(packable_cases())
def test_whole_lines_packed_as_well_as_brute_force(case: Case) -> None:
    _route(*case)


def _wh(i: int, lat: float, stock: dict[str, int]) -> WarehouseCandidate:
    return WarehouseCandidate(
        id=f"w{i}",
        code=f"W{i}",
        point=GeoPoint(lat, 13.4),
        priority=0,
        available=stock,
        country="DE",
    )


def test_same_sku_on_two_lines_is_filled_without_line_split() -> None:
    """The reported case: first-fit put the 3 into the 4, leaving no room for both 2s."""
    lines = [RouteLine("l1", "A", 3), RouteLine("l2", "A", 2), RouteLine("l3", "A", 2)]
    whs = [_wh(0, 52.5, {"A": 4}), _wh(1, 50.0, {"A": 3})]
    plan = plan_route(lines, TO_BERLIN, whs, RoutingPolicy(allow_line_split=False))
    assert plan.fully_filled
    by_line = {a.line_id: (a.warehouse_id, a.quantity) for a in plan.allocations}
    assert by_line == {"l1": ("w1", 3), "l2": ("w0", 2), "l3": ("w0", 2)}


def test_lines_only_fillable_whole_are_packed_under_a_shipment_cap() -> None:
    lines = [RouteLine("l1", "A", 2), RouteLine("l2", "A", 2), RouteLine("l3", "B", 1)]
    whs = [_wh(0, 52.5, {"A": 3, "B": 1}), _wh(1, 51.0, {"A": 2}), _wh(2, 48.0, {"A": 4})]
    policy = RoutingPolicy(allow_line_split=False, max_shipments=2)
    plan = plan_route(lines, TO_BERLIN, whs, policy)
    assert plan.fully_filled
    assert set(plan.warehouses) == {"w0", "w1"}


def test_router_matches_brute_force_on_seeded_instances() -> None:
    """Breadth on top of Hypothesis: 600 seeded instances, repeated SKUs, half whole-line."""
    rng = random.Random(20)
    for n in range(600):
        lines = [
            RouteLine(f"l{i}", rng.choice(SKUS), rng.randint(1, 4))
            for i in range(rng.randint(2, 4))
        ]
        whs = [
            WarehouseCandidate(
                id=f"w{i}",
                code=f"W{i}",
                point=GeoPoint(rng.uniform(45, 56), rng.uniform(0, 25)),
                priority=rng.randint(0, 2),
                available={s: rng.randint(0, 5) for s in rng.sample(SKUS, rng.randint(1, 3))},
                country=rng.choice(["DE", "PL"]),
            )
            for i in range(rng.randint(2, 5))
        ]
        policy = RoutingPolicy(
            allow_line_split=n % 2 == 0,
            max_shipments=rng.choice([None, None, 1, 2, 3]),
            distance_band_km=150.0,
        )
        _route(lines, whs, policy)
