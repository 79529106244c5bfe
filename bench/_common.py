"""Shared by ``bench/load.py`` and its worker processes: the catalogue, order bodies, CPU
accounting from /proc, latency statistics. Standard library only (so the load generator stays
lean and can run from any interpreter)."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# (code, name, ISO country, postal code, latitude, longitude): real European city coordinates.
WAREHOUSES: list[tuple[str, str, str, str, float, float]] = [
    ("BER", "Berlin", "DE", "10115", 52.520, 13.405),
    ("HAM", "Hamburg", "DE", "20095", 53.551, 9.994),
    ("MUC", "Munich", "DE", "80331", 48.137, 11.575),
    ("FRA", "Frankfurt", "DE", "60311", 50.110, 8.682),
    ("CGN", "Cologne", "DE", "50667", 50.938, 6.960),
    ("PAR", "Paris", "FR", "75001", 48.857, 2.352),
    ("LYS", "Lyon", "FR", "69001", 45.764, 4.836),
    ("MAD", "Madrid", "ES", "28001", 40.417, -3.704),
    ("BCN", "Barcelona", "ES", "08001", 41.385, 2.173),
    ("MIL", "Milan", "IT", "20121", 45.464, 9.190),
    ("ROM", "Rome", "IT", "00184", 41.903, 12.496),
    ("VIE", "Vienna", "AT", "1010", 48.208, 16.373),
    ("WAW", "Warsaw", "PL", "00-001", 52.230, 21.012),
    ("PRG", "Prague", "CZ", "110 00", 50.076, 14.438),
    ("AMS", "Amsterdam", "NL", "1012", 52.368, 4.904),
    ("BRU", "Brussels", "BE", "1000", 50.850, 4.352),
    ("CPH", "Copenhagen", "DK", "1050", 55.676, 12.568),
    ("STO", "Stockholm", "SE", "111 20", 59.329, 18.069),
    ("DUB", "Dublin", "IE", "D01", 53.350, -6.260),
    ("LIS", "Lisbon", "PT", "1100-148", 38.722, -9.139),
]

# Destinations: (city, country, postal code, street). No coordinates: oms resolves them offline
# from the postal code (else city, else country), as it would for a real storefront.
DESTINATIONS: list[tuple[str, str, str, str]] = [
    ("Berlin", "DE", "10117", "Unter den Linden 1"),
    ("Hamburg", "DE", "20354", "Jungfernstieg 7"),
    ("Munich", "DE", "80331", "Marienplatz 8"),
    ("Stuttgart", "DE", "70173", "Königstraße 1"),
    ("Leipzig", "DE", "04109", "Markt 1"),
    ("Dresden", "DE", "01067", "Altmarkt 2"),
    ("Bremen", "DE", "28195", "Am Markt 21"),
    ("Hannover", "DE", "30159", "Kröpcke 3"),
    ("Nuremberg", "DE", "90403", "Hauptmarkt 18"),
    ("Dortmund", "DE", "44137", "Westenhellweg 12"),
    ("Paris", "FR", "75004", "Rue de Rivoli 52"),
    ("Marseille", "FR", "13001", "La Canebière 10"),
    ("Toulouse", "FR", "31000", "Place du Capitole 1"),
    ("Lille", "FR", "59000", "Grand Place 4"),
    ("Bordeaux", "FR", "33000", "Cours de l'Intendance 2"),
    ("Madrid", "ES", "28013", "Gran Vía 30"),
    ("Seville", "ES", "41004", "Avenida de la Constitución 5"),
    ("Valencia", "ES", "46002", "Plaza del Ayuntamiento 1"),
    ("Milan", "IT", "20121", "Via Dante 4"),
    ("Naples", "IT", "80133", "Via Toledo 156"),
    ("Turin", "IT", "10121", "Via Roma 50"),
    ("Vienna", "AT", "1010", "Graben 21"),
    ("Graz", "AT", "8010", "Herrengasse 3"),
    ("Warsaw", "PL", "00-001", "Nowy Świat 15"),
    ("Kraków", "PL", "31-001", "Rynek Główny 1"),
    ("Prague", "CZ", "110 00", "Václavské náměstí 1"),
    ("Amsterdam", "NL", "1012", "Damrak 70"),
    ("Rotterdam", "NL", "3011", "Coolsingel 40"),
    ("Brussels", "BE", "1000", "Grand Place 1"),
    ("Antwerp", "BE", "2000", "Meir 50"),
    ("Copenhagen", "DK", "1050", "Strøget 12"),
    ("Aarhus", "DK", "8000", "Søndergade 20"),
    ("Stockholm", "SE", "111 20", "Drottninggatan 50"),
    ("Gothenburg", "SE", "411 01", "Kungsgatan 10"),
    ("Dublin", "IE", "D02", "Grafton Street 1"),
    ("Lisbon", "PT", "1100-148", "Rua Augusta 100"),
    ("Porto", "PT", "4000-000", "Rua de Santa Catarina 1"),
    ("Zurich", "CH", "8001", "Bahnhofstrasse 1"),
    ("Luxembourg", "LU", "1111", "Grand-Rue 1"),
    ("Ljubljana", "SI", "1000", "Prešernov trg 1"),
]

SKU_COUNT = 10_000
ZIPF_S = 0.9  # demand skew: SKU of popularity rank r is bought with weight 1 / r**s


def sku_name(i: int) -> str:
    return f"SKU-{i:05d}"


SKU_NAMES = [sku_name(i) for i in range(1, SKU_COUNT + 1)]


def zipf_weights(n: int = SKU_COUNT, s: float = ZIPF_S) -> list[float]:
    raw = [1.0 / (r**s) for r in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def cumulative(weights: Sequence[float]) -> list[float]:
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return out


def order_body(
    rng: random.Random,
    cum: Sequence[float],
    *,
    channel: str = "web",
    skus: Sequence[str] | None = None,
    fixed_lines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A realistic order: 1-4 distinct Zipf-drawn SKUs, quantity 1-3, a random destination."""
    city, country, postal, street = rng.choice(DESTINATIONS)
    if fixed_lines is None:
        n_lines = rng.choices((1, 2, 3, 4), weights=(45, 30, 15, 10))[0]
        picked: list[int] = []
        while len(picked) < n_lines:
            i = min(len(cum) - 1, _bisect(cum, rng.random()))
            if i not in picked:
                picked.append(i)
        names = skus or SKU_NAMES
        lines = [
            {
                "sku": names[i],
                "name": f"Article {names[i]}",
                "quantity": rng.choices((1, 2, 3), weights=(70, 20, 10))[0],
                "unit_price": rng.randrange(499, 19999, 100),
                "tax_rate_bps": rng.choice((700, 1900, 2000, 2100)),
            }
            for i in picked
        ]
    else:
        lines = fixed_lines
    customer = rng.randrange(1, 200_000)
    return {
        "channel": channel,
        "currency": "EUR",
        "customer": {"id": f"cus_{customer}", "email": f"customer{customer}@example.com"},
        "shipping_address": {
            "name": f"Customer {customer}",
            "lines": [street],
            "city": city,
            "postal_code": postal,
            "country": country,
        },
        "payment_method": "card",
        "shipping_fee": rng.choice((0, 495, 695)),
        "lines": lines,
    }


def _bisect(cum: Sequence[float], x: float) -> int:
    lo, hi = 0, len(cum)
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# ---- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float | None]:
    values = sorted(latencies_s)
    ms = [v * 1000.0 for v in values]
    return {
        "p50_ms": _round(percentile(ms, 50)),
        "p95_ms": _round(percentile(ms, 95)),
        "p99_ms": _round(percentile(ms, 99)),
        "max_ms": _round(ms[-1] if ms else None),
        "mean_ms": _round(sum(ms) / len(ms) if ms else None),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


# ---- CPU accounting from /proc --------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all CPUs since boot."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / _TICK, total / _TICK


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _pid_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu(pids: Iterable[int]) -> dict[int, float]:
    """utime + stime seconds per live process."""
    out = {}
    for pid in pids:
        value = _pid_cpu(pid)
        if value is not None:
            out[pid] = value
    return out


class CpuProbe:
    """CPU seconds used by groups of processes and by the whole machine over a window.

    Groups are functions returning the group's pids, called at the start and at the end, so
    processes started inside the window (new database connections) are counted in full. A
    process that exits inside the window loses what it used since the start (the kernel keeps
    no record of it), so figures are lower bounds when connections close mid-window.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self._machine = machine_cpu()
        self._start = {name: process_cpu(pids()) for name, pids in self.groups.items()}

    def stop(self, wall_s: float) -> dict[str, float]:
        busy0, total0 = self._machine
        busy1, total1 = machine_cpu()
        out = {}
        for name, pids in self.groups.items():
            before, after = self._start[name], process_cpu(pids())
            used = sum(v - before.get(p, 0.0) for p, v in after.items())
            out[f"{name}_cores"] = round(used / wall_s, 3)
        out["machine_busy_cores"] = round((busy1 - busy0) / wall_s, 2)
        out["machine_cores"] = round((total1 - total0) / wall_s, 2)
        return out


def postgres_pids(postmaster: int, database: str) -> list[int]:
    """The server's processes that work for ``database``: its backends plus the shared ones
    (WAL writer, checkpointer...), leaving out backends of other databases on the same server."""
    out = []
    for pid in process_tree(postmaster):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        is_backend = "(" in cmd or "[local]" in cmd
        if pid == postmaster or not is_backend or f" {database} " in cmd:
            out.append(pid)
    return out
