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
        lines_of_sku: list[list[int]] = [[] for _ in range(m)]
        for li in self.line_order:
            lines_of_sku[sku_of_line[li]].append(li)
        self.lines_of_sku = lines_of_sku  # per SKU: its lines, largest first
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
        """(line index, member index, quantity): members in cost order, whole lines first.

        With line split, each line ships whole from the cheapest member that can take it, else
        is split cheapest-first. Without, each line ships from one member only, and the lines
        of one SKU are packed into the members' stock to place the most units (exact up to a
        node budget, see :func:`_pack`): first-fit would under-fill an order holding a SKU on
        several lines."""
        order = sorted(members)
        if not self.split:
            return self._assign_whole(order)
        rem = {i: list(self.cov[i]) for i in order}
        out: list[tuple[int, int, int]] = []
        for li in self.line_order:
            s = self.sku_of_line[li]
            q = self.lines[li].quantity
            whole = next((i for i in order if rem[i][s] >= q), None)
            if whole is not None:
                rem[whole][s] -= q
                out.append((li, whole, q))
            else:
                for i in order:
                    take = min(q, rem[i][s])
                    if take > 0:
                        rem[i][s] -= take
                        q -= take
                        out.append((li, i, take))
                        if q == 0:
                            break
        return out

    def _assign_whole(self, order: list[int]) -> list[tuple[int, int, int]]:
        """Whole-line mode: per SKU (SKUs do not share stock), one member per line."""
        out: list[tuple[int, int, int]] = []
        lines, cov = self.lines, self.cov
        for s, lis in enumerate(self.lines_of_sku):
            if len(lis) == 1:
                # one line: whole from the cheapest member that can, else its most from one
                li = lis[0]
                q = lines[li].quantity
                whole = next((i for i in order if cov[i][s] >= q), None)
                if whole is not None:
                    out.append((li, whole, q))
                    continue
                best = max(order, key=lambda i: (cov[i][s], -i), default=None)
                if best is not None and cov[best][s] > 0:
                    out.append((li, best, cov[best][s]))
                continue
            holders = [i for i in order if cov[i][s] > 0]
            if not holders:
                continue
            qs = [lines[li].quantity for li in lis]
            placed = _pack(qs, [cov[i][s] for i in holders])
            rem = {i: cov[i][s] for i in holders}
            for li, q, at in zip(lis, qs, placed, strict=True):
                if at < 0:
                    continue
                i = holders[at]
                take = min(q, rem[i])
                if take > 0:
                    rem[i] -= take
                    out.append((li, i, take))
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


_PACK_NODE_BUDGET = 4_000


def _pack(qs: Sequence[int], caps: Sequence[int]) -> list[int]:
    """The lines of one SKU (quantities ``qs``, largest first) packed into members' stock
    (``caps``, cheapest first), each line into one member or none: per line the member's
    position, or -1. Maximises ``sum over members of min(cap, quantity packed into it)`` (a line
    may be part-filled from its member). First fit first; when it leaves units short, an exact
    depth-first search (cheapest members first, members with equal spare stock tried once)
    within a node budget. The best packing found is returned."""
    target = min(sum(qs), sum(caps))
    spare = list(caps)
    first: list[int] = []
    got = 0
    for q in qs:  # first fit: whole where possible, else the most from one member
        at = next((i for i, v in enumerate(spare) if v >= q), -1)
        if at < 0:
            at = max(range(len(spare)), key=lambda i: (spare[i], -i))
            if spare[at] <= 0:
                first.append(-1)
                continue
        got += min(q, spare[at])
        spare[at] -= q
        first.append(at)
    if got >= target:
        return first
    packer = _Packer(qs, caps, target, first, got)
    packer.visit(0, 0)
    return packer.best


class _Packer:
    """Depth-first search of :func:`_pack` (state kept on the instance)."""

    __slots__ = ("best", "best_fill", "current", "nodes", "qs", "spare", "suffix", "target")

    def __init__(
        self, qs: Sequence[int], caps: Sequence[int], target: int, best: list[int], fill: int
    ) -> None:
        self.qs = qs
        self.spare = list(caps)
        self.target = target
        self.best = best
        self.best_fill = fill
        self.current = [-1] * len(qs)
        self.suffix = [0] * (len(qs) + 1)
        for j in range(len(qs) - 1, -1, -1):
            self.suffix[j] = self.suffix[j + 1] + qs[j]
        self.nodes = 0

    def visit(self, j: int, fill: int) -> bool:
        """Place lines ``j..``; True when the search should stop (target or budget reached)."""
        self.nodes += 1
        spare = self.spare
        free = sum([v for v in spare if v > 0])
        if fill + min(self.suffix[j], free) <= self.best_fill:
            return self.nodes > _PACK_NODE_BUDGET
        if j == len(self.qs):
            self.best, self.best_fill = list(self.current), fill
            return fill >= self.target or self.nodes > _PACK_NODE_BUDGET
        if self.nodes > _PACK_NODE_BUDGET:
            return True
        q = self.qs[j]
        seen: set[int] = set()
        for i, v in enumerate(spare):
            if v <= 0 or v in seen:
                continue
            seen.add(v)
            spare[i] -= q
            self.current[j] = i
            stop = self.visit(j + 1, fill + min(q, v))
            spare[i] += q
            self.current[j] = -1
            if stop:
                return True
        return self.visit(j + 1, fill)
