"""Greedy fallback for orders that need more shipments than the exact search covers, or that
exhaust its node budget: greedy set cover (most new units, then cheapest), then redundancy
removal (most expensive first), then a cost-improving 1-swap local search. Not proven optimal.
"""

from __future__ import annotations

from oms.routing.problem import Problem

__all__ = ["greedy"]


def greedy(problem: Problem, target: int, cap: int) -> tuple[int, ...]:
    """At most ``cap`` warehouses placing as many of ``target`` units as the greedy finds."""
    if problem.split and target >= problem.split_full:
        return _greedy_cover(problem, cap)
    return _greedy_general(problem, target, cap)


# --------------------------------------------------------------------------------------------
# Line split and a full target: per-SKU need vectors and bitmasks
# --------------------------------------------------------------------------------------------


def _greedy_cover(p: Problem, cap: int) -> tuple[int, ...]:
    """:func:`greedy` for line split and a full target, on per-SKU need vectors."""
    target = p.target
    chosen, need = _pick_cover(p, cap)
    sums = [target[s] - need[s] for s in range(p.m)]  # may exceed target: that is fine
    reached = [min(sums[s], target[s]) for s in range(p.m)]
    _drop_unneeded_cover(p, chosen, sums, reached)
    _swap_cover(p, chosen, sums, reached)
    return tuple(sorted(chosen))


def _pick_cover(p: Problem, cap: int) -> tuple[list[int], list[int]]:
    """Add the warehouse covering the most remaining need until covered or capped.

    Returns the chosen indices and the remaining need per SKU (negative when over-covered).
    """
    m, cov, has = p.m, p.cov, p.has
    need = list(p.target)
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
        best_i = _most_gain(p, useful, need)
        if best_i < 0:
            break
        chosen.append(best_i)
        taken |= 1 << best_i
        ci = cov[best_i]
        for s in range(m):
            need[s] -= ci[s]
    return chosen, need


def _most_gain(p: Problem, useful: int, need: list[int]) -> int:
    """The warehouse in ``useful`` that covers the most of ``need`` (-1 when none adds any)."""
    m, cov = p.m, p.cov
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
    return best_i


def _deficit_without(p: Problem, i: int, sums: list[int], reached: list[int]) -> list[int]:
    """Per SKU, how far below the reached level the set falls without member ``i``."""
    ci = p.cov[i]
    return [reached[s] - (sums[s] - ci[s]) for s in range(p.m)]


def _drop_unneeded_cover(
    p: Problem, chosen: list[int], sums: list[int], reached: list[int]
) -> None:
    """Drop members that are not needed, most expensive first (in place)."""
    for i in sorted(chosen, reverse=True):
        if all(d <= 0 for d in _deficit_without(p, i, sums, reached)):
            chosen.remove(i)
            ci = p.cov[i]
            for s in range(p.m):
                sums[s] -= ci[s]


def _swap_cover(p: Problem, chosen: list[int], sums: list[int], reached: list[int]) -> None:
    """1-swap: replace a member by the cheapest outsider that keeps every SKU's level."""
    improved = True
    while improved:
        improved = False
        for i in sorted(chosen, reverse=True):
            mask = (1 << i) - 1
            for s, d in enumerate(_deficit_without(p, i, sums, reached)):
                if d > 0:
                    mask &= p.mask_ge(s, d)
            for j in chosen:
                mask &= ~(1 << j)
            if mask:
                j = (mask & -mask).bit_length() - 1
                chosen[chosen.index(i)] = j
                ci, cj = p.cov[i], p.cov[j]
                for s in range(p.m):
                    sums[s] += cj[s] - ci[s]
                improved = True
                break


# --------------------------------------------------------------------------------------------
# Any target, whole lines: recompute fills
# --------------------------------------------------------------------------------------------


def _greedy_general(p: Problem, target: int, cap: int) -> tuple[int, ...]:
    """:func:`greedy` for any target and whole-line mode (recomputes fills)."""
    chosen: list[int] = []
    cur = 0
    while cur < target and len(chosen) < cap:
        best_i = -1
        best_gain = 0
        for i in range(p.n):
            if i in chosen:
                continue
            gain = p.fill([*chosen, i]) - cur
            if gain > best_gain:  # ties keep the lower index = cheaper warehouse
                best_i, best_gain = i, gain
        if best_i < 0:
            break
        chosen.append(best_i)
        cur += best_gain
    # drop members that are not needed, most expensive first
    for i in sorted(chosen, reverse=True):
        rest = [j for j in chosen if j != i]
        if rest and p.fill(rest) >= cur:
            chosen = rest
    return tuple(sorted(_swap_general(p, chosen, cur)))


def _swap_general(p: Problem, chosen: list[int], cur: int) -> list[int]:
    """1-swap local search: replace a member by a cheaper outsider keeping the fill."""
    improved = True
    while improved:
        improved = False
        for i in sorted(chosen, reverse=True):
            for j in range(i):
                if j in chosen:
                    continue
                trial = [x if x != i else j for x in chosen]
                if p.fill(trial) >= cur:
                    chosen = trial
                    improved = True
                    break
            if improved:
                break
    return chosen
