"""Waves: the open orders of a pool re-assigned to warehouses jointly, solved exactly (pure).

A per-order router decides each order alone, in placement order, against the stock left by the
orders before it. A wave takes a pool of orders that are placed (and reserved) but not yet
released to picking and solves their assignment *together*, as one mixed-integer program
(HiGHS through ``highspy``), with every order keeping at least the units it has now on each line
(its fill never goes down). Units an order still waits for (its backorders, ``backordered``)
may be filled when the pool's new assignment leaves stock for them: each unit left backordered
costs :data:`UNFILLED_UNIT` (the benchmark's 50 per unfilled unit: more than any two parcels),
so the wave fills what it can first and only then saves parcels.

Model (per order ``o``, line ``l`` with ``F[l]`` units kept, eligible warehouse ``w``):

* ``y[o,w]`` binary: a parcel from ``w``; ``x[o,l,w]`` units of line ``l`` from ``w`` (with
  line split; continuous: once the parcels are fixed the units are a transportation problem,
  integral at a vertex; a fractional answer is re-solved as that LP), or ``z[o,l,w]`` binary,
  the whole line from ``w`` (without);
* each line gets its units: ``sum_w x[o,l,w] + u[o,l] = F[l] + B[l]`` with ``0 <= u[o,l] <=
  B[l]`` its ``B[l]`` backordered units left unfilled (``B`` 0: exactly ``F``); without line
  split the units a line holds come whole from one warehouse (``sum_w z = 1``) and its
  backordered ones, as a backorder fill places them, all or nothing from one warehouse
  (``sum_w z' + u = 1``);
* ``x[o,l,w] <= F[l] * y[o,w]``; ``sum_w y[o,w] <= max_shipments``;
* stock: per (warehouse, SKU), what the pool's lines take is at most what the wave may hand
  out: the free stock plus what the pool's orders hold there now;
* minimise ``sum parcel_cost(o, w) * y[o,w] + UNFILLED_UNIT * sum u`` with the parcel cost of
  :func:`parcel_cost`.

The warehouses an order may use are the ones the per-order router would consider (its
channel's policy: warehouse list, ships-to, pickup stores, exclusions, blocked stock), computed
by the router's own scan (:func:`oms.routing.candidates.scan_warehouses`), plus the ones it
already ships from. The orders' current plans are a feasible solution, and are what the wave
keeps when the solver finds nothing cheaper within the time limit.

Solving, within one time limit:

1. **a start** (:func:`_restricted_start`, :data:`RESTRICTED_STAGES`): the LP relaxation, then
   the MIP restricted to the warehouses the LP uses for each order plus the ones it ships from
   now (a sixth of the columns, by 35 % of the limit), then that neighbourhood widened by each
   order's 4 cheapest warehouses, started from the first one's plan (by 75 % of the limit, or
   95 % of a short one): restricted MIPs find good plans in a fraction of a second where the
   full MIP's first improvement comes after its root cuts (0.9-2.6 s into the solve on
   the bench's pools of 100 orders);
2. **the full MIP**, started from the start's plan or the current plans (solved again
   without the start if the columns HiGHS hands back do not cost what it reports: HiGHS can
   prove the optimum and still return the start's columns);
3. **what is used**: the proven optimum (relative gap 0.01 %); or, when the limit stops the
   solver, the cheaper of its best plan and the start's (``proven`` false, ``status``
   ``time_limit``) *only if* it passes the same check as an optimum: integral, every line gets
   at least its units and at most its backordered units more (no fill goes down), no
   (warehouse, SKU) gives more than it has, lines stay whole without line splitting, no order
   exceeds its shipment cap, and the pool costs less than now. Anything else keeps every plan.
   ``accept_incumbent=False`` restores "proven optimum or nothing".

The default time limit (:data:`DEFAULT_TIME_LIMIT_S`, 1.5 s) is what a policy gets when it sets
none.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np

from oms.routing.candidates import index_demand, scan_warehouses
from oms.routing.model import (
    Allocation,
    Destination,
    RouteLine,
    RoutingPolicy,
    WarehouseCandidate,
)

__all__ = [
    "PARCEL_BASE",
    "PARCEL_PER_BAND",
    "UNFILLED_UNIT",
    "DEFAULT_TIME_LIMIT_S",
    "OrderChange",
    "WaveOrder",
    "WaveResult",
    "parcel_cost",
    "solve_wave",
]

PARCEL_BASE = 6.0
"""Cost of a parcel (the routing benchmark's cost model: a zone package rate)."""
PARCEL_PER_BAND = 1.5
"""Added per distance band of the shipping warehouse."""
CROSS_BORDER = 0.5
"""Added for a parcel from outside the destination country (domestic first)."""
PER_PRIORITY_RANK = 0.01
"""Added per priority rank of the warehouse (a tie break, as for the router)."""
PER_KM = 1e-5
"""Added per kilometre (the last tie break)."""
UNFILLED_UNIT = 50.0
"""Cost of a unit an order still waits for (backordered) that the wave leaves unfilled: the
routing benchmark's 50 per unfilled unit, more than any two parcels, so a wave fills what it can
before it saves parcels (the router's "most units first")."""
DEFAULT_TIME_LIMIT_S = 1.5
"""The wave's time limit when its policy sets none: a wave of 100 orders at 50 warehouses then
takes p95 < 2 s (the limit, plus reading the plan back and checking it); see
``bench/results/routing-waves.md`` for what a longer limit buys."""
MIP_REL_GAP = 1e-4
"""The solver stops at a relative gap of 0.01 %: "optimal" means within it (about 1e-3 of a
parcel per 100 orders; the tie-break terms above are smaller than that and may be left on the
table)."""


def parcel_cost(*, band: int, cross_border: int, priority_rank: int, km: float) -> float:
    """The cost of one parcel of one order from one warehouse, as the wave minimises it: a base
    rate plus a surcharge per distance band (the benchmark's zone rates), then small terms
    keeping the router's tie breaks (domestic first, priority, kilometres)."""
    return (
        PARCEL_BASE
        + PARCEL_PER_BAND * band
        + CROSS_BORDER * cross_border
        + PER_PRIORITY_RANK * priority_rank
        + PER_KM * km
    )


@dataclass(frozen=True, slots=True)
class WaveOrder:
    """One order of the pool: the units it holds per line now (``current``), where it goes and
    its channel's policy. ``lines`` carry the units to keep (a line without any is left out);
    ``backordered`` the units each line still waits for (a line may be in both, or only
    here): the wave may fill them, never takes any away."""

    order_id: str
    lines: tuple[RouteLine, ...]
    destination: Destination
    policy: RoutingPolicy
    current: tuple[Allocation, ...]
    backordered: tuple[RouteLine, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderChange:
    """An order's plan before and after the wave, and what the wave saved on it."""

    order_id: str
    before: tuple[Allocation, ...]
    after: tuple[Allocation, ...]
    parcels_before: int
    parcels_after: int
    band_sum_before: int
    band_sum_after: int
    cost_before: float
    cost_after: float
    backordered_before: int = 0
    backordered_after: int = 0

    @property
    def changed(self) -> bool:
        return _units(self.before) != _units(self.after)

    @property
    def filled(self) -> int:
        """Backordered units the wave filled on this order."""
        return self.backordered_before - self.backordered_after

    @property
    def delta(self) -> float:
        """What the order's plan costs more (negative: saves) in the wave's objective: its
        parcels plus :data:`UNFILLED_UNIT` per unit left backordered."""
        return (
            self.cost_after
            + UNFILLED_UNIT * self.backordered_after
            - self.cost_before
            - UNFILLED_UNIT * self.backordered_before
        )

    def to_dict(self, codes: Mapping[str, str] | None = None) -> dict[str, Any]:
        codes = codes or {}

        def plan(allocs: Sequence[Allocation]) -> list[dict[str, Any]]:
            return [
                {
                    "line_id": a.line_id,
                    "sku": a.sku,
                    "warehouse": codes.get(a.warehouse_id, a.warehouse_id),
                    "quantity": a.quantity,
                }
                for a in sorted(allocs, key=lambda a: (a.line_id, a.warehouse_id))
            ]

        return {
            "before": {
                "allocations": plan(self.before),
                "parcels": self.parcels_before,
                "band_sum": self.band_sum_before,
                "cost": round(self.cost_before, 4),
            },
            "after": {
                "allocations": plan(self.after),
                "parcels": self.parcels_after,
                "band_sum": self.band_sum_after,
                "cost": round(self.cost_after, 4),
            },
            "saved": {
                "parcels": self.parcels_before - self.parcels_after,
                "band_sum": self.band_sum_before - self.band_sum_after,
                "cost": round(self.cost_before - self.cost_after, 4),
            },
            "filled": self.filled,
        }


@dataclass(frozen=True, slots=True)
class WaveResult:
    """What the solver found. ``applied``: the wave's plans differ from the current ones and
    cost less (only then does anything move); else every order keeps its plan."""

    status: str  # "optimal", "time_limit" (applied: a checked cheaper plan), "empty", "error: …"
    proven: bool
    objective_before: float
    objective_after: float
    seconds: float
    changes: tuple[OrderChange, ...]
    applied: bool
    columns: int = 0
    rows: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> tuple[OrderChange, ...]:
        return tuple(c for c in self.changes if c.changed) if self.applied else ()


def _units(allocs: Sequence[Allocation]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for a in allocs:
        out[(a.line_id, a.warehouse_id)] += a.quantity
    return dict(out)


@dataclass(slots=True)
class _Option:
    """One warehouse an order may use: its parcel cost and band."""

    warehouse_id: str
    cost: float
    band: int


def _options(order: WaveOrder, warehouses: Sequence[WarehouseCandidate]) -> dict[str, _Option]:
    """The warehouses the per-order router would consider for ``order`` against the wave's
    stock (the pool's), and the ones it ships from now, with their parcel costs."""
    demand = index_demand((*order.lines, *order.backordered))
    scan = scan_warehouses(warehouses, order.destination, demand, order.policy)
    out: dict[str, _Option] = {}
    for c in scan.eligible:
        cost = parcel_cost(
            band=c.band, cross_border=c.cross_border, priority_rank=c.rank, km=c.km or 0.0
        )
        out[c.wh.id] = _Option(c.wh.id, cost, c.band)
    current = {a.warehouse_id for a in order.current}
    worst_rank = max([c.rank for c in scan.eligible], default=0) + 1
    country = order.destination.country.upper()
    for c in scan.all:
        if c.wh.id in current and c.wh.id not in out:  # ineligible now, but it holds the stock
            cross = 0 if (c.wh.country or "").upper() == country else 1
            cost = parcel_cost(
                band=c.band, cross_border=cross, priority_rank=worst_rank, km=c.km or 0.0
            )
            out[c.wh.id] = _Option(c.wh.id, cost, c.band)
    return out


def _plan_cost(
    allocs: Sequence[Allocation], options: Mapping[str, _Option]
) -> tuple[int, int, float]:
    used = {a.warehouse_id for a in allocs if a.quantity > 0}
    return (
        len(used),
        sum(options[w].band for w in used),
        sum(options[w].cost for w in used),
    )


def _left_backordered(order: WaveOrder, allocs: Sequence[Allocation]) -> int:
    """The order's backordered units a plan leaves unfilled (units beyond each line's kept
    units fill its backorder)."""
    kept: dict[str, int] = defaultdict(int)
    for ln in order.lines:
        kept[ln.line_id] += ln.quantity
    got: dict[str, int] = defaultdict(int)
    for a in allocs:
        got[a.line_id] += a.quantity
    return sum(
        max(0, ln.quantity - max(0, got[ln.line_id] - kept[ln.line_id])) for ln in order.backordered
    )


def _objective(
    orders: Sequence[WaveOrder],
    opts: Sequence[Mapping[str, _Option]],
    plans: Sequence[Sequence[Allocation]],
) -> float:
    return sum(
        _plan_cost(p, op)[2] + UNFILLED_UNIT * _left_backordered(o, p)
        for o, op, p in zip(orders, opts, plans, strict=True)
    )


def solve_wave(
    orders: Sequence[WaveOrder],
    warehouses: Sequence[WarehouseCandidate],
    *,
    time_limit_s: float,
    accept_incumbent: bool = True,
    warm_start: bool = True,
    solver_options: Mapping[str, Any] | None = None,
) -> WaveResult:
    """Solve the pool's assignment exactly (see the module docstring).

    ``warehouses[i].available`` is what the wave may hand out per SKU: the free stock plus the
    units the pool's orders hold there now. Never raises for the solver's sake: a solver that
    fails, or stops at the limit without a checked cheaper plan (or, with ``accept_incumbent``
    off, without a proven optimum), leaves every order as it is (``applied`` false).
    ``warm_start`` off skips the restricted start (the bench compares both);
    ``solver_options`` are extra HiGHS options for the full MIP (tests stop it with a node
    limit, which, unlike time, is deterministic)."""
    started = time.perf_counter()
    by_id = {w.id: w for w in warehouses}
    opts = [_options(o, warehouses) for o in orders]
    before = [_plan_cost(o.current, op) for o, op in zip(orders, opts, strict=True)]
    waiting = [_left_backordered(o, o.current) for o in orders]
    objective_before = _objective(orders, opts, [o.current for o in orders])

    def unchanged(
        status: str, proven: bool, notes: tuple[str, ...] = (), columns: int = 0, rows: int = 0
    ) -> WaveResult:
        changes = tuple(
            OrderChange(o.order_id, o.current, o.current, b[0], b[0], b[1], b[1], b[2], b[2], n, n)
            for o, b, n in zip(orders, before, waiting, strict=True)
        )
        return WaveResult(
            status=status,
            proven=proven,
            objective_before=objective_before,
            objective_after=objective_before,
            seconds=time.perf_counter() - started,
            changes=changes,
            applied=False,
            notes=notes,
            columns=columns,
            rows=rows,
        )

    if not orders:
        return unchanged("empty", True)
    model = _Model(orders, opts, by_id)
    size = (model.ncol, model.nrow)
    deadline = started + max(0.01, float(time_limit_s))
    better: list[tuple[Allocation, ...]] | None = None
    try:
        if warm_start:
            try:
                better = _restricted_start(orders, opts, by_id, model, deadline)
            except Exception:  # only a start: the full MIP runs without it  # noqa: BLE001
                better = None
            if better is not None:
                model.set_start(better)
        h = _run_full(model, deadline, solver_options, start=True)
        if _has_incumbent(h) and not _solution_matches(h, model.costs):
            # HiGHS can report the optimum yet hand back the start (the current plans) as its
            # columns (seen when presolve maps the start onto an optimum of the reduced
            # model): never trust such columns; solve again without the start.
            h = _run_full(model, deadline, solver_options, start=False)
        status = h.modelStatusToString(h.getModelStatus())
    except Exception as exc:  # the solver's failure must not fail the wave  # noqa: BLE001
        return unchanged(f"error: {exc}", False, (), *size)
    proven = status == "Optimal"
    stopped = "limit" in status.lower()  # by the time limit (or a limit in solver_options)
    label = "optimal" if proven else ("time_limit" if "time" in status.lower() else status.lower())
    label = label.replace(" reached", "").replace(" ", "_")
    incumbent = not proven and accept_incumbent and stopped and _has_incumbent(h)
    plans: list[tuple[Allocation, ...]] | None = None
    if proven or incumbent:
        sol = list(h.getSolution().col_value)
        plans = model.plans(sol)
        if plans is None:  # units split fractionally: fix the parcels, re-solve the flow (LP)
            flow = model.integral_flow(h, sol)
            plans = None if flow is None else model.plans(flow)
    gap = float(h.getInfo().mip_gap) if incumbent else 0.0
    from_start = False
    if (
        accept_incumbent
        and better is not None
        and (plans is None or _objective(orders, opts, better) < _objective(orders, opts, plans))
    ):
        # the full MIP stopped without anything better than its start (or handed back columns
        # that fail the check): the start's plans, checked the same way, are used (within a
        # proven optimum's gap too when the MIP proved its bound: they cost less still)
        plans, from_start = better, True
    if plans is None:  # nothing proven or checked (not integral, a line short, over stock...)
        if proven:
            return unchanged("rejected", False, ("solution failed the check",), *size)
        why = f"solver {status}: " + (
            "no plan passed the check" if incumbent else "every order keeps its plan"
        )
        return unchanged(label, False, (why,), *size)
    changes = []
    for o, op, b, n, after in zip(orders, opts, before, waiting, plans, strict=True):
        a = _plan_cost(after, op)
        left = _left_backordered(o, after)
        changes.append(
            OrderChange(o.order_id, o.current, after, b[0], a[0], b[1], a[1], b[2], a[2], n, left)
        )
    objective_after = objective_before + sum(c.delta for c in changes)
    if objective_after >= objective_before - 1e-6:
        why = "no cheaper assignment" if proven else f"solver {status}: nothing cheaper found"
        return unchanged(label, proven, (why,), *size)
    notes: tuple[str, ...] = ()
    if from_start and not proven:
        notes = (
            f"solver {status}: the best plan of the restricted solves is used (checked: no "
            "line loses units, within stock and the policy, cheaper); not proven optimal",
        )
    elif incumbent:
        notes = (
            f"solver {status}: the best plan found is used (checked: no line loses units, "
            f"within stock and the policy, cheaper); not proven optimal, gap {gap:.2%}",
        )
    return WaveResult(
        status=label,
        proven=proven,
        objective_before=objective_before,
        objective_after=objective_after,
        seconds=time.perf_counter() - started,
        changes=tuple(changes),
        applied=True,
        columns=model.ncol,
        rows=model.nrow,
        notes=notes,
    )


def _run_full(
    model: _Model, deadline: float, solver_options: Mapping[str, Any] | None, *, start: bool
) -> highspy.Highs:
    """The full MIP, run in what is left of the time limit (from the model's start or not)."""
    h = _highs(max(0.01, deadline - time.perf_counter()))
    for name, value in (solver_options or {}).items():
        h.setOptionValue(name, value)
    model.load(h, start=start)
    h.run()
    return h


def _solution_matches(h: highspy.Highs, costs: Sequence[float]) -> bool:
    """The columns HiGHS returns cost what it reports as its objective (its incumbent)."""
    reported = float(h.getInfo().objective_function_value)
    actual = float(np.dot(np.asarray(costs), np.asarray(h.getSolution().col_value)))
    return math.isclose(actual, reported, rel_tol=1e-7, abs_tol=1e-6)


def _highs(time_limit_s: float) -> highspy.Highs:
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.01, time_limit_s))
    h.setOptionValue("mip_rel_gap", MIP_REL_GAP)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("threads", 1)
    return h


RESTRICTED_STAGES: tuple[tuple[int, float], ...] = ((0, 0.35), (4, 0.75))
"""The start's stages: (cheapest warehouses added per order, share of the time limit by which
the stage must end). The first stage restricts each order to the warehouses the LP relaxation
uses and those it ships from now; the second adds each order's 4 cheapest warehouses and starts
from the first's plans. What is left of the limit goes to the full MIP, except with a short
limit (:data:`SHORT_LIMIT_S`), where the second stage runs until 95 % of it: the full MIP spends
its first 0.9-2.6 s on root cuts at 100 orders (the bench's pools) and improves nothing before."""
SHORT_LIMIT_S = 3.0
"""Time limits up to this are "short" (see :data:`RESTRICTED_STAGES`)."""


def _restricted_start(
    orders: Sequence[WaveOrder],
    opts: Sequence[Mapping[str, _Option]],
    by_id: Mapping[str, WarehouseCandidate],
    model: _Model,
    deadline: float,
) -> list[tuple[Allocation, ...]] | None:
    """A good start for the MIP, found fast: solve the LP relaxation, then the MIP restricted
    to the warehouses the LP uses for each order plus the ones it ships from now (so the
    current plans stay feasible in it), then that neighbourhood widened by each order's
    cheapest warehouses, started from the first one's plans (:data:`RESTRICTED_STAGES`). The
    restricted MIPs have a sixth to a third of the columns and usually solve, or find a good
    plan, in a fraction of a second where the full MIP spends seconds on its root cuts; their
    plans, checked like any solution, start the full MIP (which still proves, or not, the
    optimum over every warehouse). None when they find nothing cheaper than the current plans
    in their share of the time."""
    begin = time.perf_counter()
    limit = deadline - begin
    if limit <= 0.02:
        return None
    lp = _highs(limit * RESTRICTED_STAGES[0][1])
    model.load(lp, start=False)
    n = model.ncol
    lp.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.zeros(n, dtype=np.uint8))
    lp.run()
    if lp.modelStatusToString(lp.getModelStatus()) != "Optimal":
        return None
    relaxed = list(lp.getSolution().col_value)
    now = _objective(orders, opts, [o.current for o in orders])
    best: list[tuple[Allocation, ...]] | None = None
    best_cost = now
    for i, (extra, share) in enumerate(RESTRICTED_STAGES):
        if i == len(RESTRICTED_STAGES) - 1 and limit <= SHORT_LIMIT_S:
            share = max(share, 0.95)
        stop = begin + share * limit
        if stop - time.perf_counter() <= 0.01:
            break
        restricted: list[dict[str, _Option]] = []
        for o, op, y in zip(orders, opts, model.y, strict=True):
            held_at = {a.warehouse_id for a in o.current}
            if best is not None:
                held_at |= {a.warehouse_id for a in best[len(restricted)]}
            cheapest = {w for _, w in sorted((v.cost, w) for w, v in op.items())[:extra]}
            restricted.append(
                {
                    w: v
                    for w, v in op.items()
                    if w in held_at or w in cheapest or relaxed[y[w]] > 1e-6
                }
            )
        sub = _Model(orders, restricted, by_id)
        if best is not None:
            sub.set_start(best)
        plans = _solve_restricted(sub, stop)
        if plans is None:
            continue
        cost = _objective(orders, opts, plans)
        if cost < best_cost - 1e-6:
            best, best_cost = plans, cost
    return best


def _solve_restricted(sub: _Model, stop: float) -> list[tuple[Allocation, ...]] | None:
    """A restricted MIP's best plans by ``stop`` (checked like the full MIP's), or None."""
    h = _highs(stop - time.perf_counter())
    sub.load(h)
    h.run()
    if _has_incumbent(h) and not _solution_matches(h, sub.costs):  # see solve_wave
        h = _highs(max(0.01, stop - time.perf_counter()))
        sub.load(h, start=False)
        h.run()
    if not _has_incumbent(h):
        return None
    sol = list(h.getSolution().col_value)
    plans = sub.plans(sol)
    if plans is None:
        flow = sub.integral_flow(h, sol)
        plans = None if flow is None else sub.plans(flow)
    return plans


def _has_incumbent(h: highspy.Highs) -> bool:
    """The solver stopped holding a feasible integer solution (its incumbent)."""
    try:
        return int(h.getInfo().primal_solution_status) == 2  # kSolutionStatusFeasible
    except Exception:  # noqa: BLE001
        return False


@dataclass(slots=True)
class _Line:
    """One line of one order in the model: ``kept`` units it must keep, ``extra`` backordered
    units it may get, ``whole`` (no line split): each part filled whole from one warehouse.
    Without line split the units a line holds and its backordered ones are two parts (``part``
    0 and 1), as the router and a backorder fill place them: the held units from one
    warehouse, the backordered ones all or nothing from one (maybe another) warehouse."""

    line_id: str
    sku: str
    kept: int
    extra: int
    whole: bool
    part: int = 0


def _model_lines(o: WaveOrder) -> list[_Line]:
    """The order's lines (parts, without line split) as the model sees them."""
    kept: dict[str, int] = defaultdict(int)
    extra: dict[str, int] = defaultdict(int)
    sku: dict[str, str] = {}
    for ln in o.lines:
        kept[ln.line_id] += ln.quantity
        sku[ln.line_id] = ln.sku
    for ln in o.backordered:
        extra[ln.line_id] += ln.quantity
        sku.setdefault(ln.line_id, ln.sku)
    whole = not o.policy.allow_line_split
    out = []
    for lid in dict.fromkeys([*(ln.line_id for ln in o.lines), *extra]):
        have, more = kept.get(lid, 0), extra.get(lid, 0)
        if not whole:
            if have + more > 0:
                out.append(_Line(lid, sku[lid], have, more, False))
            continue
        if have > 0:
            out.append(_Line(lid, sku[lid], have, 0, True, 0))
        if more > 0:
            out.append(_Line(lid, sku[lid], 0, more, True, 1))
    return out


class _Model:
    """The MIP's columns and rows, the current plans as a start, and the solution read back."""

    def __init__(
        self,
        orders: Sequence[WaveOrder],
        opts: Sequence[Mapping[str, _Option]],
        by_id: Mapping[str, WarehouseCandidate],
    ) -> None:
        self.orders = orders
        self.costs: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.start: list[float] = []
        # x columns: (col, order index, line, warehouse id, units per unit of the column)
        self.x: list[tuple[int, int, _Line, str, int]] = []
        # u columns (backordered units left): (col, order index, line, units per unit)
        self.u: list[tuple[int, int, _Line, int]] = []
        self.lines: list[list[_Line]] = []
        self.rows: list[tuple[float, float, list[tuple[int, float]]]] = []
        self.stock: dict[tuple[str, str], int] = {}
        inf = highspy.kHighsInf
        by_stock: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        self.y: list[dict[str, int]] = []  # per order: warehouse id -> its parcel column
        for oi, (o, op) in enumerate(zip(orders, opts, strict=True)):
            held = _units(o.current)
            held_at = {a.warehouse_id for a in o.current}
            y: dict[str, int] = {}
            for wid, option in op.items():
                y[wid] = self._col(option.cost, 1.0, True, 1.0 if wid in held_at else 0.0)
            self.y.append(y)
            lines = _model_lines(o)
            self.lines.append(lines)
            for ln in lines:
                total = ln.kept + ln.extra
                entries: list[tuple[int, float]] = []
                for wid in op:
                    if (wid, ln.sku) in o.policy.blocked and (ln.line_id, wid) not in held:
                        continue
                    have = by_id[wid].available.get(ln.sku, 0)
                    if have <= 0:
                        continue
                    now = held.get((ln.line_id, wid), 0) if ln.kept else 0  # held: kept
                    if not ln.whole:
                        cap = min(total, have)
                        col = self._col(0.0, float(cap), False, float(now))
                        self.x.append((col, oi, ln, wid, 1))
                        self.rows.append((-inf, 0.0, [(col, 1.0), (y[wid], -float(cap))]))
                        entries.append((col, 1.0))
                        by_stock[(wid, ln.sku)].append((col, 1.0))
                    else:
                        if have < total:
                            continue
                        col = self._col(0.0, 1.0, True, 1.0 if now else 0.0)
                        self.x.append((col, oi, ln, wid, total))
                        self.rows.append((-inf, 0.0, [(col, 1.0), (y[wid], -1.0)]))
                        entries.append((col, 1.0))
                        by_stock[(wid, ln.sku)].append((col, float(total)))
                rhs = 1.0 if ln.whole else float(total)
                if ln.extra > 0:  # what stays backordered
                    per = total if ln.whole else 1
                    room = 1.0 if ln.whole else float(ln.extra)
                    col = self._col(UNFILLED_UNIT * per, room, False, room)
                    self.u.append((col, oi, ln, per))
                    entries.append((col, 1.0))
                self.rows.append((rhs, rhs, entries))
            limit = o.policy.max_shipments
            if limit is not None and len(y) > limit:
                self.rows.append((-inf, float(limit), [(c, 1.0) for c in y.values()]))
        for (wid, sku), entries in by_stock.items():
            have = by_id[wid].available.get(sku, 0)
            self.stock[(wid, sku)] = have
            self.rows.append((-inf, float(have), entries))
        self.ncol = len(self.costs)
        self.nrow = len(self.rows)

    def _col(self, cost: float, upper: float, integer: bool, start: float) -> int:
        self.costs.append(cost)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        self.start.append(start)
        return len(self.costs) - 1

    def set_start(self, plans: Sequence[Sequence[Allocation]]) -> None:
        """Start the solver from these plans (one per order) instead of the current ones."""
        units: dict[tuple[int, str, str], int] = defaultdict(int)
        for oi, plan in enumerate(plans):
            for a in plan:
                units[(oi, a.line_id, a.warehouse_id)] += a.quantity
        start = [0.0] * self.ncol
        for oi, y in enumerate(self.y):
            used = {a.warehouse_id for a in plans[oi] if a.quantity > 0}
            for wid, col in y.items():
                start[col] = 1.0 if wid in used else 0.0
        left = dict(units)
        filled: dict[int, int] = {}  # id of a line part -> units the start gives it
        for col, oi, ln, wid, per in self.x:  # parts in order: the held units first
            have = left.get((oi, ln.line_id, wid), 0)
            if ln.whole:
                take = per if have >= per and id(ln) not in filled else 0
                start[col] = 1.0 if take else 0.0
            else:
                take = have
                start[col] = float(take)
            if take:
                left[(oi, ln.line_id, wid)] = have - take
                filled[id(ln)] = filled.get(id(ln), 0) + take
        for col, _, ln, per in self.u:
            start[col] = (ln.kept + ln.extra - filled.get(id(ln), 0)) / per
        self.start = start

    def load(self, h: highspy.Highs, *, start: bool = True) -> None:
        n = self.ncol
        h.addCols(n, np.array(self.costs), np.zeros(n), np.array(self.upper), 0, [], [], [])
        h.changeColsIntegrality(
            n, np.arange(n, dtype=np.int32), np.array(self.integer, dtype=np.uint8)
        )
        lo: list[float] = []
        hi: list[float] = []
        starts: list[int] = []
        idx: list[int] = []
        val: list[float] = []
        for row_lo, row_hi, entries in self.rows:
            lo.append(row_lo)
            hi.append(row_hi)
            starts.append(len(idx))
            for c, v in entries:
                idx.append(c)
                val.append(v)
        h.addRows(
            len(lo),
            np.array(lo),
            np.array(hi),
            len(idx),
            np.array(starts, dtype=np.int32),
            np.array(idx, dtype=np.int32),
            np.array(val),
        )
        if start:
            given = highspy.HighsSolution()
            given.col_value = list(self.start)
            given.value_valid = True
            h.setSolution(given)

    def integral_flow(self, h: highspy.Highs, sol: Sequence[float]) -> list[float] | None:
        """With the parcels (``y``, and whole lines) fixed as found, the units are a
        transportation problem (each unit column in one line row and one stock row): its
        simplex solution is integral. None when the LP does not solve."""
        n = self.ncol
        fixed = [i for i in range(n) if self.integer[i]]
        if fixed:
            values = np.array([round(sol[i]) for i in fixed], dtype=float)
            h.changeColsIntegrality(
                len(fixed), np.array(fixed, dtype=np.int32), np.zeros(len(fixed), dtype=np.uint8)
            )
            h.changeColsBounds(len(fixed), np.array(fixed, dtype=np.int32), values, values)
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("time_limit", h.getRunTime() + 5.0)  # the limit counts every run
        h.run()
        if h.modelStatusToString(h.getModelStatus()) != "Optimal":
            return None
        return list(h.getSolution().col_value)

    def plans(self, sol: Sequence[float]) -> list[tuple[Allocation, ...]] | None:
        """Each order's allocations in the solution; None unless integral, every line gets at
        least the units it keeps and at most its backordered units more (whole lines whole or
        nothing) and no (warehouse, SKU) gives more than it has."""
        merged: list[dict[tuple[str, str, str], int]] = [defaultdict(int) for _ in self.orders]
        per_part: dict[int, int] = defaultdict(int)  # id of a line part -> its units
        sources: dict[int, set[str]] = defaultdict(set)  # id of a line part -> warehouses
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for col, oi, ln, wid, per in self.x:
            v = sol[col]
            r = round(v)
            if not math.isclose(v, r, abs_tol=1e-6):
                return None
            if r <= 0:
                continue
            units = r * per
            merged[oi][(ln.line_id, ln.sku, wid)] += units
            per_part[id(ln)] += units
            sources[id(ln)].add(wid)
            taken[(wid, ln.sku)] += units
        out = [[Allocation(lid, sku, wid, q) for (lid, sku, wid), q in m.items()] for m in merged]
        for oi, o in enumerate(self.orders):
            for ln in self.lines[oi]:
                got = per_part[id(ln)]
                if got < ln.kept or got > ln.kept + ln.extra:
                    return None
                if ln.whole and got not in (0, ln.kept + ln.extra):
                    return None
                if ln.whole and got and len(sources[id(ln)]) != 1:
                    return None
            limit = o.policy.max_shipments
            used = {a.warehouse_id for a in out[oi]}
            if limit is not None and len(used) > max(
                limit, len({a.warehouse_id for a in o.current})
            ):
                return None
        if any(v > self.stock.get(k, 0) for k, v in taken.items()):
            return None
        return [tuple(p) for p in out]
