"""Order-placement load benchmark: oms end to end over HTTP, against the database's own ceiling.

Usage::

    .venv/bin/python bench/load.py                      # embedded Postgres, full run (~5 min)
    .venv/bin/python bench/load.py --quick              # shorter and fewer levels (~1.5 min)
    .venv/bin/python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

What it does:

1. **Database.** Without ``--database-url`` it starts oms's own embedded Postgres in a temporary
   directory (removed afterwards). With a URL it creates a fresh database ``oms_bench_<hex>`` on
   that server and drops it at the end. Then it runs the migrations.
2. **oms.** ``python -m oms.cli serve`` as a subprocess with ``oms serve``'s own defaults for
   worker processes and pool size unless ``--workers`` is given.
3. **Catalogue.** 20 warehouses at real European city coordinates through ``POST
   /v1/warehouses``; 10,000 SKUs, each stocked in 5-15 of them (about 100,000 stock rows plus
   their ledger rows), loaded with ``COPY``. Stock follows demand (Zipf 0.9) with headroom, so
   out-of-stock answers are possible but rare.
4. **Load.** A separate process (``bench/_loadgen.py``, raw HTTP/1.1 keep-alive on uvloop) runs
   each scenario at several concurrency levels (one connection per concurrent client), after a
   warm-up:

   * ``spread``: multi-line orders (1-4 lines, quantity 1-3, Zipf SKUs) to 40 European
     destinations, each with its own ``Idempotency-Key``;
   * ``flash``: everyone buys one hot SKU held in one warehouse with limited stock; the run
     sends 25% more orders than there are units, measures orders/s until sold out, then checks
     in the database that exactly the stock was sold (nothing oversold, nothing lost);
   * ``mixed``: 50% placements, 25% order lookups, 15% availability queries, 10% transitions
     (``placed`` -> ``paid``).
5. **Ceiling.** ``bench/_ceiling.py`` runs the order transaction's SQL directly with asyncpg
   (prepared statements, a pool of 8 connections, no HTTP, no ORM) at the same concurrency
   levels, for ``spread`` and ``flash``. oms's orders/s is reported as a ratio to it.
6. **Floor** (``--floor``). ``bench/_floor_app.py``: the ceiling's own transaction behind the
   design card's stack alone (uvicorn, one FastAPI route validating oms's ``OrderCreate``, an
   asyncpg pool of oms's size per worker, oms's worker count), driven by the same load
   generator for ``spread``. Its ratio to the ceiling is the best any FastAPI service sending
   oms's SQL can reach on this machine; oms's ratio is reported beside it.
7. **Report.** A table on stdout, ``bench/results/load.json`` and ``bench/results/load.png``
   (throughput and p99 against concurrency). CPU use of the server, Postgres, the load
   generator and everything else on the machine is recorded for every level, because all of
   them share the same cores.

Errors are counted honestly: everything but 201 (and, for placements, 409
``insufficient_stock``) is an error, as are transport failures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from _common import SKU_COUNT, WAREHOUSES, sku_name, zipf_weights

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

INVARIANTS_SQL = {
    "negative or over-reserved stock": """
        SELECT count(*) FROM stock_levels
        WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand""",
    "reserved differs from open allocations": """
        SELECT count(*) FROM stock_levels s
        LEFT JOIN (SELECT warehouse_id, sku, sum(quantity) q FROM allocations
                   WHERE status = 'open' GROUP BY warehouse_id, sku) a
          ON a.warehouse_id = s.warehouse_id AND a.sku = s.sku
        WHERE s.reserved <> coalesce(a.q, 0)""",
    "ledger sum differs from on hand": """
        SELECT count(*) FROM stock_levels s
        LEFT JOIN (SELECT warehouse_id, sku, sum(quantity) q FROM inventory_movements
                   GROUP BY warehouse_id, sku) m
          ON m.warehouse_id = s.warehouse_id AND m.sku = s.sku
        WHERE s.on_hand <> coalesce(m.q, 0)""",
    "order lines without allocations": """
        SELECT count(*) FROM order_lines l
        LEFT JOIN (SELECT order_line_id, sum(quantity) q FROM allocations
                   WHERE status = 'open' GROUP BY order_line_id) a
          ON a.order_line_id = l.id
        WHERE l.quantity - l.backordered <> coalesce(a.q, 0)""",
}


# ---- database --------------------------------------------------------------------------------


class Database:
    def __init__(self, dsn: str, name: str) -> None:
        self.dsn = dsn  # libpq/asyncpg form
        self.name = name

    @property
    def sqlalchemy_url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@contextlib.contextmanager
def database(url: str | None, keep: bool) -> Iterator[Database]:
    if url is None:
        from oms.embedded import EmbeddedPostgres, temp_data_dir

        data_dir = temp_data_dir(prefix="oms-bench-")
        pg = EmbeddedPostgres(data_dir, database="oms_bench")
        pg.start()
        log(f"embedded Postgres in {data_dir}")
        try:
            yield Database(pg.dsn, "oms_bench")
        finally:
            pg.stop()
            if not keep:
                shutil.rmtree(data_dir, ignore_errors=True)
        return
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    name = f"oms_bench_{secrets.token_hex(4)}"
    admin = urlunsplit(parts)
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    log(f"created database {name}")
    try:
        yield Database(urlunsplit(parts._replace(path="/" + name)), name)
    finally:
        if not keep:
            asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log(f"dropped database {name}")


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def postmaster_pid(dsn: str) -> int | None:
    """The Postgres server's main process (None when it runs on another machine)."""
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        settings = {
            r["name"]: r["setting"]
            for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["server_version", "shared_buffers", "synchronous_commit", "fsync"],
            )
        }
        log(f"postgres {settings}")
        return _parent_pid(backend)  # read while the backend is alive
    finally:
        await conn.close()


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def create_keys(url: str) -> dict[str, Any]:
    from oms.auth.service import create_api_key
    from oms.config import Settings
    from oms.db import create_engine, create_sessionmaker
    from oms.shared.roles import Role

    engine = create_engine(Settings(), url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            admin, admin_token = await create_api_key(session, name="bench-admin", role=Role.ADMIN)
            shop, shop_token = await create_api_key(
                session, name="bench-storefront", role=Role.STOREFRONT
            )
    finally:
        await engine.dispose()
    secret = shop_token.split("_", 2)[2]
    return {
        "admin": admin_token,
        "storefront": shop_token,
        "storefront_prefix": shop.prefix,
        "storefront_id": str(shop.id),
        "storefront_secret_hash": hashlib.sha256(secret.encode()).hexdigest(),
        "admin_id": str(admin.id),
    }


# ---- catalogue -------------------------------------------------------------------------------


def create_warehouses(base: str, token: str) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        for code, city, country, postal, lat, lon in WAREHOUSES:
            resp = client.post(
                "/v1/warehouses",
                json={
                    "code": code,
                    "name": f"{city} fulfilment centre",
                    "country": country,
                    "city": city,
                    "postal_code": postal,
                    "address_lines": [f"Logistikpark {city} 1"],
                    "latitude": lat,
                    "longitude": lon,
                },
            )
            resp.raise_for_status()


async def load_stock(
    dsn: str, *, expected_units: int, flash: dict[str, int], seed: int = 11
) -> dict[str, Any]:
    """Stock rows (and the ledger rows that explain them) for every SKU, via COPY."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    try:
        ids = {r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM warehouses")}
        codes = sorted(ids)
        weights = zipf_weights()
        now = datetime.now(UTC)
        levels: list[tuple[uuid.UUID, str, int]] = []
        for i in range(SKU_COUNT):
            holders = rng.sample(codes, rng.randint(5, 15))
            per = 2.0 * weights[i] * expected_units / len(holders)
            for code in holders:
                levels.append((ids[code], sku_name(i + 1), int(per) + rng.randint(10, 60)))
        for sku, qty in flash.items():
            levels.append((ids["FRA"], sku, qty))
        await conn.copy_records_to_table(
            "stock_levels",
            records=[(w, s, q, 0, 0, now) for w, s, q in levels],
            columns=["warehouse_id", "sku", "on_hand", "reserved", "safety_stock", "updated_at"],
        )
        await conn.copy_records_to_table(
            "inventory_movements",
            records=[
                (w, s, "count", q, q, "bench catalogue", "adjustment", None, "bench", now)
                for w, s, q in levels
            ],
            columns=[
                "warehouse_id",
                "sku",
                "movement_type",
                "quantity",
                "on_hand_after",
                "reason",
                "reference_type",
                "reference_id",
                "actor",
                "created_at",
            ],
        )
        await conn.execute("ANALYZE")
        return {
            "warehouses": len(ids),
            "skus": SKU_COUNT,
            "stock_rows": len(levels),
            "units": sum(q for _, _, q in levels),
        }
    finally:
        await conn.close()


# ---- server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, url: str, workers: int | None, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "server.log"
        cmd = [sys.executable, "-m", "oms.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--no-migrate"]
        if workers:
            cmd += ["--workers", str(workers)]
        full_env = os.environ | {"OMS_DATABASE_URL": url, "OMS_DATA_DIR": str(workdir)} | env
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.base = f"http://127.0.0.1:{self.port}"

    @classmethod
    def floor(cls, workers: int, spec: dict[str, Any], workdir: Path) -> Server:
        """``_floor_app.py`` under uvicorn (see the module docstring, step 6)."""
        self = cls.__new__(cls)
        self.port = free_port()
        self.log = workdir / "floor.log"
        cmd = [sys.executable, "-m", "uvicorn", "_floor_app:app", "--app-dir", str(HERE)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
        cmd += ["--log-level", "warning"]
        env = os.environ | {"OMS_FLOOR": json.dumps(spec)}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE
            )
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: oms exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("bench: oms did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"bench [{time.monotonic() - _T0:6.1f}s]: {msg}", file=sys.stderr, flush=True)


def run_child(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / script)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: {script} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# ---- checks ----------------------------------------------------------------------------------


async def flash_check(dsn: str, sku: str, stock: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        sold = await conn.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE sku = $1", sku
        )
        orders = await conn.fetchval(
            "SELECT count(DISTINCT order_id) FROM order_lines WHERE sku = $1", sku
        )
        reserved = await conn.fetchval(
            "SELECT coalesce(sum(reserved), 0) FROM stock_levels WHERE sku = $1", sku
        )
        allocated = await conn.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM allocations WHERE sku = $1 AND status = 'open'",
            sku,
        )
    finally:
        await conn.close()
    return {
        "stock": stock,
        "sold_units": int(sold),
        "orders": int(orders),
        "reserved": int(reserved),
        "allocated": int(allocated),
        "oversold": max(0, int(sold) - stock),
        "exactly_sold_out": int(sold) == stock == int(reserved) == int(allocated),
    }


async def invariants(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {name: int(await conn.fetchval(sql)) for name, sql in INVARIANTS_SQL.items()}
    finally:
        await conn.close()


async def table_counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))  # noqa: S608 - fixed names
            for t in ("orders", "order_lines", "shipments", "allocations", "outbox_events")
        }
    finally:
        await conn.close()


# ---- report ----------------------------------------------------------------------------------


def errors_of(result: dict[str, Any]) -> tuple[int, int]:
    """(errors, expected out-of-stock 409s) of a load result."""
    errors = oos = 0
    for op, stats in result["ops"].items():
        for status, n in stats["status"].items():
            if status in ("200", "201"):
                continue
            if op == "place" and status == "409":
                insufficient = stats["error_codes"].get("insufficient_stock", 0)
                oos += insufficient
                errors += n - insufficient
            else:
                errors += n
    return errors, oos


def print_table(report: dict[str, Any]) -> None:
    head = (
        f"{'scenario':<8} {'conc':>4} {'orders/s':>9} {'ops/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'409 oos':>7} {'ceiling/s':>9} {'ratio':>6} "
        f"{'cpu srv':>7} {'pg':>5} {'client':>6} {'other':>5} {'ms/op srv':>9} {'pg':>5}"
    )
    print(head)
    print("-" * len(head))
    for row in report["rows"]:
        ceiling = row.get("ceiling_orders_per_s")
        ratio = row.get("ratio_to_ceiling")
        cpu = row["cpu"]
        print(
            f"{row['scenario']:<8} {row['concurrency']:>4} {row['orders_per_s']:>9.1f} "
            f"{row['ops_per_s']:>8.1f} {_f(row['p50_ms'])} {_f(row['p95_ms'])} "
            f"{_f(row['p99_ms'])} {row['errors']:>6} {row['out_of_stock_409']:>7} "
            f"{(f'{ceiling:.1f}' if ceiling else '-'):>9} "
            f"{(f'{ratio:.2f}' if ratio else '-'):>6} {cpu.get('server_cores', 0):>7.2f} "
            f"{cpu.get('postgres_cores', 0):>5.2f} {cpu.get('client_cores', 0):>6.2f} "
            f"{cpu.get('other_cores', 0):>5.2f} "
            f"{row['cpu_per_op'].get('server_ms_per_op', 0):>9.2f} "
            f"{row['cpu_per_op'].get('postgres_ms_per_op', 0):>5.2f}"
        )
    for c in report["ceiling"]:
        print(
            f"ceiling  {c['scenario']:<6} c={c['concurrency']:<3} {c['orders_per_s']:>8.1f} "
            f"orders/s  p50 {c['p50_ms']} p95 {c['p95_ms']} p99 {c['p99_ms']} ms  "
            f"outcomes {c['outcomes']}  cpu {c['cpu']}  per order {c.get('cpu_per_order')}"
        )
    for r in report.get("floor", []):
        print(
            f"floor    {r['scenario']:<6} c={r['concurrency']:<3} {r['orders_per_s']:>8.1f} "
            f"orders/s  p50 {r['p50_ms']} p99 {r['p99_ms']} ms  errors {r['errors']}  "
            f"ratio to ceiling {r.get('ratio_to_ceiling')}  ms/op {r['cpu_per_op']}"
        )
    for f in report["flash_checks"]:
        print(f"flash check c={f['concurrency']}: {f}")
    print(f"invariants (rows breaking each, all must be 0): {report['invariants']}")


def _f(v: float | None) -> str:
    return f"{v:>7.1f}" if v is not None else f"{'-':>7}"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    series: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        series.setdefault(row["scenario"], []).append(row)
    markers = {"spread": "o", "flash": "s", "mixed": "^"}
    colors = {"spread": "C0", "flash": "C1", "mixed": "C2"}
    for name, rows in series.items():
        xs = [r["concurrency"] for r in rows]
        style = {"marker": markers.get(name, "o"), "color": colors.get(name)}
        ax1.plot(xs, [r["orders_per_s"] for r in rows], "-", label=f"oms {name}", **style)
        if name == "mixed":
            ax1.plot(xs, [r["ops_per_s"] for r in rows], ":", label="oms mixed, all ops/s", **style)
        ax2.plot(xs, [r["p99_ms"] for r in rows], "-", label=f"oms {name} (placements)", **style)
    ceilings: dict[str, list[dict[str, Any]]] = {}
    for c in report["ceiling"]:
        ceilings.setdefault(c["scenario"], []).append(c)
    for name, rows in ceilings.items():
        xs = [r["concurrency"] for r in rows]
        style = {"marker": markers.get(name, "o"), "color": colors.get(name), "alpha": 0.6}
        ax1.plot(xs, [r["orders_per_s"] for r in rows], "--", label=f"DB ceiling {name}", **style)
        ax2.plot(xs, [r["p99_ms"] for r in rows], "--", label=f"DB ceiling {name}", **style)
    floors = report.get("floor") or []
    if floors:
        xs = [r["concurrency"] for r in floors]
        style = {"marker": "D", "color": "C3", "alpha": 0.7}
        label = "framework floor spread (ceiling's SQL behind FastAPI)"
        ax1.plot(xs, [r["orders_per_s"] for r in floors], ":", label=label, **style)
        ax2.plot(xs, [r["p99_ms"] for r in floors], ":", label=label, **style)
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        levels = sorted({r["concurrency"] for r in report["rows"]})
        ax.set_xticks(levels)
        ax.set_xticklabels([str(v) for v in levels])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylim(bottom=0)
    ax1.set_ylabel("orders per second")
    ax1.set_title("Throughput")
    ax2.set_ylabel("p99 latency (ms)")
    ax2.set_title("p99 latency")
    ax2.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    m = report["machine"]
    fig.suptitle(
        f"oms order placement, {m['cpus']} CPUs shared by server, Postgres and load generator "
        f"({report['started_at'][:16]}Z, workers={report['server']['workers']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a Postgres server to create a fresh database on")
    parser.add_argument("--quick", action="store_true", help="fewer levels, shorter runs")
    parser.add_argument("--levels", help="concurrency levels, e.g. 1,8,32,64")
    parser.add_argument("--duration", type=float, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per level")
    parser.add_argument("--workers", type=int, help="oms worker processes (default: oms's own)")
    parser.add_argument("--scenarios", default="spread,flash,mixed")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the asyncpg ceiling")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the framework floor (the ceiling's SQL behind uvicorn + FastAPI) for spread",
    )
    parser.add_argument("--flash-stock", type=int, help="units of the hot SKU per flash level")
    parser.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for oms")
    parser.add_argument("--label", default="", help="free text stored in the JSON")
    parser.add_argument("--output", default=str(RESULTS / "load.json"))
    parser.add_argument("--plot", default=str(RESULTS / "load.png"))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--prewarm",
        type=float,
        default=5.0,
        help="seconds of orders placed (and discarded) before measuring, then ANALYZE",
    )
    args = parser.parse_args(argv)

    quick = args.quick
    levels = [int(x) for x in (args.levels or ("8,64" if quick else "1,8,32,64")).split(",")]
    duration = args.duration or (4.0 if quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.5 if quick else 3.0)
    flash_stock = args.flash_stock or (1500 if quick else 4000)
    scenarios = [s for s in args.scenarios.split(",") if s]
    flash_levels = [c for c in levels if c >= 8] or levels
    server_env = dict(kv.split("=", 1) for kv in args.server_env)
    run_id = secrets.token_hex(3)
    started = datetime.now(UTC)
    flash_skus = {f"FLASH-HTTP-{c}": flash_stock for c in flash_levels}
    flash_skus |= {f"FLASH-SQL-{c}": flash_stock for c in flash_levels}
    expected_units = int(3_000 * (duration * (len(levels) + 2) + max(args.prewarm, 0)))

    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-work-"))
    report: dict[str, Any] = {
        "label": args.label,
        "started_at": started.isoformat(),
        "command": " ".join(["bench/load.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_before": os.getloadavg(),
        },
        "settings": {
            "levels": levels,
            "duration_s": duration,
            "warmup_s": warmup,
            "flash_stock": flash_stock,
            "prewarm_s": args.prewarm,
            "scenarios": scenarios,
            "server_env": server_env,
        },
        "rows": [],
        "ceiling": [],
        "floor": [],
        "flash_checks": [],
    }
    with database(args.database_url, args.keep) as db:
        from oms.schema import upgrade_head

        report["database"] = "embedded" if args.database_url is None else "given server"
        upgrade_head(db.sqlalchemy_url)
        log("migrated")
        pm_pid = asyncio.run(postmaster_pid(db.dsn))
        keys = asyncio.run(create_keys(db.sqlalchemy_url))
        server = Server(db.sqlalchemy_url, args.workers, server_env, workdir)
        floor: Server | None = None
        try:
            server.wait_ready()
            log(f"oms is ready on port {server.port}")
            from oms.config import Settings

            # oms's settings as the server sees them (its --server-env included), for the
            # report and for the floor, which gets the same workers and pool size
            given = {k[4:].lower(): v for k, v in server_env.items() if k.startswith("OMS_")}
            given = {k: v for k, v in given.items() if k in Settings.model_fields}
            if args.workers:
                given["workers"] = str(args.workers)
            settings = Settings(**given)
            report["server"] = {
                "workers": args.workers or settings.workers,
                "db_pool_size": settings.effective_db_pool_size,
                "db_max_overflow": settings.db_max_overflow,
                "env": server_env,
            }
            create_warehouses(server.base, keys["admin"])
            log("warehouses created")
            report["catalogue"] = asyncio.run(
                load_stock(db.dsn, expected_units=expected_units, flash=flash_skus)
            )
            log(f"catalogue {report['catalogue']}")
            cpu = {"server_pid": server.proc.pid, "postmaster_pid": pm_pid, "database": db.name}
            base_spec = {
                "host": "127.0.0.1",
                "port": server.port,
                "token": keys["storefront"],
                "admin_token": keys["admin"],
                "warmup_s": warmup,
                "duration_s": duration,
                "cpu": cpu,
            }
            ceiling_spec = {
                "dsn": db.dsn,
                "key_prefix_db": keys["storefront_prefix"],
                "secret_hash": keys["storefront_secret_hash"],
                "key_scope": keys["storefront_id"],
                "warmup_s": warmup,
                "duration_s": duration,
                "cpu": {"postmaster_pid": pm_pid, "database": db.name},
            }
            if args.floor:
                floor = Server.floor(
                    report["server"]["workers"],
                    {
                        "dsn": db.dsn,
                        "pool_size": settings.effective_db_pool_size,
                        "key_prefix_db": keys["storefront_prefix"],
                        "secret_hash": keys["storefront_secret_hash"],
                        "key_scope": keys["storefront_id"],
                    },
                    workdir,
                )
                floor.wait_ready()
                log(f"floor is ready on port {floor.port}")
            if args.prewarm > 0:
                # A production database has orders in it. Fresh tables make Postgres cache
                # sequential-scan plans for the foreign-key checks on `orders` in the
                # server's long-lived connections (the table was empty when they were
                # planned); they get slower with every order until autovacuum analyses the
                # table. Place some orders first and ANALYZE, so that both oms and the
                # ceiling are measured with the plans of a database in use.
                log(f"pre-warm: {args.prewarm:g} s of spread orders, then ANALYZE")
                run_child(
                    "_loadgen.py",
                    base_spec
                    | {
                        "scenario": "spread",
                        "concurrency": 8,
                        "seed": 99,
                        "key_prefix": f"{run_id}-prewarm",
                        "warmup_s": 0,
                        "duration_s": args.prewarm,
                    },
                )
                asyncio.run(_admin(db.dsn, "ANALYZE"))
            for scenario in scenarios:
                scenario_levels = flash_levels if scenario == "flash" else levels
                for conc in scenario_levels:
                    spec = base_spec | {
                        "scenario": scenario,
                        "concurrency": conc,
                        "seed": conc,
                        "key_prefix": f"{run_id}-{scenario}-{conc}",
                    }
                    if scenario == "flash":
                        spec |= {
                            "flash_sku": f"FLASH-HTTP-{conc}",
                            "requests": int(flash_stock * 1.25),
                        }
                    log(f"oms {scenario} c={conc}")
                    result = run_child("_loadgen.py", spec)
                    if scenario == "flash":
                        check = asyncio.run(flash_check(db.dsn, f"FLASH-HTTP-{conc}", flash_stock))
                        check["concurrency"] = conc
                        check["responses"] = result["ops"]["place"]["status"]
                        check["exactly_sold_out"] = (
                            check["exactly_sold_out"] and result["orders"] == flash_stock
                        )
                        report["flash_checks"].append(check)
                    ceiling = None
                    if not args.no_ceiling and scenario in ("spread", "flash"):
                        cspec = ceiling_spec | {
                            "scenario": scenario,
                            "concurrency": conc,
                            "seed": 1000 + conc,
                            "run_id": f"{run_id}-sql-{scenario}-{conc}",
                        }
                        if scenario == "flash":
                            cspec |= {
                                "flash_sku": f"FLASH-SQL-{conc}",
                                "requests": int(flash_stock * 1.25),
                            }
                        log(f"ceiling {scenario} c={conc}")
                        ceiling = run_child("_ceiling.py", cspec)
                        ceiling["cpu"]["other_cores"] = round(
                            ceiling["cpu"]["machine_busy_cores"]
                            - ceiling["cpu"].get("postgres_cores", 0)
                            - ceiling["cpu"]["client_cores"],
                            2,
                        )
                        if ceiling["orders"]:
                            ceiling["cpu_per_order"] = {
                                f"{n}_ms": round(
                                    ceiling["cpu"].get(f"{n}_cores", 0.0)
                                    * ceiling["wall_s"]
                                    / sum(ceiling["outcomes"].values())
                                    * 1000,
                                    2,
                                )
                                for n in ("postgres", "client")
                            }
                        report["ceiling"].append(ceiling)
                    row = _row(result, ceiling)
                    if floor is not None and scenario == "spread":
                        log(f"floor {scenario} c={conc}")
                        fres = run_child(
                            "_loadgen.py",
                            spec
                            | {
                                "port": floor.port,
                                "key_prefix": f"{run_id}-floor-{conc}",
                                "cpu": cpu | {"server_pid": floor.proc.pid},
                            },
                        )
                        frow = _row(fres, ceiling)
                        report["floor"].append(frow)
                        row["floor_orders_per_s"] = frow["orders_per_s"]
                        if ceiling is not None and ceiling.get("orders_per_s"):
                            row["floor_ratio_to_ceiling"] = frow["ratio_to_ceiling"]
                    report["rows"].append(row)
            report["invariants"] = asyncio.run(invariants(db.dsn))
            report["table_counts"] = asyncio.run(table_counts(db.dsn))
        finally:
            server.stop()
            if floor is not None:
                floor.stop()
            report["server_log_tail"] = server.log.read_text(errors="replace")[-2000:]
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["load_avg_after"] = os.getloadavg()
    print_table(report)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}")
    if args.plot:
        plot(report, Path(args.plot))
        log(f"wrote {args.plot}")
    bad = any(report["invariants"].values()) or not all(
        f["exactly_sold_out"] for f in report["flash_checks"]
    )
    return 1 if bad else 0


def _row(result: dict[str, Any], ceiling: dict[str, Any] | None) -> dict[str, Any]:
    errors, oos = errors_of(result)
    place = result["ops"].get("place", {})
    cpu = dict(result["cpu"])
    cpu["other_cores"] = round(
        cpu["machine_busy_cores"]
        - cpu.get("server_cores", 0)
        - cpu.get("postgres_cores", 0)
        - cpu.get("client_cores", 0),
        2,
    )
    ops = sum(o["count"] for o in result["ops"].values())
    per_op = {
        f"{name}_ms_per_op": round(cpu.get(f"{name}_cores", 0.0) * result["wall_s"] / ops * 1000, 2)
        for name in ("server", "postgres", "client")
        if ops
    }
    row: dict[str, Any] = {
        "scenario": result["scenario"],
        "concurrency": result["concurrency"],
        "orders_per_s": result["orders_per_s"],
        "ops_per_s": result["ops_per_s"],
        "p50_ms": place.get("p50_ms"),
        "p95_ms": place.get("p95_ms"),
        "p99_ms": place.get("p99_ms"),
        "errors": errors,
        "out_of_stock_409": oos,
        "ops": result["ops"],
        "cpu": cpu,
        "cpu_per_op": per_op,
        "wall_s": result["wall_s"],
    }
    if "sell_out_s" in result:
        row["sell_out_s"] = result["sell_out_s"]
    if ceiling is not None and ceiling.get("orders_per_s"):
        row["ceiling_orders_per_s"] = ceiling["orders_per_s"]
        row["ratio_to_ceiling"] = round(result["orders_per_s"] / ceiling["orders_per_s"], 3)
    return row


if __name__ == "__main__":
    sys.exit(main())
