"""One routing problem as the search sees it: eligible warehouses indexed in cost order, what
each can contribute per SKU, and how a set of warehouses is evaluated (units placed, minimal,
which line ships from where).

Warehouse ``i`` is the ``i``-th cheapest eligible warehouse, so lower index = cheaper, and sets
of warehouses are tuples of indices (or bitmasks over them).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from oms.routing.candidates import Candidate
from oms.routing.model import RouteLine

__all__ = ["Problem"]


class Problem:
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
        cands: list[Candidate],
        split: bool,
    ) -> None:
        self.cands = cands
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
        self.has = has  # per SKU: bitmask of the warehouses with some of it
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
        self.sufmax = suf  # sufmax[i][s] = max cov[j][s] over j >= i
        self.line_order = sorted(range(len(lines)), key=lambda i: (-lines[i].quantity, i))
        self._ge: list[tuple[list[int], list[int]]] | None = None

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

    def mask_ge(self, s: int, v: int) -> int:
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

    def set_cost(self, members: Sequence[int]) -> int:
        """Sum of the members' scalar costs."""
        return sum([self.cost[i] for i in members])
