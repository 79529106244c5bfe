"""Exact branch and bound: the best two minimal sets of exactly ``k`` warehouses.

Sets are visited as increasing index tuples, i.e. cheapest warehouses first, and pruned by cost
(a set cannot cost less than its members' cheapest possible completion) and by coverage (what
the remaining warehouses could still add). Two searches:

* :class:`_CoverSearch`, line split with the best possible fill as the target: every SKU must
  reach its target, so only sets that cover are visited; the last member is found with
  per-SKU bitmasks.
* :class:`_GeneralSearch`, any fill target and whole-line mode: maximise the fill, then
  minimise the cost.

Each level of the depth-first search is its own method: the last member (``r == 1``) is
evaluated inline in its loop, and a deeper level recurses. A node budget bounds the work; when
it runs out the result is the best found so far and ``exhausted`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass

from oms.routing.problem import Problem

__all__ = ["Found", "best_sets"]


@dataclass(slots=True)
class Found:
    """A set found by the search, keyed for ranking (lower key is better)."""

    key: tuple[int, int, tuple[int, ...]]  # (-fill, scalar cost, member indices)

    @property
    def members(self) -> tuple[int, ...]:
        return self.key[2]

    @property
    def fill(self) -> int:
        return -self.key[0]


def best_sets(
    problem: Problem, k: int, min_fill: int, budget: int, exclude: tuple[int, ...] | None = None
) -> tuple[list[Found], bool]:
    """The best two minimal sets of exactly ``k`` warehouses placing >= ``min_fill`` units,
    ranked by (-fill, scalar cost, indices), and whether the node budget ran out.
    """
    if k < 1 or k > problem.n:
        return [], False
    if problem.split and min_fill >= problem.split_full:
        cover = _CoverSearch(problem, budget, exclude)
        return cover.run(k), cover.exhausted
    general = _GeneralSearch(problem, min_fill, budget, exclude)
    return general.run(k), general.exhausted


def _offer(top: list[Found], key: tuple[int, int, tuple[int, ...]]) -> None:
    """Keep the best two keys in ``top`` (in place, best first)."""
    top.append(Found(key))
    if len(top) == 2 and top[1].key < top[0].key:
        top.reverse()
    elif len(top) == 3:
        top.sort(key=lambda f: f.key)
        del top[2:]


class _CoverSearch:
    """Cheapest sets of ``k`` warehouses reaching every SKU's target (line split)."""

    __slots__ = ("budget", "exclude", "exhausted", "full", "nodes", "p", "top")

    def __init__(self, problem: Problem, budget: int, exclude: tuple[int, ...] | None) -> None:
        self.p = problem
        self.budget = budget
        self.exclude = exclude
        self.full = problem.split_full
        self.top: list[Found] = []
        self.nodes = 0
        self.exhausted = False

    def run(self, k: int) -> list[Found]:
        if k == 1:
            self._singles()
        else:
            self._branch((), list(self.p.target), 0, 0, k)
        return self.top

    def _accept(self, members: tuple[int, ...], c: int) -> bool:
        """Offer a covering set; False once later (costlier) sets cannot enter the top two."""
        top = self.top
        key = (-self.full, c, members)
        if len(top) == 2 and key >= top[1].key:
            return False  # later candidates only cost more
        if members != self.exclude and self.p.minimal(members, self.full):
            _offer(top, key)
        return True

    def _singles(self) -> None:
        p = self.p
        cov, cost, target, m = p.cov, p.cost, p.target, p.m
        for i in range(p.n):
            ci = cov[i]
            if all(ci[s] >= target[s] for s in range(m)):
                self.nodes += 1
                if not self._accept((i,), cost[i]):
                    break

    def _last(self, members: tuple[int, ...], need: list[int], c: int, start: int) -> None:
        """The last member: any warehouse from ``start`` on that covers every remaining need."""
        p = self.p
        m = p.m
        mask = ((1 << p.n) - 1) >> start << start
        for s in range(m):
            if need[s] > 0:
                mask &= p.mask_ge(s, need[s])
                if not mask:
                    return
        cost = p.cost
        while mask:
            low = mask & -mask
            i = low.bit_length() - 1
            self.nodes += 1
            if not self._accept((*members, i), c + cost[i]):
                return
            mask ^= low

    def _branch(
        self, members: tuple[int, ...], need: list[int], c: int, start: int, r: int
    ) -> None:
        """``r`` >= 2 members still to pick, from index ``start`` on."""
        p = self.p
        n, m = p.n, p.m
        cov, cost, pc, suf, has = p.cov, p.cost, p.prefix_cost, p.sufmax, p.has
        top, budget = self.top, self.budget
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
                    break  # the other r1 members cannot make up this SKU
                new.append(v)
            else:
                if r1 == 1:
                    self._last((*members, i), new, c + cost[i], i + 1)
                else:
                    self._branch((*members, i), new, c + cost[i], i + 1, r1)
                if self.exhausted:
                    return


class _GeneralSearch:
    """General branch and bound: maximise fill, then minimise cost (any fill target)."""

    __slots__ = (
        "any_stock",
        "budget",
        "exclude",
        "exhausted",
        "full",
        "min_fill",
        "nodes",
        "p",
        "top",
    )

    def __init__(
        self, problem: Problem, min_fill: int, budget: int, exclude: tuple[int, ...] | None
    ) -> None:
        self.p = problem
        self.min_fill = min_fill
        self.budget = budget
        self.exclude = exclude
        self.full = sum(problem.demand)
        any_stock = 0
        for mask in problem.has:
            any_stock |= mask
        self.any_stock = any_stock
        self.top: list[Found] = []
        self.nodes = 0
        self.exhausted = False

    def run(self, k: int) -> list[Found]:
        sums = [0] * self.p.m
        if k == 1:
            self._last((), sums, 0, 0)
        else:
            self._branch((), sums, 0, 0, k)
        return self.top

    def _useful(self, sums: list[int], start: int) -> int:
        """Bitmask of warehouses from ``start`` on that could add units."""
        p = self.p
        if p.split:
            d, has = p.demand, p.has
            useful = 0
            for s in range(p.m):
                if sums[s] < d[s]:
                    useful |= has[s]
        else:
            useful = self.any_stock
        return useful >> start << start

    def _last(self, members: tuple[int, ...], sums: list[int], c: int, start: int) -> None:
        """The last member, from index ``start`` on: evaluate each complete set."""
        p = self.p
        n, m, d = p.n, p.m, p.demand
        cov, cost, pc = p.cov, p.cost, p.prefix_cost
        top, budget, min_fill, full = self.top, self.budget, self.min_fill, self.full
        split = p.split
        useful = self._useful(sums, start)
        last = n - 1
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
            lb = c + pc[i + 1] - pc[i]
            if len(top) == 2:
                k2 = top[1].key
                if (-full, lb) >= (k2[0], k2[1]):
                    return  # not even a complete fill could beat the second best
            ci = cov[i]
            new = [sums[s] + ci[s] for s in range(m)]
            mem = (*members, i)
            f = sum([new[s] if new[s] < d[s] else d[s] for s in range(m)])
            if not split and f >= min_fill:
                f = p.fill(mem)
            if f < min_fill:
                continue
            key = (-f, c + cost[i], mem)
            if len(top) == 2 and key >= top[1].key:
                continue
            if mem != self.exclude and p.minimal(mem, f):
                _offer(top, key)

    def _branch(
        self, members: tuple[int, ...], sums: list[int], c: int, start: int, r: int
    ) -> None:
        """``r`` >= 2 members still to pick, from index ``start`` on."""
        p = self.p
        n, m, d = p.n, p.m, p.demand
        cov, cost, pc, suf = p.cov, p.cost, p.prefix_cost, p.sufmax
        top, budget, min_fill, full = self.top, self.budget, self.min_fill, self.full
        useful = self._useful(sums, start)
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
            if len(top) == 2:
                k2 = top[1].key
                if (-full, lb) >= (k2[0], k2[1]):
                    return  # not even a complete fill could beat the second best
            ci = cov[i]
            new = [sums[s] + ci[s] for s in range(m)]
            sm = suf[i + 1]
            ub = 0  # the most units any completion could place
            for s in range(m):
                v = new[s] + r1 * sm[s]
                ub += v if v < d[s] else d[s]
            if ub < min_fill:
                continue
            if len(top) == 2:
                k2 = top[1].key
                if (-ub, lb) >= (k2[0], k2[1]):
                    continue
            if r1 == 1:
                self._last((*members, i), new, c + cost[i], i + 1)
            else:
                self._branch((*members, i), new, c + cost[i], i + 1, r1)
            if self.exhausted:
                return
