"""Why the router chose its plan: the plan's cost, the runner-up and the rule that separated
them, every candidate warehouse as the router saw it, notes, and a one-sentence summary.

Explanation only: nothing here changes the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oms.routing.candidates import Candidate, Scan
from oms.routing.model import (
    OBJECTIVE,
    AlternativePlan,
    CandidateExplanation,
    DecidingRule,
    Destination,
    ExclusionReason,
    Explanation,
    PlanCost,
    RoutingPolicy,
)
from oms.routing.problem import Problem
from oms.routing.search import Allocated, Choice

__all__ = ["explain"]

_COST_FIELDS = OBJECTIVE[:-1]


def explain(
    *,
    problem: Problem,
    scan: Scan,
    choice: Choice,
    allocated: Allocated,
    destination: Destination,
    policy: RoutingPolicy,
) -> Explanation:
    """The explanation of the plan that ``allocated`` describes."""
    eligible = problem.cands
    total_units = sum(problem.demand)
    used = [eligible[i] for i in allocated.used]
    chosen_cost = _cost_of(used, allocated.unfilled)
    runner_up = _runner_up(problem, choice.runner, chosen_cost, total_units)
    rule = _deciding_rule(used, policy, runner_up, fully_filled=allocated.unfilled == 0)
    return Explanation(
        summary=_summary(used, runner_up, rule, allocated.unfilled, total_units, policy, problem.n),
        deciding_rule=rule,
        chosen_cost=chosen_cost,
        runner_up=runner_up,
        candidates=_candidates(problem, scan.all, allocated, choice.capped),
        search=choice.kind,
        proven_optimal=choice.proven,
        objective=OBJECTIVE,
        destination=_destination(destination),
        notes=tuple([*scan.notes, *_search_notes(choice, policy)]),
    )


def _runner_up(
    problem: Problem, runner: tuple[int, ...] | None, chosen_cost: PlanCost, total_units: int
) -> AlternativePlan | None:
    if runner is None:
        return None
    r_cands = [problem.cands[i] for i in runner]
    r_cost = _cost_of(r_cands, total_units - problem.fill(runner))
    field_name, margin = _separation(chosen_cost, r_cost)
    return AlternativePlan(
        warehouses=tuple([c.wh.id for c in r_cands]),
        codes=tuple([c.wh.code for c in r_cands]),
        cost=r_cost,
        separated_by=field_name,
        margin=margin,
    )


def _deciding_rule(
    used: list[Candidate],
    policy: RoutingPolicy,
    runner_up: AlternativePlan | None,
    *,
    fully_filled: bool,
) -> DecidingRule:
    if not used:
        return DecidingRule.NO_STOCK
    if policy.pickup_warehouse_id is not None:
        return DecidingRule.PICKUP_STORE
    if runner_up is None:
        return DecidingRule.ONLY_OPTION
    if runner_up.separated_by == "tie_break":
        return DecidingRule.TIE_BREAK
    rule = _RULE_BY_FIELD[runner_up.separated_by]
    if rule is DecidingRule.FEWEST_SHIPMENTS and len(used) == 1 and fully_filled:
        return DecidingRule.SINGLE_WAREHOUSE_FILL
    return rule


def _candidates(
    problem: Problem, all_cands: list[Candidate], allocated: Allocated, capped: bool
) -> tuple[CandidateExplanation, ...]:
    """Every warehouse, in input order."""
    eligible = problem.cands
    used = allocated.used
    used_units = {id(eligible[i]): allocated.units_by_member[i] for i in used}
    helpful: set[int] = set()
    if capped:
        # unused warehouses that would have placed more units, had the cap allowed it
        base = problem.fill(used)
        helpful = {id(eligible[i]) for i in range(problem.n) if problem.fill([*used, i]) > base}
    line_info = [
        (line.line_id, s, line.quantity)
        for line, s in zip(problem.lines, problem.sku_of_line, strict=True)
    ]
    total_units = sum(problem.demand)
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
    return tuple(candidates)


def _search_notes(choice: Choice, policy: RoutingPolicy) -> list[str]:
    notes: list[str] = []
    if choice.capped:
        notes.append(f"max_shipments={policy.max_shipments} prevents filling more units")
    if choice.kind == "greedy":
        notes.append("many shipments needed: greedy set cover with local search (not proven)")
    elif not choice.proven:
        notes.append("search budget exhausted: best plan found, not proven optimal")
    return notes


def _destination(destination: Destination) -> Mapping[str, Any]:
    point = destination.point
    return {
        "country": destination.country,
        "point": None
        if point is None
        else {"latitude": point.latitude, "longitude": point.longitude},
        "point_source": destination.point_source,
    }


def _cost_of(members: Sequence[Candidate], unfilled: int) -> PlanCost:
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


def _fmt_wh(c: Candidate) -> str:
    if c.km is None:
        return f"{c.wh.code} (distance unknown)"
    return f"{c.wh.code} ({c.km:.0f} km, band {c.band})"


def _summary(
    used: list[Candidate],
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
