"""Which warehouses ship, and which units each one ships.

Strategy (:func:`choose_warehouses`): single warehouses first; then the exact branch and bound
(:mod:`oms.routing.exact`) over sets of 2 and 3 warehouses (of any size when at most eight are
eligible); orders that need more shipments, or that exhaust the node budget, fall back to the
greedy set cover
(:mod:`oms.routing.greedy`). When ``max_shipments`` prevents the best fill, the set within the
cap that places the most units is taken. A runner-up set is searched on a small budget for the
explanation only.

Then :func:`allocate`: within the chosen set every line ships whole from the cheapest
warehouse that can take it, otherwise it is split cheapest-first (only with line split).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from oms.routing.exact import Found, best_sets
from oms.routing.greedy import greedy
from oms.routing.model import Allocation, RouteLine, RoutingPolicy, Shortage
from oms.routing.problem import Problem

__all__ = ["Allocated", "Choice", "allocate", "choose_warehouses"]

# Search limits. Exact branch-and-bound for up to _EXACT_MAX_SHIPMENTS warehouses, or for any
# number when at most _EXACT_ANY_SIZE warehouses are eligible (at most 2**8 sets); node budgets
# keep the worst case bounded (p99 target: < 2 ms per order at 50 warehouses).
_EXACT_MAX_SHIPMENTS = 3
_EXACT_ANY_SIZE = 8
_SEARCH_NODE_BUDGET = 20_000
_RUNNER_UP_NODE_BUDGET = 600  # the runner-up is explanation only: keep it cheap


@dataclass(frozen=True, slots=True)
class Choice:
    """The search's answer, as indices into the problem's (cost-ordered) warehouses."""

    chosen: tuple[int, ...]
    runner: tuple[int, ...] | None  # the runner-up set, for the explanation
    kind: str  # "single", "exact", "greedy", "pickup", "none"
    proven: bool  # proven optimal
    capped: bool  # max_shipments prevents filling more units


@dataclass(frozen=True, slots=True)
class Allocated:
    """The chosen set turned into allocations and shortages."""

    allocations: tuple[Allocation, ...]
    shortages: tuple[Shortage, ...]
    used: tuple[int, ...]  # members that ship something, in cost order
    units_by_member: dict[int, int]
    unfilled: int


_NO_WAREHOUSE = Choice((), None, "none", True, False)


def choose_warehouses(problem: Problem, policy: RoutingPolicy) -> Choice:
    """The best set of warehouses within the policy's shipment cap (and the runner-up)."""
    n = problem.n
    cap = n if policy.max_shipments is None else min(policy.max_shipments, n)
    if policy.pickup_warehouse_id is not None:
        cap = min(cap, 1)
    if n == 0:
        return _NO_WAREHOUSE
    target = problem.split_full if problem.split else problem.fill(range(n))
    choice = _choose(problem, target, cap)
    if policy.pickup_warehouse_id is not None:
        choice = dataclasses.replace(choice, kind="pickup")
    return choice


def allocate(problem: Problem, chosen: tuple[int, ...], lines: Sequence[RouteLine]) -> Allocated:
    """Which units of which line ship from which member of ``chosen``, and what is short."""
    assignment = problem.assign(chosen) if chosen else []
    units_by_member: dict[int, int] = {}
    placed_by_line = [0] * len(lines)
    for li, i, q in assignment:
        units_by_member[i] = units_by_member.get(i, 0) + q
        placed_by_line[li] += q
    used = tuple(i for i in sorted(chosen) if units_by_member.get(i, 0) > 0)
    assignment.sort()
    allocations = tuple(
        [
            Allocation(lines[li].line_id, lines[li].sku, problem.cands[i].wh.id, q)
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
    unfilled = sum(problem.demand) - sum(placed_by_line)
    return Allocated(allocations, shortages, used, units_by_member, unfilled)


# --------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------


def _choose(problem: Problem, target: int, cap: int) -> Choice:
    """Exact search for the fewest shipments reaching ``target``; greedy when out of reach."""
    found, k_found, proven = _fewest_reaching(problem, target, cap)
    capped = False
    if found and not proven:
        # budget ran out: keep the greedy's plan when it is better
        better = _greedy_if_better(problem, target, cap, found[0], k_found)
        if better is not None:
            return better
    if found:
        kind = "single" if k_found == 1 else "exact"
    elif cap <= _exact_max(problem) and proven:
        # max_shipments binds: no set within the cap reaches the target. Maximise the fill.
        best = _best_fill_within_cap(problem, cap)
        if best is None:  # only when the budget ran out before the first complete set
            return _greedy_choice(problem, target, cap)
        capped = True
        kind = "exact"
        found, k_found, proven = best
    else:
        return _greedy_choice(problem, target, cap)
    chosen = found[0].members
    return Choice(chosen, _runner_up(problem, found, k_found, cap), kind, proven, capped)


def _fewest_reaching(problem: Problem, target: int, cap: int) -> tuple[list[Found], int, bool]:
    """Try k = lower bound .. min(cap, 3) shipments; the first k with a set reaching
    ``target`` gives (its best sets, k, proven); ([], 0, proven) when none is found."""
    lb = _lower_bound_shipments(problem, target)
    proven = True
    for k in range(max(1, lb), min(cap, _exact_max(problem)) + 1):
        found, exhausted = best_sets(problem, k, target, _SEARCH_NODE_BUDGET)
        if exhausted:
            proven = False
        if found:
            return found, k, proven
        if exhausted:
            break  # unknown whether a k-set exists: let the greedy decide
    return [], 0, proven


def _greedy_if_better(
    problem: Problem, target: int, cap: int, best: Found, k_found: int
) -> Choice | None:
    """The greedy's plan when it beats the exact search's (unproven) best, else None."""
    chosen = greedy(problem, target, cap)
    g_fill = problem.fill(chosen)
    g_key = (-g_fill, len(chosen), problem.set_cost(chosen))
    if g_key < (-best.fill, k_found, best.key[1]):
        return Choice(chosen, None, "greedy", False, g_fill < target)
    return None


def _greedy_choice(problem: Problem, target: int, cap: int) -> Choice:
    chosen = greedy(problem, target, cap)
    return Choice(chosen, None, "greedy", False, problem.fill(chosen) < target)


def _best_fill_within_cap(problem: Problem, cap: int) -> tuple[list[Found], int, bool] | None:
    """The sets of at most ``cap`` warehouses placing the most units, fewest shipments first:
    (best sets, shipments, proven), or None when the budget ran out before any complete set.
    """
    found, exhausted = best_sets(problem, cap, 0, _SEARCH_NODE_BUDGET)
    if not found:
        return None
    k_found = cap
    for k in range(1, cap):  # the same fill with fewer shipments?
        fewer, _ = best_sets(problem, k, found[0].fill, _SEARCH_NODE_BUDGET)
        if fewer:
            found, k_found = fewer, k
            break
    return found, k_found, not exhausted


def _runner_up(
    problem: Problem, found: list[Found], k_found: int, cap: int
) -> tuple[int, ...] | None:
    """Explanation only, small budgets: the second best of the same size, else the best
    minimal set one shipment larger (up to three), else, for single-warehouse plans, the best
    single warehouse that places fewer units."""
    if len(found) > 1:
        return found[1].members
    chosen = found[0].members
    fill = found[0].fill
    runner: tuple[int, ...] | None = None
    if k_found + 1 <= min(cap, problem.n, _exact_max(problem)):
        more, _ = best_sets(problem, k_found + 1, fill, _RUNNER_UP_NODE_BUDGET)
        if more:
            runner = more[0].members
    if runner is None and fill > 0 and k_found == 1:
        less, _ = best_sets(problem, k_found, 0, _RUNNER_UP_NODE_BUDGET, exclude=chosen)
        if less:
            runner = less[0].members
    return runner


def _exact_max(problem: Problem) -> int:
    """The most shipments the exact search tries (then the greedy takes over)."""
    return problem.n if problem.n <= _EXACT_ANY_SIZE else _EXACT_MAX_SHIPMENTS


def _lower_bound_shipments(problem: Problem, target: int) -> int:
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
