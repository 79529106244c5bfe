"""Routing quality and latency benchmark for ``oms.routing.domain.plan_route``.

Usage::

    .venv/bin/python bench/routing_quality.py [--seeds 1 2 3] [--orders 120] [--warehouses 10]
        [--mip-time-limit 40] [--timing-orders 3000] [--json bench/results/routing_quality.json]

What it does (everything seeded, nothing fetched):

* **Generator.** Warehouses at real European city coordinates (a few are domestic-only, i.e.
  ``ships_to`` = their own country); destinations drawn by city population with ~30 km jitter;
  SKU demand Zipf(1.0); orders have ``1 + floor(Exp(rate 1.2))`` distinct SKUs, quantity 1-3.
  Stock tightness rho: each SKU's realised batch demand / rho units (rounded up) are spread
  over a random half of the warehouses (weighted by warehouse size).
* **Cost.** Per parcel ``6.0 + 1.5 * band`` (band = floor(km / 400)), plus 50 per unfilled unit.
* **Optimum.** The whole batch solved offline (clairvoyant, all orders known) as a MIP with
  HiGHS: x[o,l,w] units, y[o,w] parcel opened, u[o,l] unfilled; demand, linking
  ``x <= min(q, stock) * y`` and stock constraints. The gap is reported when not proven.
* **Baselines.** ``oms`` = ``plan_route`` with the default policy, orders processed in sequence,
  each one consuming stock. ``greedy`` = Saleor-style: each line filled greedily across
  warehouses in fixed priority order (country filter only).
* **Diagnostics.** The cost split into parcels, band surcharges and unfilled penalties (OPT,
  oms, greedy), and the units OPT *withholds*: units it leaves an order short of although the
  stock was still there at the order's turn (a fill-first router never does that). ``hst``:
  plans that obey the default policy's criteria down to the distance band and domestic-first,
  with the remaining ties broken in hindsight (LP of all the orders still to come): roughly the
  best any tie-break rule below the band could do (``--no-hindsight-ties`` skips it).
* **Latency.** ``plan_route`` wall time per order at 50 warehouses on a larger batch (the
  caller's work of building candidates is not timed).

Writes the figures as JSON (default ``bench/results/routing_quality.json``).
Needs ``highspy`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oms.routing.domain import (
    Destination,
    GeoPoint,
    RouteLine,
    RoutingPolicy,
    WarehouseCandidate,
    haversine_km,
    plan_route,
)
from oms.routing.wave import DEFAULT_TIME_LIMIT_S

PARCEL_BASE = 6.0
PARCEL_PER_BAND = 1.5
UNFILLED_PENALTY = 50.0
BAND_KM = 400.0

# (name, ISO country, latitude, longitude, metro population in millions)
CITIES: list[tuple[str, str, float, float, float]] = [
    ("London", "GB", 51.507, -0.128, 9.0),
    ("Paris", "FR", 48.857, 2.352, 11.0),
    ("Berlin", "DE", 52.520, 13.405, 3.6),
    ("Madrid", "ES", 40.417, -3.704, 6.6),
    ("Rome", "IT", 41.903, 12.496, 4.3),
    ("Milan", "IT", 45.464, 9.190, 3.1),
    ("Barcelona", "ES", 41.385, 2.173, 5.5),
    ("Hamburg", "DE", 53.551, 9.994, 1.9),
    ("Munich", "DE", 48.137, 11.576, 1.5),
    ("Vienna", "AT", 48.208, 16.373, 1.9),
    ("Warsaw", "PL", 52.230, 21.012, 1.8),
    ("Budapest", "HU", 47.498, 19.040, 1.7),
    ("Prague", "CZ", 50.075, 14.438, 1.3),
    ("Amsterdam", "NL", 52.370, 4.895, 1.1),
    ("Rotterdam", "NL", 51.924, 4.478, 1.0),
    ("Brussels", "BE", 50.850, 4.352, 1.2),
    ("Lyon", "FR", 45.764, 4.836, 2.3),
    ("Marseille", "FR", 43.296, 5.370, 1.8),
    ("Lisbon", "PT", 38.722, -9.139, 2.9),
    ("Porto", "PT", 41.158, -8.629, 1.7),
    ("Dublin", "IE", 53.350, -6.260, 1.4),
    ("Manchester", "GB", 53.480, -2.242, 2.8),
    ("Birmingham", "GB", 52.486, -1.890, 2.9),
    ("Stockholm", "SE", 59.329, 18.069, 1.6),
    ("Copenhagen", "DK", 55.676, 12.568, 1.4),
    ("Oslo", "NO", 59.914, 10.752, 1.0),
    ("Helsinki", "FI", 60.170, 24.938, 1.3),
    ("Cologne", "DE", 50.938, 6.960, 1.1),
    ("Frankfurt", "DE", 50.110, 8.682, 2.3),
    ("Stuttgart", "DE", 48.776, 9.183, 1.8),
    ("Zurich", "CH", 47.377, 8.541, 1.4),
    ("Naples", "IT", 40.852, 14.268, 3.1),
    ("Turin", "IT", 45.070, 7.687, 1.7),
    ("Valencia", "ES", 39.470, -0.376, 1.6),
    ("Seville", "ES", 37.389, -5.984, 1.5),
    ("Athens", "GR", 37.984, 23.728, 3.2),
    ("Bucharest", "RO", 44.426, 26.103, 2.1),
    ("Sofia", "BG", 42.698, 23.322, 1.3),
    ("Krakow", "PL", 50.065, 19.945, 0.8),
    ("Lille", "FR", 50.629, 3.057, 1.2),
    ("Toulouse", "FR", 43.605, 1.444, 1.0),
    ("Bordeaux", "FR", 44.838, -0.579, 0.9),
    ("Leipzig", "DE", 51.340, 12.375, 0.6),
    ("Dortmund", "DE", 51.514, 7.466, 2.5),
    ("Gothenburg", "SE", 57.709, 11.975, 0.6),
    ("Bratislava", "SK", 48.149, 17.107, 0.5),
    ("Zagreb", "HR", 45.815, 15.982, 0.8),
    ("Ljubljana", "SI", 46.056, 14.506, 0.3),
]
NON_EU = {"GB", "CH", "NO"}  # warehouses there ship domestically only

# North America (name, ISO country, latitude, longitude, metro population in millions); warehouses
# in Canada and Mexico ship domestically only (customs), US warehouses ship to all three
NA_CITIES: list[tuple[str, str, float, float, float]] = [
    ("New York", "US", 40.713, -74.006, 19.8),
    ("Los Angeles", "US", 34.052, -118.244, 13.2),
    ("Chicago", "US", 41.878, -87.630, 9.5),
    ("Dallas", "US", 32.777, -96.797, 7.6),
    ("Houston", "US", 29.760, -95.370, 7.1),
    ("Washington", "US", 38.907, -77.037, 6.3),
    ("Philadelphia", "US", 39.953, -75.165, 6.2),
    ("Miami", "US", 25.762, -80.192, 6.1),
    ("Atlanta", "US", 33.749, -84.388, 6.1),
    ("Boston", "US", 42.360, -71.059, 4.9),
    ("Phoenix", "US", 33.448, -112.074, 4.9),
    ("San Francisco", "US", 37.775, -122.419, 4.7),
    ("Detroit", "US", 42.331, -83.046, 4.3),
    ("Seattle", "US", 47.606, -122.332, 4.0),
    ("Minneapolis", "US", 44.978, -93.265, 3.7),
    ("San Diego", "US", 32.716, -117.161, 3.3),
    ("Tampa", "US", 27.951, -82.457, 3.2),
    ("Denver", "US", 39.739, -104.990, 3.0),
    ("St. Louis", "US", 38.627, -90.199, 2.8),
    ("Charlotte", "US", 35.227, -80.843, 2.7),
    ("San Antonio", "US", 29.424, -98.494, 2.6),
    ("Portland", "US", 45.515, -122.679, 2.5),
    ("Pittsburgh", "US", 40.441, -79.996, 2.4),
    ("Las Vegas", "US", 36.170, -115.140, 2.3),
    ("Kansas City", "US", 39.100, -94.578, 2.2),
    ("Columbus", "US", 39.961, -82.999, 2.1),
    ("Nashville", "US", 36.163, -86.781, 2.0),
    ("Salt Lake City", "US", 40.761, -111.891, 1.3),
    ("Toronto", "CA", 43.653, -79.383, 6.4),
    ("Montreal", "CA", 45.502, -73.567, 4.3),
    ("Vancouver", "CA", 49.283, -123.121, 2.6),
    ("Calgary", "CA", 51.045, -114.057, 1.5),
    ("Winnipeg", "CA", 49.895, -97.138, 0.8),
    ("Mexico City", "MX", 19.433, -99.133, 21.8),
    ("Guadalajara", "MX", 20.659, -103.350, 5.3),
    ("Monterrey", "MX", 25.687, -100.316, 5.3),
]
NA_DOMESTIC = {"CA", "MX"}

GEOGRAPHIES: dict[str, tuple[list[tuple[str, str, float, float, float]], set[str], int]] = {
    "eu10": (CITIES, NON_EU, 10),  # the original benchmark: 10 European warehouses
    "na25": (NA_CITIES, NA_DOMESTIC, 25),  # 25 North American warehouses
    "eu50": (CITIES, NON_EU, 50),  # 50 warehouses spread over Europe
}


@dataclass
class Warehouse:
    id: str
    code: str
    country: str
    lat: float
    lon: float
    priority: int
    size: float
    ships_to: frozenset[str] | None


@dataclass
class Order:
    id: str
    country: str
    lat: float
    lon: float
    lines: list[tuple[str, int]]  # (sku, qty), distinct skus


@dataclass
class Scenario:
    warehouses: list[Warehouse]
    stock: dict[tuple[str, str], int]  # (warehouse id, sku) -> units
    orders: list[Order]
    skus: list[str]
    band: dict[tuple[str, str], int] = field(default_factory=dict)  # (order, warehouse) -> band


def _jitter(rng: random.Random, lat: float, lon: float, km: float) -> tuple[float, float]:
    r = km * math.sqrt(rng.random())
    t = rng.uniform(0, 2 * math.pi)
    dlat = (r * math.cos(t)) / 111.2
    dlon = (r * math.sin(t)) / (111.2 * max(0.2, math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def generate(
    seed: int,
    n_warehouses: int,
    n_skus: int,
    n_orders: int,
    rho: float,
    lines_rate: float = 1.2,
    max_lines: int = 12,
    holder_share: float = 0.5,
    cities: list[tuple[str, str, float, float, float]] | None = None,
    domestic_only: set[str] | None = None,
) -> Scenario:
    rng = random.Random(seed)
    cities = CITIES if cities is None else cities
    domestic_only = NON_EU if domestic_only is None else domestic_only
    # warehouses: distinct cities while possible, then jittered repeats
    sites = list(cities)
    rng.shuffle(sites)
    warehouses: list[Warehouse] = []
    for i in range(n_warehouses):
        name, cc, lat, lon, _ = sites[i % len(sites)]
        if i >= len(sites):
            lat, lon = _jitter(rng, lat, lon, 60.0)
        domestic = cc in domestic_only
        warehouses.append(
            Warehouse(
                id=f"wh-{i:03d}",
                code=f"{name[:3].upper()}{i:02d}",
                country=cc,
                lat=lat,
                lon=lon,
                priority=0,
                size=rng.uniform(0.5, 2.0),
                ships_to=frozenset({cc}) if domestic else None,
            )
        )
    # merchant's fixed priority: biggest warehouses first (what a greedy router follows)
    for rank, w in enumerate(sorted(warehouses, key=lambda w: -w.size)):
        w.priority = rank
    skus = [f"SKU{j:04d}" for j in range(n_skus)]
    zipf = [1.0 / (j + 1) for j in range(n_skus)]
    pop = [c[4] for c in cities]
    orders: list[Order] = []
    for k in range(n_orders):
        name, cc, lat, lon, _ = rng.choices(cities, weights=pop)[0]
        lat, lon = _jitter(rng, lat, lon, 30.0)
        n_lines = min(max_lines, n_skus, 1 + int(rng.expovariate(lines_rate)))
        chosen: list[str] = []
        while len(chosen) < n_lines:
            s = rng.choices(skus, weights=zipf)[0]
            if s not in chosen:
                chosen.append(s)
        orders.append(Order(f"o{k:05d}", cc, lat, lon, [(s, rng.randint(1, 3)) for s in chosen]))
    # stock: the batch's realised demand / rho per SKU, over a random half of the warehouses,
    # weighted by warehouse size
    realised = dict.fromkeys(skus, 0)
    for o in orders:
        for s, q in o.lines:
            realised[s] += q
    stock: dict[tuple[str, str], int] = {}
    for s in skus:
        if realised[s] == 0:
            continue
        supply = max(1, math.ceil(realised[s] / rho))
        holders = rng.sample(warehouses, max(1, round(len(warehouses) * holder_share)))
        weights = [w.size * rng.uniform(0.5, 1.5) for w in holders]
        wsum = sum(weights)
        shares = [supply * x / wsum for x in weights]
        units = [int(x) for x in shares]
        rest = supply - sum(units)
        for idx in sorted(range(len(holders)), key=lambda i: units[i] - shares[i])[:rest]:
            units[idx] += 1
        for w, u in zip(holders, units, strict=True):
            if u > 0:
                stock[(w.id, s)] = u
    scen = Scenario(warehouses, stock, orders, skus)
    for o in orders:
        p = GeoPoint(o.lat, o.lon)
        for w in warehouses:
            scen.band[(o.id, w.id)] = int(haversine_km(p, GeoPoint(w.lat, w.lon)) // BAND_KM)
    return scen


def _serves(w: Warehouse, country: str) -> bool:
    return w.ships_to is None or country in w.ships_to


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


@dataclass
class Outcome:
    cost: float = 0.0
    cost_parcels: float = 0.0  # PARCEL_BASE per parcel
    cost_bands: float = 0.0  # PARCEL_PER_BAND * band per parcel
    cost_unfilled: float = 0.0  # UNFILLED_PENALTY per unfilled unit
    parcels: int = 0
    split_orders: int = 0
    units: int = 0
    filled: int = 0
    orders: int = 0
    times_us: list[float] = field(default_factory=list)
    with_dict_us: list[float] = field(default_factory=list)  # plan_route + explanation.to_dict()
    single_shot_us: list[float] = field(default_factory=list)  # first call only
    cpu_us: list[float] = field(default_factory=list)  # thread CPU time (immune to preemption)

    def add(self, scen: Scenario, order: Order, used: set[str], filled: int) -> None:
        units = sum(q for _, q in order.lines)
        parcels = PARCEL_BASE * len(used)
        bands = PARCEL_PER_BAND * sum(scen.band[(order.id, w)] for w in used)
        unfilled = UNFILLED_PENALTY * (units - filled)
        self.cost += parcels + bands + unfilled
        self.cost_parcels += parcels
        self.cost_bands += bands
        self.cost_unfilled += unfilled
        self.parcels += len(used)
        self.split_orders += len(used) > 1
        self.units += units
        self.filled += filled
        self.orders += 1

    def summary(self, optimum: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cost": round(self.cost, 2),
            "cost_parcels": round(self.cost_parcels, 2),
            "cost_bands": round(self.cost_bands, 2),
            "cost_unfilled": round(self.cost_unfilled, 2),
            "parcels_per_order": round(self.parcels / self.orders, 4),
            "split_share": round(self.split_orders / self.orders, 4),
            "fill_rate": round(self.filled / self.units, 4),
        }
        if optimum:
            out["ratio_to_optimum"] = round(self.cost / optimum, 4)
        if self.times_us:
            ts = sorted(self.times_us)
            out["p50_us"] = round(_pct(ts, 0.50), 1)
            out["p99_us"] = round(_pct(ts, 0.99), 1)
            out["max_us"] = round(ts[-1], 1)
            out["mean_us"] = round(statistics.fmean(ts), 1)
        if self.cpu_us:
            ts = sorted(self.cpu_us)
            out["cpu_p50_us"] = round(_pct(ts, 0.50), 1)
            out["cpu_p99_us"] = round(_pct(ts, 0.99), 1)
        if self.single_shot_us:
            ts = sorted(self.single_shot_us)
            out["single_shot_p50_us"] = round(_pct(ts, 0.50), 1)
            out["single_shot_p99_us"] = round(_pct(ts, 0.99), 1)
        if self.with_dict_us:
            ts = sorted(self.with_dict_us)
            out["with_to_dict_p50_us"] = round(_pct(ts, 0.50), 1)
            out["with_to_dict_p99_us"] = round(_pct(ts, 0.99), 1)
        return out


def run_oms(
    scen: Scenario, policy: RoutingPolicy | None = None, timed: bool = False, repeats: int = 1
) -> Outcome:
    policy = policy or RoutingPolicy(allow_backorder=True, distance_band_km=BAND_KM)
    stock = dict(scen.stock)
    by_wh: dict[str, dict[str, int]] = {w.id: {} for w in scen.warehouses}
    for (wid, s), u in stock.items():
        by_wh[wid][s] = u
    out = Outcome()
    points = {w.id: GeoPoint(w.lat, w.lon) for w in scen.warehouses}
    for order in scen.orders:
        cands = [
            WarehouseCandidate(
                id=w.id,
                code=w.code,
                point=points[w.id],
                priority=w.priority,
                ships_to=w.ships_to,
                available=by_wh[w.id],
                country=w.country,
            )
            for w in scen.warehouses
        ]
        lines = [RouteLine(f"{order.id}-{i}", s, q) for i, (s, q) in enumerate(order.lines)]
        dest = Destination(order.country, GeoPoint(order.lat, order.lon))
        t0 = time.perf_counter_ns()
        plan = plan_route(lines, dest, cands, policy)
        t1 = time.perf_counter_ns()
        if timed:
            plan.explanation.to_dict()
            t2 = time.perf_counter_ns()
            out.single_shot_us.append((t1 - t0) / 1000.0)
            best, best_dict = t1 - t0, t2 - t0
            best_cpu = None
            for _ in range(repeats - 1):  # pure function: same input, same plan
                t0 = time.perf_counter_ns()
                plan_route(lines, dest, cands, policy).explanation.to_dict()
                t2 = time.perf_counter_ns()
                best_dict = min(best_dict, t2 - t0)
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                plan_route(lines, dest, cands, policy)
                best = min(best, time.perf_counter_ns() - t0)
                cpu = time.thread_time_ns() - c0
                best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
            out.times_us.append(best / 1000.0)
            out.with_dict_us.append(best_dict / 1000.0)
            if best_cpu is not None:
                out.cpu_us.append(best_cpu / 1000.0)
        filled = 0
        for a in plan.allocations:
            have = by_wh[a.warehouse_id].get(a.sku, 0)
            assert have >= a.quantity, "router allocated more than available"
            by_wh[a.warehouse_id][a.sku] = have - a.quantity
            filled += a.quantity
        out.add(scen, order, set(plan.warehouses), filled)
    return out


def run_greedy(scen: Scenario) -> Outcome:
    """Saleor-style: each line greedily from warehouses in fixed priority order."""
    stock = dict(scen.stock)
    order_wh = sorted(scen.warehouses, key=lambda w: w.priority)
    out = Outcome()
    for order in scen.orders:
        used: set[str] = set()
        filled = 0
        for s, q in order.lines:
            need = q
            for w in order_wh:
                if need == 0:
                    break
                if not _serves(w, order.country):
                    continue
                have = stock.get((w.id, s), 0)
                take = min(have, need)
                if take > 0:
                    stock[(w.id, s)] = have - take
                    need -= take
                    used.add(w.id)
            filled += q - need
        out.add(scen, order, used, filled)
    return out


def solve_mip(
    scen: Scenario,
    time_limit: float,
    orders: list[Order] | None = None,
    stock: dict[tuple[str, str], int] | None = None,
    relax: bool = False,
    min_fill: dict[tuple[str, int], int] | None = None,
    start: dict[tuple[str, int, str], int] | None = None,
) -> dict[str, Any]:
    """Optimum of ``orders`` (default: the whole batch, clairvoyant) against ``stock``, HiGHS.

    Returns the figures plus ``"x"``: {(order id, line index, warehouse id): units}. With
    ``relax``, the LP relaxation (parcels may be fractional) and only ``{"objective": ...}``.
    ``min_fill``: per (order id, line index), units the line must get at least (the fill-first
    optimum: every order filled as far as the sequential fill-first router filled it).
    ``start``: a feasible solution {(order id, line index, warehouse id): units} the solver
    starts from (its incumbent is never worse).
    """
    import highspy
    import numpy as np

    orders = scen.orders if orders is None else orders
    stock = scen.stock if stock is None else stock
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-6)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("threads", 1)
    costs: list[float] = []
    ub: list[float] = []
    integ: list[int] = []
    y_index: dict[tuple[str, str], int] = {}
    x_vars: list[tuple[int, int, str, str, int]] = []  # (col, line, order id, wh id, cap)
    lines_meta: list[tuple[str, str, int, int]] = []  # (order id, sku, qty, line index)
    for o in orders:
        for li, (s, q) in enumerate(o.lines):
            g = len(lines_meta)
            lines_meta.append((o.id, s, q, li))
            for w in scen.warehouses:
                have = stock.get((w.id, s), 0)
                if have <= 0 or not _serves(w, o.country):
                    continue
                if (o.id, w.id) not in y_index:
                    y_index[(o.id, w.id)] = len(costs)
                    costs.append(PARCEL_BASE + PARCEL_PER_BAND * scen.band[(o.id, w.id)])
                    ub.append(1.0)
                    integ.append(0 if relax else 1)
                cap = min(q, have)
                x_vars.append((len(costs), g, o.id, w.id, cap))
                costs.append(0.0)
                ub.append(float(cap))
                integ.append(0)  # a flow given y: an integral optimum exists
    u_col = len(costs)
    for oid, _, q, li in lines_meta:
        costs.append(UNFILLED_PENALTY)
        ub.append(float(q - (min_fill or {}).get((oid, li), 0)))
        integ.append(0)
    ncol = len(costs)
    h.addCols(ncol, np.array(costs), np.zeros(ncol), np.array(ub), 0, [], [], [])
    h.changeColsIntegrality(ncol, np.arange(ncol, dtype=np.int32), np.array(integ, dtype=np.uint8))
    rows_lo: list[float] = []
    rows_hi: list[float] = []
    starts: list[int] = []
    idx: list[int] = []
    val: list[float] = []
    inf = highspy.kHighsInf

    def row(lo: float, hi: float, entries: list[tuple[int, float]]) -> None:
        rows_lo.append(lo)
        rows_hi.append(hi)
        starts.append(len(idx))
        for c, v in entries:
            idx.append(c)
            val.append(v)

    by_line: dict[int, list[int]] = {}
    by_ws: dict[tuple[str, str], list[int]] = {}
    for col, g, oid, wid, cap in x_vars:
        by_line.setdefault(g, []).append(col)
        by_ws.setdefault((wid, lines_meta[g][1]), []).append(col)
        row(-inf, 0.0, [(col, 1.0), (y_index[(oid, wid)], -float(cap))])
    for g, (_, _, q, _) in enumerate(lines_meta):
        row(float(q), float(q), [(c, 1.0) for c in by_line.get(g, [])] + [(u_col + g, 1.0)])
    for (wid, s), cols in by_ws.items():
        row(-inf, float(stock[(wid, s)]), [(c, 1.0) for c in cols])
    h.addRows(
        len(rows_lo),
        np.array(rows_lo),
        np.array(rows_hi),
        len(idx),
        np.array(starts, dtype=np.int32),
        np.array(idx, dtype=np.int32),
        np.array(val),
    )
    if start is not None and not relax:
        values = [0.0] * ncol
        for col, g, oid, wid, _ in x_vars:
            v = start.get((oid, lines_meta[g][3], wid), 0)
            if v:
                values[col] = float(v)
                values[y_index[(oid, wid)]] = 1.0
        for g, (oid, _, q, li) in enumerate(lines_meta):
            got = sum(v for (o2, l2, _), v in start.items() if o2 == oid and l2 == li)
            values[u_col + g] = float(q - got)
        sol = highspy.HighsSolution()
        sol.col_value = values
        sol.value_valid = True
        h.setSolution(sol)
    t0 = time.perf_counter()
    h.run()
    elapsed = time.perf_counter() - t0
    info = h.getInfo()
    if relax:
        return {"objective": float(info.objective_function_value)}
    status = h.modelStatusToString(h.getModelStatus())
    obj = float(info.objective_function_value)
    bound = float(info.mip_dual_bound)
    gap = (obj - bound) / obj if obj > 0 else 0.0
    sol = list(h.getSolution().col_value)
    x: dict[tuple[str, int, str], int] = {}
    for col, g, oid, wid, _ in x_vars:
        v = round(sol[col])
        if v > 0:
            x[(oid, lines_meta[g][3], wid)] = v
    parcels = len({(oid, wid) for (oid, _, wid) in x})
    units = sum(q for _, _, q, _ in lines_meta)
    return {
        "objective": round(obj, 3),
        "dual_bound": round(bound, 3),
        "gap": round(max(gap, 0.0), 6),
        "proven": status == "Optimal",
        "status": status,
        "seconds": round(elapsed, 2),
        "columns": ncol,
        "rows": len(rows_lo),
        "parcels_per_order": round(parcels / len(orders), 4),
        "split_share": round(
            sum(len({w for (o2, _, w) in x if o2 == o.id}) > 1 for o in orders) / len(orders), 4
        ),
        "fill_rate": round(sum(x.values()) / units, 4) if units else 1.0,
        "x": x,
    }


def solution_outcome(scen: Scenario, x: dict[tuple[str, int, str], int]) -> tuple[Outcome, int]:
    """The cost breakdown of a batch solution, and the units it *withholds*: units an order
    is left short of although the stock still available when its turn comes (orders in batch
    order, earlier orders taking what the solution gives them) could have filled them. A
    router that fills every order as far as stock allows (the default policy) never does that.
    """
    stock = dict(scen.stock)
    out = Outcome()
    withheld = 0
    by_order: dict[str, list[tuple[int, str, int]]] = {}
    for (oid, li, wid), v in x.items():
        by_order.setdefault(oid, []).append((li, wid, v))
    for order in scen.orders:
        allocs = by_order.get(order.id, [])
        demand: dict[str, int] = {}
        for s, q in order.lines:
            demand[s] = demand.get(s, 0) + q
        reachable = sum(
            min(
                d,
                sum(stock.get((w.id, s), 0) for w in scen.warehouses if _serves(w, order.country)),
            )
            for s, d in demand.items()
        )
        filled = sum(v for _, _, v in allocs)
        withheld += reachable - filled
        for li, wid, v in allocs:
            stock[(wid, order.lines[li][0])] -= v
        out.add(scen, order, {wid for _, wid, _ in allocs}, filled)
    return out, withheld


def _allocate(
    order: Order, members: list[str], stock: dict[tuple[str, str], int], deepest_first: bool
) -> dict[tuple[str, str], int]:
    """Units per (warehouse, sku) for a set of warehouses (listed nearest first): each line
    whole from one member if possible, else split; members tried nearest first, or the member
    with the most units of the SKU first. Either way the order's cost is the same."""
    rem = {(w, s): stock.get((w, s), 0) for w in members for s, _ in order.lines}
    x: dict[tuple[str, str], int] = {}
    for s, q in sorted(order.lines, key=lambda ln: -ln[1]):
        order_of = sorted(members, key=lambda w: -rem[(w, s)]) if deepest_first else members
        whole = next((w for w in order_of if rem[(w, s)] >= q), None)
        takes = [(whole, q)] if whole is not None else []
        if whole is None:
            for w in order_of:
                t = min(q, rem[(w, s)])
                if t > 0:
                    takes.append((w, t))
                    q -= t
                if q == 0:
                    break
        for w, t in takes:
            rem[(w, s)] -= t
            x[(w, s)] = x.get((w, s), 0) + t
    return x


def run_hindsight_ties(scen: Scenario, policy: RoutingPolicy | None = None) -> Outcome:
    """Diagnostic, not a router: orders one at a time, each plan obeying the default policy's
    criteria (most units, fewest shipments, smallest band sum, fewest cross-border shipments),
    but *ties* among such plans (and which member ships which line) broken with hindsight: by
    the LP relaxation of the optimum of all the orders still to come. Estimates how much any
    tie-break rule between the distance band and priority could gain. Sets of up to three
    warehouses are enumerated; orders needing more are routed by ``plan_route``."""
    policy = policy or RoutingPolicy(allow_backorder=True, distance_band_km=BAND_KM)
    stock = dict(scen.stock)
    out = Outcome()
    for idx, order in enumerate(scen.orders):
        skus = [s for s, _ in order.lines]
        demand = dict(order.lines)
        elig = [
            w
            for w in scen.warehouses
            if _serves(w, order.country) and any(stock.get((w.id, s), 0) > 0 for s in skus)
        ]

        def fill(ids: Sequence[str], demand: dict[str, int] = demand) -> int:
            return sum(min(d, sum(stock.get((i, s), 0) for i in ids)) for s, d in demand.items())

        best_fill = fill([w.id for w in elig])
        tied: list[list[str]] = []
        best_key: tuple[int, int] | None = None
        for k in range(1, 4):
            for sub in itertools.combinations(elig, k):
                ids = [w.id for w in sub]
                if fill(ids) < best_fill or (
                    k > 1 and any(fill([i for i in ids if i != j]) >= best_fill for j in ids)
                ):
                    continue
                key = (
                    sum(scen.band[(order.id, i)] for i in ids),
                    sum(w.country != order.country for w in sub),
                )
                if best_key is None or key < best_key:
                    best_key, tied = key, [ids]
                elif key == best_key:
                    tied.append(ids)
            if tied:
                break
        options: list[dict[tuple[str, str], int]] = []
        for ids in tied:
            ids.sort(key=lambda i: scen.band[(order.id, i)])
            for deepest in (False, True):
                x = _allocate(order, ids, stock, deepest)
                if x not in options:
                    options.append(x)
        if not options:  # more than three shipments (or nothing to place): the router decides
            by_wh: dict[str, dict[str, int]] = {w.id: {} for w in scen.warehouses}
            for (wid, s), u in stock.items():
                by_wh[wid][s] = u
            plan = plan_route(
                [RouteLine(f"{order.id}-{i}", s, q) for i, (s, q) in enumerate(order.lines)],
                Destination(order.country, GeoPoint(order.lat, order.lon)),
                [
                    WarehouseCandidate(
                        id=w.id,
                        code=w.code,
                        point=GeoPoint(w.lat, w.lon),
                        priority=w.priority,
                        ships_to=w.ships_to,
                        available=by_wh[w.id],
                        country=w.country,
                    )
                    for w in scen.warehouses
                ],
                policy,
            )
            x = {}
            for a in plan.allocations:
                x[(a.warehouse_id, a.sku)] = x.get((a.warehouse_id, a.sku), 0) + a.quantity
            options = [x]
        chosen = options[0]
        rest = scen.orders[idx + 1 :]
        if len(options) > 1 and rest:
            best_value = math.inf
            for x in options:
                after = dict(stock)
                for key2, v in x.items():
                    after[key2] -= v
                after = {k2: v for k2, v in after.items() if v > 0}
                value = solve_mip(scen, 10.0, orders=rest, stock=after, relax=True)["objective"]
                if value < best_value - 1e-9:
                    best_value, chosen = value, x
        for key2, v in chosen.items():
            stock[key2] -= v
        out.add(scen, order, {w for (w, _), v in chosen.items() if v > 0}, sum(chosen.values()))
    return out


def run_per_order_exact(scen: Scenario) -> Outcome:
    """Myopic optimum: each order solved exactly for the bench cost, in sequence."""
    stock = dict(scen.stock)
    out = Outcome()
    for order in scen.orders:
        res = solve_mip(scen, 10.0, orders=[order], stock=stock)
        used: set[str] = set()
        filled = 0
        for (_, li, wid), v in res["x"].items():
            s = order.lines[li][0]
            stock[(wid, s)] -= v
            used.add(wid)
            filled += v
        out.add(scen, order, used, filled)
    return out


# --------------------------------------------------------------------------------------------
# Waves (issue 20): the product's wave MIP (oms.routing.wave) over pools of placed orders
# --------------------------------------------------------------------------------------------


def route_sequence(
    scen: Scenario, wave_size: int, time_limit: float, **wave_options: bool
) -> tuple[
    Outcome, dict[tuple[str, int], int], list[float], list[str], dict[tuple[str, int, str], int]
]:
    """Orders routed one by one by ``plan_route`` (each taking its stock), and re-solved in
    waves by ``oms.routing.wave.solve_wave``: every ``wave_size`` orders and once more for the
    rest at the end (0: never, -1: one wave of all the batch at the end). Returns the
    outcome, the units each line got from the sequential router (its fill-first fills), and
    each wave's solve time and status."""
    from oms.routing.domain import Allocation
    from oms.routing.wave import WaveOrder, solve_wave

    policy = RoutingPolicy(allow_backorder=True, distance_band_km=BAND_KM)
    by_wh: dict[str, dict[str, int]] = {w.id: {} for w in scen.warehouses}
    for (wid, sku), u in scen.stock.items():
        by_wh[wid][sku] = u
    points = {w.id: GeoPoint(w.lat, w.lon) for w in scen.warehouses}
    plans: dict[str, tuple[Allocation, ...]] = {}
    fills: dict[tuple[str, int], int] = {}
    pool: list[WaveOrder] = []
    seconds: list[float] = []
    statuses: list[str] = []

    def cands(stock: dict[str, dict[str, int]]) -> list[WarehouseCandidate]:
        return [
            WarehouseCandidate(
                id=w.id,
                code=w.code,
                point=points[w.id],
                priority=w.priority,
                ships_to=w.ships_to,
                available=stock[w.id],
                country=w.country,
            )
            for w in scen.warehouses
        ]

    def wave() -> None:
        stock = {w: dict(v) for w, v in by_wh.items()}
        for o in pool:
            for a in o.current:
                stock[a.warehouse_id][a.sku] = stock[a.warehouse_id].get(a.sku, 0) + a.quantity
        options = {k: v for k, v in wave_options.items() if k != "fill_backorders"}
        result = solve_wave(pool, cands(stock), time_limit_s=time_limit, **options)
        seconds.append(result.seconds)
        statuses.append(result.status)
        for change in result.changed:
            for a in change.before:
                by_wh[a.warehouse_id][a.sku] += a.quantity
            for a in change.after:
                by_wh[a.warehouse_id][a.sku] -= a.quantity
            plans[change.order_id] = change.after

    for order in scen.orders:
        lines = [RouteLine(f"{order.id}-{i}", s, q) for i, (s, q) in enumerate(order.lines)]
        dest = Destination(order.country, GeoPoint(order.lat, order.lon))
        plan = plan_route(lines, dest, cands(by_wh), policy)
        for a in plan.allocations:
            by_wh[a.warehouse_id][a.sku] -= a.quantity
            key = (order.id, int(a.line_id.rsplit("-", 1)[1]))
            fills[key] = fills.get(key, 0) + a.quantity
        plans[order.id] = plan.allocations
        kept = tuple(
            RouteLine(ln.line_id, ln.sku, fills[(order.id, i)])
            for i, ln in enumerate(lines)
            if fills.get((order.id, i))
        )
        waiting = tuple(
            RouteLine(ln.line_id, ln.sku, ln.quantity - fills.get((order.id, i), 0))
            for i, ln in enumerate(lines)
            if ln.quantity > fills.get((order.id, i), 0)
        )
        if wave_size != 0 and (kept or (waiting and wave_options.get("fill_backorders", True))):
            # the product's wave: each order keeps its units and may get its backordered ones
            # (``fill_backorders`` False: the earlier wave, backorders left as they are)
            back = waiting if wave_options.get("fill_backorders", True) else ()
            pool.append(WaveOrder(order.id, kept, dest, policy, plan.allocations, back))
            if wave_size > 0 and len(pool) >= wave_size:
                wave()
                pool = []
    if pool:  # the rest of the batch: one last wave (as a cut-off would)
        wave()
    out = Outcome()
    x: dict[tuple[str, int, str], int] = {}
    for order in scen.orders:
        allocs = plans.get(order.id, ())
        out.add(scen, order, {a.warehouse_id for a in allocs}, sum(a.quantity for a in allocs))
        for a in allocs:
            key = (order.id, int(a.line_id.rsplit("-", 1)[1]), a.warehouse_id)
            x[key] = x.get(key, 0) + a.quantity
    return out, fills, seconds, statuses, x


def main_waves(args: argparse.Namespace) -> int:
    """The waves study: per geography and tightness, the sequential router, the fill-first
    optimum and waves of each size against the clairvoyant optimum; the wave solve time per
    100 orders at 50 warehouses; the per-order routing p99 at 50 warehouses."""
    started = time.perf_counter()
    sizes = list(args.wave_sizes)  # "100": the product's solver; "100p": proven-only (v1)
    size_of = {s: int(s.rstrip("pk")) for s in sizes}
    label = {
        s: ("all" if size_of[s] < 0 else str(size_of[s]))
        + (" (proven only)" * s.endswith("p"))
        + (" (backorders kept)" * s.endswith("k"))
        for s in sizes
    }
    # "100p": proven only (the first version), "100k": backorders kept (the second), "100":
    # the product's wave (the third: fills backordered units where it can)
    solver = {
        s: WAVE_VARIANTS["proven-only"]
        if s.endswith("p")
        else WAVE_VARIANTS["warm+incumbent"]
        if s.endswith("k")
        else {}
        for s in sizes
    }
    results: dict[str, Any] = {
        "config": {
            "geographies": args.geographies,
            "seeds": args.seeds,
            "orders": args.orders,
            "skus": args.skus,
            "rhos": args.rhos,
            "mip_time_limit_s": args.mip_time_limit,
            "wave_time_limit_s": args.wave_time_limit,
            "wave_sizes": [label[s] for s in sizes],
            "cost": f"{PARCEL_BASE} + {PARCEL_PER_BAND}*band per parcel (band={BAND_KM:.0f} km), "
            f"{UNFILLED_PENALTY} per unfilled unit",
            "python": sys.version.split()[0],
        },
        "rows": [],
        "summary": [],
        "wave_times": {},
        "timing": [],
    }
    wave_times: dict[str, dict[str, list[float]]] = {}
    print(
        f"waves study: {args.orders} orders per batch, {args.skus} SKUs, seeds {args.seeds}; "
        f"OPT = clairvoyant batch MIP ({args.mip_time_limit:.0f} s limit); ratios to OPT"
    )
    for geo in args.geographies:
        cities, domestic, n_wh = GEOGRAPHIES[geo]
        wave_times[geo] = {label[s]: [] for s in sizes}
        for rho in args.rhos:
            agg: dict[str, list[float]] = {k: [] for k in ["oms", "ff", "gap"]}
            for s in sizes:
                agg[f"w{label[s]}"] = []
            for seed in args.seeds:
                scen = generate(
                    seed, n_wh, args.skus, args.orders, rho, cities=cities, domestic_only=domestic
                )
                # the sequential router and the waves first: their best plan starts the MIPs
                oms_out, fills, _, _, oms_x = route_sequence(scen, 0, args.wave_time_limit)
                waved: dict[int, tuple[Outcome, list[float], list[str]]] = {}
                best_cost, best_x = oms_out.cost, oms_x
                for s in sizes:
                    w_out, _, secs, statuses, w_x = route_sequence(
                        scen, size_of[s], args.wave_time_limit, **solver[s]
                    )
                    waved[s] = (w_out, secs, statuses)
                    if w_out.cost < best_cost:
                        best_cost, best_x = w_out.cost, w_x
                opt = solve_mip(scen, args.mip_time_limit, start=best_x)
                opt.pop("x")
                base = opt["objective"]
                bound = max(opt["dual_bound"], 1e-9)
                ff = solve_mip(scen, args.mip_time_limit, min_fill=fills, start=best_x)
                ff.pop("x")
                row: dict[str, Any] = {
                    "geography": geo,
                    "rho": rho,
                    "seed": seed,
                    "opt": base,
                    "opt_gap": opt["gap"],
                    "opt_proven": opt["proven"],
                    "opt_bound": opt["dual_bound"],
                    "opt_fill_first": ff["objective"],
                    "opt_fill_first_gap": ff["gap"],
                    "oms": round(oms_out.cost, 3),
                }
                agg.setdefault("oms_vs_bound", []).append(oms_out.cost / bound)
                agg["oms"].append(oms_out.cost / base)
                agg["ff"].append(ff["objective"] / base)
                agg["gap"].append(opt["gap"])
                for s in sizes:
                    w_out, secs, statuses = waved[s]
                    agg[f"w{label[s]}"].append(w_out.cost / base)
                    agg.setdefault(f"w{label[s]}_vs_bound", []).append(w_out.cost / bound)
                    wave_times[geo][label[s]] += secs
                    row[f"waves_{label[s]}"] = round(w_out.cost, 3)
                    row[f"waves_{label[s]}_statuses"] = sorted(set(statuses))
                results["rows"].append(row)
                ws = " ".join(f"w{label[s]} {row[f'waves_{label[s]}'] / base:.3f}" for s in sizes)
                print(
                    f"{geo} rho {rho:.1f} seed {seed:>3}: OPT {base:8.1f} (gap {opt['gap']:.2%})"
                    f" | oms {oms_out.cost / base:.3f} | OPT-ff {ff['objective'] / base:.3f} "
                    f"| {ws}",
                    flush=True,
                )
            summary = {
                "geography": geo,
                "rho": rho,
                "seeds": len(args.seeds),
                "max_opt_gap": round(max(agg["gap"]), 4),
                **{
                    f"{k}_mean": round(statistics.fmean(v), 4) for k, v in agg.items() if k != "gap"
                },
                **{f"{k}_max": round(max(v), 4) for k, v in agg.items() if k != "gap"},
            }
            results["summary"].append(summary)
            print(f"{geo} rho {rho:.1f} summary: {summary}", flush=True)
    for geo, per in wave_times.items():
        results["wave_times"][geo] = {
            size: {
                "waves": len(ts),
                "p50_s": round(_pct(sorted(ts), 0.5), 3) if ts else None,
                "p95_s": round(_pct(sorted(ts), 0.95), 3) if ts else None,
                "max_s": round(max(ts), 3) if ts else None,
            }
            for size, ts in per.items()
        }
    print("wave solve times:", json.dumps(results["wave_times"]))
    # per-order routing latency at 50 warehouses (the sequential router, no waves)
    for rho in args.rhos if args.timing_orders else []:
        scen = generate(1000 + int(rho * 100), 50, 400, args.timing_orders, rho)
        run_oms(scen, timed=False)
        res = run_oms(scen, timed=True, repeats=args.timing_repeats).summary()
        results["timing"].append({"rho": rho, "p50_us": res["p50_us"], "p99_us": res["p99_us"]})
        print(
            f"plan_route at 50 warehouses, rho {rho}: p50 {res['p50_us']} us p99 {res['p99_us']} us"
        )
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json} in {results['elapsed_s']} s")
    print()
    print(waves_table(results, [label[s] for s in sizes]))
    return 0


WAVE_VARIANTS = {
    # name: solve_wave options (the product's defaults: warm start, checked incumbent accepted)
    "proven-only": {"accept_incumbent": False, "warm_start": False, "fill_backorders": False},
    "warm+incumbent": {"accept_incumbent": True, "warm_start": True, "fill_backorders": False},
    "fill-backorders": {"accept_incumbent": True, "warm_start": True, "fill_backorders": True},
}


def main_wave_variants(args: argparse.Namespace) -> int:
    """Wave solvers side by side on the same pools (``--wave-timing`` orders at 50 warehouses,
    routed one by one, then one wave): each ``--wave-variants`` entry ``name:limit_s`` solves
    every pool; per variant the solve times, the solver's statuses, the waves that moved
    something and the cost after the wave relative to the per-order router's and to the best
    cost any variant reached on that pool."""
    cities, domestic, _ = GEOGRAPHIES["eu50"]
    n = args.wave_timing
    variants = [(v.split(":")[0], float(v.split(":")[1])) for v in args.wave_variants]
    rows: list[dict[str, Any]] = []
    for rho in args.rhos:
        for seed in args.seeds:
            scen = generate(seed, 50, args.skus, n, rho, cities=cities, domestic_only=domestic)
            base = route_sequence(scen, 0, 0)[0].cost
            row: dict[str, Any] = {"rho": rho, "seed": seed, "oms": round(base, 3)}
            for name, limit in variants:
                out, _, secs, st, _ = route_sequence(scen, -1, limit, **WAVE_VARIANTS[name])
                row[f"{name}:{limit:g}"] = {
                    "cost": round(out.cost, 3),
                    "seconds": round(secs[0], 3),
                    "status": st[0],
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = []
    for name, limit in variants:
        key = f"{name}:{limit:g}"
        ts = sorted(r[key]["seconds"] for r in rows)
        best = [min(v["cost"] for k, v in r.items() if isinstance(v, dict)) for r in rows]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[r[key]["status"]] = statuses.get(r[key]["status"], 0) + 1
        summary.append(
            {
                "variant": key,
                "waves": len(rows),
                "p50_s": round(_pct(ts, 0.5), 3),
                "p95_s": round(_pct(ts, 0.95), 3),
                "max_s": round(ts[-1], 3),
                "statuses": statuses,
                "moved": sum(1 for r in rows if r[key]["cost"] < r["oms"] - 1e-6),
                "vs_oms": round(statistics.mean(r[key]["cost"] / r["oms"] for r in rows), 4),
                "vs_best": round(
                    statistics.mean(r[key]["cost"] / b for r, b in zip(rows, best, strict=True)), 4
                ),
                "vs_best_max": round(
                    max(r[key]["cost"] / b for r, b in zip(rows, best, strict=True)), 4
                ),
            }
        )
    print(
        "| variant (limit s) | waves | p50 s | p95 s | max s | statuses | moved | "
        "cost / per-order | cost / best (worst) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for x in summary:
        st = ", ".join(f"{k} {v}" for k, v in sorted(x["statuses"].items()))
        print(
            f"| {x['variant']} | {x['waves']} | {x['p50_s']} | {x['p95_s']} | {x['max_s']} | "
            f"{st} | {x['moved']} | {x['vs_oms']} | {x['vs_best']} ({x['vs_best_max']}) |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


def main_wave_timing(args: argparse.Namespace) -> int:
    """Wave solve time for pools of exactly ``--wave-timing`` orders at 50 warehouses: per seed
    and tightness, that many orders routed one by one, then one wave of all of them."""
    if args.wave_variants:
        return main_wave_variants(args)
    cities, domestic, _ = GEOGRAPHIES["eu50"]
    n = args.wave_timing
    times: list[float] = []
    statuses: dict[str, int] = {}
    for rho in args.rhos:
        for seed in args.seeds:
            scen = generate(seed, 50, args.skus, n, rho, cities=cities, domestic_only=domestic)
            _, _, secs, st, _ = route_sequence(scen, -1, args.wave_time_limit)
            times += secs
            for x in st:
                statuses[x] = statuses.get(x, 0) + 1
            print(f"rho {rho} seed {seed}: {secs[0]:.2f} s {st[0]}", flush=True)
    ts = sorted(times)
    out = {
        "orders_per_wave": n,
        "warehouses": 50,
        "waves": len(ts),
        "time_limit_s": args.wave_time_limit,
        "p50_s": round(_pct(ts, 0.5), 3),
        "p95_s": round(_pct(ts, 0.95), 3),
        "max_s": round(ts[-1], 3),
        "statuses": statuses,
    }
    print(json.dumps(out))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def waves_table(results: dict[str, Any], sizes: list[str]) -> str:
    """The study's summary as Markdown tables (what bench/results/routing-waves.md shows)."""
    out = [
        "| geography | rho | OPT gap (max) | oms | OPT fill-first | "
        + " | ".join(f"waves of {s}" for s in sizes)
        + " | oms vs bound | "
        + " | ".join(f"waves of {s} vs bound" for s in sizes)
        + " |",
        "|" + "---|" * (5 + 2 * len(sizes) + 1),
    ]
    for r in results["summary"]:

        def cell(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key + '_mean']:.3f} ({r[key + '_max']:.3f})"

        out.append(
            f"| {r['geography']} | {r['rho']:.1f} | {r['max_opt_gap']:.1%} | {cell('oms')} | "
            f"{cell('ff')} | "
            + " | ".join(cell(f"w{s}") for s in sizes)
            + f" | {cell('oms_vs_bound')} | "
            + " | ".join(cell(f"w{s}_vs_bound") for s in sizes)
            + " |"
        )
    out += [
        "",
        "| geography | wave size | waves | p50 s | p95 s | max s |",
        "|---|---|---|---|---|---|",
    ]
    for geo, per in results["wave_times"].items():
        for size, t in per.items():
            out.append(
                f"| {geo} | {size} | {t['waves']} | {t['p50_s']} | {t['p95_s']} | {t['max_s']} |"
            )
    out += ["", "| rho | plan_route p50 µs | p99 µs |", "|---|---|---|"]
    for t in results["timing"]:
        out.append(f"| {t['rho']} | {t['p50_us']} | {t['p99_us']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--orders", type=int, default=120, help="orders per quality batch")
    ap.add_argument("--warehouses", type=int, default=10, help="warehouses in quality runs")
    ap.add_argument("--skus", type=int, default=40)
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.7, 1.0])
    ap.add_argument("--mip-time-limit", type=float, default=25.0)
    ap.add_argument("--no-per-order-exact", action="store_true", help="skip that baseline")
    ap.add_argument(
        "--no-hindsight-ties",
        action="store_true",
        help="skip the diagnostic that breaks the default policy's ties with hindsight",
    )
    ap.add_argument("--skip-quality", action="store_true", help="latency figures only")
    ap.add_argument("--timing-orders", type=int, default=3000)
    ap.add_argument("--timing-warehouses", type=int, default=50)
    ap.add_argument("--timing-skus", type=int, default=400)
    ap.add_argument(
        "--timing-repeats",
        type=int,
        default=3,
        help="time each order this many times and keep the fastest (noisy shared hosts)",
    )
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "routing_quality.json"
    )
    ap.add_argument(
        "--waves",
        action="store_true",
        help="the waves study (issue 20): geographies, fill-first optimum, waves of each size",
    )
    ap.add_argument(
        "--geographies", nargs="+", default=list(GEOGRAPHIES), choices=list(GEOGRAPHIES)
    )
    ap.add_argument(
        "--wave-sizes",
        nargs="+",
        default=["30", "100", "-1"],
        help="orders per wave; -1: all; a p suffix: the proven-only solver; a k suffix: the "
        "solver that keeps backorders as they are",
    )
    ap.add_argument(
        "--wave-time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT_S,
        help="the wave solver's time limit (default: the product's)",
    )
    ap.add_argument(
        "--wave-timing",
        type=int,
        default=0,
        help="with --waves: only time single waves of this many orders at 50 warehouses",
    )
    ap.add_argument(
        "--wave-variants",
        nargs="+",
        default=[],
        help="with --wave-timing: solvers side by side, name:limit_s, names: "
        + ", ".join(WAVE_VARIANTS),
    )
    ap.add_argument(
        "--tables-from",
        type=Path,
        nargs="+",
        help="print the waves study's tables from these JSON results (merged)",
    )
    args = ap.parse_args(argv)
    if args.tables_from:
        merged: dict[str, Any] = {"summary": [], "wave_times": {}, "timing": []}
        sizes: list[str] = []
        for path in args.tables_from:
            part = json.loads(path.read_text())
            sizes = part["config"]["wave_sizes"]
            for key in ("summary", "timing"):
                merged[key] += part[key]
            merged["wave_times"].update(part["wave_times"])
        print(waves_table(merged, sizes))
        return 0
    if args.waves:
        if args.json == ap.get_default("json"):
            args.json = Path(__file__).parent / "results" / "routing_waves.json"
        if args.wave_timing:
            return main_wave_timing(args)
        return main_waves(args)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "config": {
            "seeds": args.seeds,
            "orders": args.orders,
            "warehouses": args.warehouses,
            "skus": args.skus,
            "rhos": args.rhos,
            "mip_time_limit_s": args.mip_time_limit,
            "cost": f"{PARCEL_BASE} + {PARCEL_PER_BAND}*band per parcel (band={BAND_KM:.0f} km), "
            f"{UNFILLED_PENALTY} per unfilled unit",
            "timing_warehouses": args.timing_warehouses,
            "timing_skus": args.timing_skus,
            "timing_orders": args.timing_orders,
            "timing_repeats": args.timing_repeats,
            "python": sys.version.split()[0],
        },
        "quality": [],
        "quality_mean": [],
        "timing": [],
    }
    print(
        f"quality: {args.warehouses} warehouses, {args.skus} SKUs, {args.orders} orders per "
        f"batch, seeds {args.seeds}; OPT = clairvoyant batch MIP (HiGHS, "
        f"{args.mip_time_limit:.0f} s limit)"
    )
    print(
        "cost ratios to OPT; poe = per-order exact (each order optimal alone, in sequence); "
        "hst = default-policy plans with ties broken in hindsight (diagnostic); "
        "parcels per order / split share / fill rate"
    )
    hdr = (
        f"{'rho':>4} {'seed':>4} | {'OPT':>7} {'gap':>6} {'s':>5} | {'oms':>6} {'poe':>6} "
        f"{'hst':>6} {'greedy':>6} | {'OPT parcels/split/fill':>22} | "
        f"{'oms parcels/split/fill':>22} | "
        f"{'greedy parcels/split/fill':>25}"
    )
    print(hdr)
    print("-" * len(hdr))

    def pss(d: dict[str, Any]) -> str:
        return f"{d['parcels_per_order']:.3f} {d['split_share']:>6.1%} {d['fill_rate']:>6.1%}"

    for rho in [] if args.skip_quality else args.rhos:
        agg: dict[str, list[float]] = {"oms": [], "poe": [], "hst": [], "greedy": [], "gap": []}
        parts: dict[str, list[float]] = {
            "OPT": [0.0, 0.0, 0.0, 0.0],
            "oms": [0.0, 0.0, 0.0, 0.0],
            "greedy": [0.0, 0.0, 0.0, 0.0],
        }
        withheld = 0
        for seed in args.seeds:
            scen = generate(seed, args.warehouses, args.skus, args.orders, rho)
            mip = solve_mip(scen, args.mip_time_limit)
            opt_out, opt_withheld = solution_outcome(scen, mip.pop("x"))
            withheld += opt_withheld
            opt = mip["objective"]
            opt_parts = opt_out.summary()
            mip["cost_parcels"] = opt_parts["cost_parcels"]
            mip["cost_bands"] = opt_parts["cost_bands"]
            mip["cost_unfilled"] = opt_parts["cost_unfilled"]
            mip["withheld_units"] = opt_withheld
            oms = run_oms(scen).summary(opt)
            greedy = run_greedy(scen).summary(opt)
            poe = None if args.no_per_order_exact else run_per_order_exact(scen).summary(opt)
            hst = None if args.no_hindsight_ties else run_hindsight_ties(scen).summary(opt)
            agg["oms"].append(oms["ratio_to_optimum"])
            agg["greedy"].append(greedy["ratio_to_optimum"])
            agg["gap"].append(mip["gap"])
            if poe is not None:
                agg["poe"].append(poe["ratio_to_optimum"])
            if hst is not None:
                agg["hst"].append(hst["ratio_to_optimum"])
            for name, d in (("OPT", mip), ("oms", oms), ("greedy", greedy)):
                for i, key in enumerate(("cost_parcels", "cost_bands", "cost_unfilled")):
                    parts[name][i] += d[key]
                parts[name][3] += d["objective"] if name == "OPT" else d["cost"]
            results["quality"].append(
                {
                    "rho": rho,
                    "seed": seed,
                    "mip": mip,
                    "oms": oms,
                    "per_order_exact": poe,
                    "hindsight_ties": hst,
                    "greedy": greedy,
                }
            )
            poe_s = f"{poe['ratio_to_optimum']:>6.3f}" if poe else f"{'-':>6}"
            hst_s = f"{hst['ratio_to_optimum']:>6.3f}" if hst else f"{'-':>6}"
            print(
                f"{rho:>4.2f} {seed:>4} | {opt:>7.1f} {mip['gap']:>6.2%} {mip['seconds']:>5.1f} | "
                f"{oms['ratio_to_optimum']:>6.3f} {poe_s} {hst_s} "
                f"{greedy['ratio_to_optimum']:>6.3f} | "
                f"{pss(mip):>22} | {pss(oms):>22} | {pss(greedy):>25}"
            )
        mean = {
            "rho": rho,
            "oms_ratio_mean": round(statistics.fmean(agg["oms"]), 4),
            "oms_ratio_max": round(max(agg["oms"]), 4),
            "per_order_exact_ratio_mean": round(statistics.fmean(agg["poe"]), 4)
            if agg["poe"]
            else None,
            "hindsight_ties_ratio_mean": round(statistics.fmean(agg["hst"]), 4)
            if agg["hst"]
            else None,
            "greedy_ratio_mean": round(statistics.fmean(agg["greedy"]), 4),
            "greedy_ratio_max": round(max(agg["greedy"]), 4),
            "max_mip_gap": max(agg["gap"]),
            # summed over the seeds: parcel base, band surcharge, unfilled penalty, total
            "cost_breakdown": {
                name: dict(
                    zip(
                        ("parcels", "bands", "unfilled", "total"),
                        [round(v, 2) for v in vals],
                        strict=True,
                    )
                )
                for name, vals in parts.items()
            },
            "opt_withheld_units": withheld,
        }
        results["quality_mean"].append(mean)
        poe_m = mean["per_order_exact_ratio_mean"]
        hst_m = mean["hindsight_ties_ratio_mean"]
        print(
            f"{rho:>4.2f} mean | oms/OPT {mean['oms_ratio_mean']:.4f} "
            f"(max {mean['oms_ratio_max']:.4f}) | per-order-exact/OPT "
            f"{poe_m if poe_m is not None else '-'} | hindsight-ties/OPT "
            f"{hst_m if hst_m is not None else '-'} | greedy/OPT "
            f"{mean['greedy_ratio_mean']:.4f} (max {mean['greedy_ratio_max']:.4f}) | "
            f"max MIP gap {mean['max_mip_gap']:.2%}"
        )
        o_p, o_b, o_u, o_t = parts["OPT"]
        r_p, r_b, r_u, _ = parts["oms"]
        print(
            f"{rho:>4.2f} excess of oms over OPT, share of OPT cost: parcels "
            f"{(r_p - o_p) / o_t:+.1%}, bands {(r_b - o_b) / o_t:+.1%}, unfilled "
            f"{(r_u - o_u) / o_t:+.1%}; OPT withholds {withheld} units that orders could have "
            "had at their turn"
        )
    print()
    print(
        f"latency: plan_route per order, {args.timing_warehouses} warehouses, "
        f"{args.timing_skus} SKUs, {args.timing_orders} orders (sequential, stock consumed); "
        f"fastest of {args.timing_repeats} calls per order (wall); +dict = with "
        "explanation.to_dict(); 1st = first call only; cpu = thread CPU time, fastest of the "
        "repeats"
    )
    for rho in args.rhos:
        for label, rate in (("typical", 1.2), ("heavy", 0.5)):
            scen = generate(
                1000 + int(rho * 100),
                args.timing_warehouses,
                args.timing_skus,
                args.timing_orders,
                rho,
                lines_rate=rate,
            )
            run_oms(scen, timed=False)  # warm-up
            res = run_oms(scen, timed=True, repeats=args.timing_repeats).summary()
            mean_lines = statistics.fmean(len(o.lines) for o in scen.orders)
            max_lines = max(len(o.lines) for o in scen.orders)
            results["timing"].append(
                {
                    "rho": rho,
                    "mix": label,
                    "lines_rate": rate,
                    "mean_lines": round(mean_lines, 2),
                    "max_lines": max_lines,
                    **res,
                }
            )
            print(
                f"  rho {rho:.2f} {label:<7} (lines mean {mean_lines:.2f}, max {max_lines:>2}): "
                f"p50 {res['p50_us']:6.0f} us  p99 {res['p99_us']:6.0f} us  "
                f"max {res['max_us']:6.0f} us | +dict p99 {res['with_to_dict_p99_us']:6.0f} us "
                f"| 1st p99 {res['single_shot_p99_us']:6.0f} us "
                f"| cpu p50 {res.get('cpu_p50_us', 0):5.0f} p99 {res.get('cpu_p99_us', 0):5.0f} us "
                f"| parcels/o {res['parcels_per_order']:.3f} split {res['split_share']:.1%} "
                f"fill {res['fill_rate']:.1%}"
            )
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json} in {results['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
