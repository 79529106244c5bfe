"""Stock-feed benchmark: what the stock feed costs order placement, as ratios measured in one run.

Usage::

    .venv/bin/python bench/stock_feed.py                 # embedded Postgres (~4 min)
    .venv/bin/python bench/stock_feed.py --quick         # 2 rounds, shorter (~2 min)
    .venv/bin/python bench/stock_feed.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

What it does (the set-up is ``bench/load.py``'s: fresh database, migrations, ``oms serve`` as a
subprocess, 20 warehouses, 10,000 SKUs in about 100,000 stock rows, the ``spread`` scenario of
``bench/_loadgen.py``, multi-line orders to 40 destinations):

1. Two channels with a routing policy (``web``: every warehouse; ``marketplace``: ten of them),
   so every stock change concerns two channels.
2. Three variants, **interleaved** (rounds of off / on / on+subscribers, the order rotated each
   round so that drift of the shared machine does not favour one), each round with an
   ``oms worker`` process started for it:

   * ``off``: the journal triggers disabled (``ALTER TABLE ... DISABLE TRIGGER``) and the
     worker's feed events off (``OMS_STOCK_FEED_EVENTS=false``): oms as before the feed;
   * ``on``: the triggers on (every reservation journals its stock rows) and the worker
     computing the coalesced events (``OMS_STOCK_FEED_INTERVAL_S``, default 5 s here), no
     subscriber: the events stay in the outbox;
   * ``on+subs``: as ``on``, plus a webhook subscription to ``inventory.*`` delivered to a local
     receiver (204), and a connector polling ``GET /v1/inventory/changes?channel=web``
     every 0.5 s from its cursor.

3. The journal trigger alone, which is all the feed adds to placement: one connection raising
   one stock row's ``reserved`` per transaction, triggers off and on, interleaved (µs per
   stock row changed; ``synchronous_commit`` off for that session so the flush does not drown
   it).
4. Per variant: the median over the rounds of orders/s and of p50/p99 placement latency, and
   the ratio of orders/s to ``off``; per round the journal rows written, the events recorded,
   the webhooks received and the change-feed rows read. A table on stdout and
   ``bench/results/stock-feed.json``.

Everything (server, worker, Postgres, load generator, receiver) shares the machine's cores,
and on a shared machine other people's work is noise: compare the ratios, and look at the
spread between rounds before trusting a difference of a few per cent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _common import WAREHOUSES
from load import (
    ROOT,
    Server,
    _admin,
    create_keys,
    create_warehouses,
    database,
    errors_of,
    invariants,
    load_stock,
    log,
    postmaster_pid,
    run_child,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VARIANTS = ("off", "on", "on+subs")
TRIGGERS = ("oms_stock_level_changed", "oms_stock_level_created")


# ---- the subscriber and the connector ------------------------------------------------------


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers 204 and counts what it receives."""

    def __init__(self) -> None:
        counts = self.counts = {"received": 0}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    counts["received"] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Connector(threading.Thread):
    """A channel connector polling the change feed from its cursor every 0.5 s."""

    def __init__(self, base: str, token: str, cursor: str | None) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.cursor = base, token, cursor
        self.stop = threading.Event()
        self.rows = 0
        self.pages = 0
        self.errors = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=10) as client:
            while not self.stop.is_set():
                more = True
                while more and not self.stop.is_set():
                    params: dict[str, Any] = {"channel": "web", "limit": 1000}
                    if self.cursor:
                        params["cursor"] = self.cursor
                    resp = client.get("/v1/inventory/changes", params=params)
                    if resp.status_code != 200:
                        self.errors += 1
                        break
                    body = resp.json()
                    self.rows += len(body["levels"])
                    self.pages += 1
                    self.cursor = body["cursor"]
                    more = body["has_more"]
                self.stop.wait(0.5)


# ---- one round -----------------------------------------------------------------------------


class Worker:
    def __init__(self, url: str, env: dict[str, str], workdir: Path, name: str) -> None:
        self.log = workdir / f"worker-{name}.log"
        full_env = os.environ | {"OMS_DATABASE_URL": url, "OMS_DATA_DIR": str(workdir)} | env
        with self.log.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "oms.cli", "worker"],
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def wait_started(self, limit_s: float = 120.0) -> None:
        """Until the worker has logged its start (Python's start-up is slow on a busy box)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if "worker started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: the worker exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise SystemExit("bench: the worker did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "journal": int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM stock_changes")),
            "events": int(
                await conn.fetchval(
                    "SELECT count(*) FROM outbox_events WHERE type = ANY($1::text[])",
                    [
                        "inventory.availability_changed",
                        "inventory.out_of_stock",
                        "inventory.back_in_stock",
                    ],
                )
            ),
        }
    finally:
        await conn.close()


_BEHIND = """
SELECT (SELECT count(*) FROM stock_changes c
        LEFT JOIN stock_feed_cursors f ON f.name = 'availability_events'
        WHERE f.name IS NULL OR (c.txid, c.id) > (f.txid, f.change_id)) AS behind,
       (SELECT count(*) FROM channel_stock WHERE pending_since IS NOT NULL) AS pending
"""


async def _caught_up(dsn: str, limit_s: float = 900.0) -> float:
    """Wait until the worker has read the whole journal and published what is pending."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - started < limit_s:
            row = await conn.fetchrow(_BEHIND)
            if row["behind"] == 0 and row["pending"] == 0:
                return round(time.monotonic() - started, 1)
            await asyncio.sleep(1.0)
    finally:
        await conn.close()
    raise SystemExit("bench: the worker did not catch up with the journal")


async def _triggers(dsn: str, enabled: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name in TRIGGERS:
            verb = "ENABLE" if enabled else "DISABLE"
            await conn.execute(f"ALTER TABLE stock_levels {verb} TRIGGER {name}")
    finally:
        await conn.close()


_MICRO_TX = """
UPDATE stock_levels SET reserved = reserved + $3, updated_at = now()
WHERE warehouse_id = $1 AND sku = $2
"""


async def _trigger_micro(dsn: str, rounds: int, txs: int) -> dict[str, Any]:
    """The journal trigger alone: one connection, ``txs`` transactions each changing one stock
    row's ``reserved`` (what a one-line reservation does to its row), with the triggers off and
    on, interleaved ``rounds`` times; synchronous_commit off so that the commit's flush does not
    drown the difference. Microseconds per transaction, and the stock row restored."""
    conn = await asyncpg.connect(dsn)
    out: dict[str, list[float]] = {"off": [], "on": []}
    try:
        await conn.execute("SET synchronous_commit = off")
        wid, sku, on_hand, reserved = await conn.fetchrow(
            "SELECT warehouse_id, sku, on_hand, reserved FROM stock_levels "
            "WHERE on_hand > reserved ORDER BY on_hand DESC LIMIT 1"
        )
        for r in range(rounds):
            for variant in ("off", "on") if r % 2 == 0 else ("on", "off"):
                await _triggers(dsn, variant == "on")
                stmt = await conn.prepare(_MICRO_TX)  # planned after the ALTER TABLE
                for i in range(50):  # warm-up
                    async with conn.transaction():
                        await stmt.fetch(wid, sku, 1 - 2 * (i % 2))
                started = time.perf_counter()
                for i in range(txs):  # +1, -1, +1, ...: the row stays within its bounds
                    async with conn.transaction():
                        await stmt.fetch(wid, sku, 1 - 2 * (i % 2))
                out[variant].append((time.perf_counter() - started) / txs * 1e6)
        await conn.execute(
            "UPDATE stock_levels SET reserved = $3 WHERE warehouse_id = $1 AND sku = $2",
            wid,
            sku,
            reserved,
        )
    finally:
        await _triggers(dsn, True)
        await conn.close()
    off, on = statistics.median(out["off"]), statistics.median(out["on"])
    return {
        "transactions_per_round": txs,
        "rounds": rounds,
        "us_per_tx_off": [round(x, 1) for x in out["off"]],
        "us_per_tx_on": [round(x, 1) for x in out["on"]],
        "median_us_off": round(off, 1),
        "median_us_on": round(on, 1),
        "trigger_us_per_row": round(on - off, 1),
    }


async def _drop_backlog(dsn: str) -> int:
    """Deliveries a round's subscriber left unsent are marked dead, so that they are not sent
    during the next round (whatever its variant): each round pays for its own subscribers."""
    conn = await asyncpg.connect(dsn)
    try:
        status = await conn.execute(
            "UPDATE webhook_deliveries SET status = 'dead' "
            "WHERE status IN ('pending', 'delivering', 'failed')"
        )
        return int(status.split()[-1])
    finally:
        await conn.close()


def _subscription(base: str, token: str, sub_id: str, enabled: bool) -> None:
    resp = httpx.patch(
        f"{base}/v1/webhooks/subscriptions/{sub_id}",
        json={"enabled": enabled},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    resp.raise_for_status()


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a Postgres server to create a fresh database on")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 s")
    parser.add_argument("--rounds", type=int, help="rounds of the three variants (default 3)")
    parser.add_argument("--duration", type=float, help="seconds measured per variant and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", type=int, help="oms API processes (default: oms's own)")
    parser.add_argument("--interval", type=float, default=5.0, help="OMS_STOCK_FEED_INTERVAL_S")
    parser.add_argument("--output", default=str(RESULTS / "stock-feed.json"))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    rounds = args.rounds or (2 if args.quick else 3)
    duration = args.duration or (5.0 if args.quick else 8.0)
    run_id = secrets.token_hex(3)
    started = datetime.now(UTC)
    expected_units = int(3_000 * (duration + args.warmup) * rounds * len(VARIANTS) * 1.5)
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-feed-"))
    report: dict[str, Any] = {
        "started_at": started.isoformat(),
        "command": " ".join(["bench/stock_feed.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_before": os.getloadavg(),
        },
        "settings": {
            "rounds": rounds,
            "duration_s": duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "stock_feed_interval_s": args.interval,
            "scenario": "spread",
        },
        "runs": [],
    }
    receiver = Receiver()
    with database(args.database_url, args.keep) as db:
        from oms.schema import upgrade_head

        upgrade_head(db.sqlalchemy_url)
        log("migrated")
        pm_pid = asyncio.run(postmaster_pid(db.dsn))
        keys = asyncio.run(create_keys(db.sqlalchemy_url))
        # the subscriber is on 127.0.0.1: private targets allowed (as in local development)
        server = Server(
            db.sqlalchemy_url, args.workers, {"OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}, workdir
        )
        try:
            server.wait_ready()
            log(f"oms is ready on port {server.port}")
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            create_warehouses(server.base, keys["admin"])
            report["catalogue"] = asyncio.run(
                load_stock(db.dsn, expected_units=expected_units, flash={})
            )
            log(f"catalogue {report['catalogue']}")
            with httpx.Client(base_url=server.base, headers=admin, timeout=60) as client:
                client.put("/v1/routing-policies/web", json={}).raise_for_status()
                marketplace = [code for code, *_ in WAREHOUSES[:10]]
                client.put(
                    "/v1/routing-policies/marketplace", json={"warehouse_codes": marketplace}
                ).raise_for_status()
                resp = client.post(
                    "/v1/webhooks/subscriptions",
                    json={
                        "url": receiver.url,
                        "event_types": ["inventory.*"],
                        "enabled": False,
                        "description": "bench subscriber",
                    },
                )
                resp.raise_for_status()
                sub_id = resp.json()["id"]
                # the connector starts at the end of the feed as it stands (a live connector)
                cursor = None
                while True:
                    page = client.get(
                        "/v1/inventory/changes", params={"limit": 5000, "cursor": cursor or ""}
                    ).json()
                    cursor = page["cursor"]
                    if not page["has_more"]:
                        break
            # the set-up journaled every level three times (catalogue, two policies): let a
            # worker publish the first figures before measuring, as a live system would have
            settle = Worker(
                db.sqlalchemy_url,
                {"OMS_STOCK_FEED_INTERVAL_S": str(args.interval)},
                workdir,
                "settle",
            )
            try:
                report["settle_s"] = asyncio.run(_caught_up(db.dsn))
            finally:
                settle.stop()
            log(f"first figures published in {report['settle_s']} s")
            asyncio.run(_admin(db.dsn, "ANALYZE"))
            cpu = {"server_pid": server.proc.pid, "postmaster_pid": pm_pid, "database": db.name}
            base_spec = {
                "host": "127.0.0.1",
                "port": server.port,
                "token": keys["storefront"],
                "admin_token": keys["admin"],
                "warmup_s": args.warmup,
                "duration_s": duration,
                "cpu": cpu,
                "scenario": "spread",
                "concurrency": args.concurrency,
            }
            for r in range(rounds):
                order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
                for variant in order:
                    on = variant != "off"
                    asyncio.run(_triggers(db.dsn, on))
                    _subscription(server.base, keys["admin"], sub_id, variant == "on+subs")
                    env = {
                        "OMS_STOCK_FEED_EVENTS": "true" if on else "false",
                        "OMS_STOCK_FEED_INTERVAL_S": str(args.interval),
                        "OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                    }
                    worker = Worker(db.sqlalchemy_url, env, workdir, f"{r}-{variant}")
                    connector = None
                    if variant == "on+subs":
                        connector = Connector(server.base, keys["admin"], cursor)
                        connector.start()
                    worker.wait_started()
                    time.sleep(2.0)  # the worker's start-up round (compaction, catch-up)
                    before = asyncio.run(_counts(db.dsn))
                    received = receiver.counts["received"]
                    log(f"round {r + 1}/{rounds}: {variant}")
                    result = run_child(
                        "_loadgen.py",
                        base_spec
                        | {"seed": 100 * r + len(variant), "key_prefix": f"{run_id}-{r}-{variant}"},
                    )
                    time.sleep(1.0)  # what the worker does for the round's last changes
                    after = asyncio.run(_counts(db.dsn))
                    if connector is not None:
                        connector.stop.set()
                        connector.join(timeout=15)
                        cursor = connector.cursor
                    worker.stop()
                    left = asyncio.run(_drop_backlog(db.dsn))
                    worker_log = worker.log.read_text(errors="replace")
                    errors, oos = errors_of(result)
                    place = result["ops"].get("place", {})
                    report["runs"].append(
                        {
                            "round": r + 1,
                            "variant": variant,
                            "orders_per_s": result["orders_per_s"],
                            "p50_ms": place.get("p50_ms"),
                            "p99_ms": place.get("p99_ms"),
                            "errors": errors,
                            "out_of_stock_409": oos,
                            "journal_rows": after["journal"] - before["journal"],
                            "events": after["events"] - before["events"],
                            "webhooks_received": receiver.counts["received"] - received,
                            "webhooks_left_unsent": left,
                            "feed_rows_read": connector.rows if connector else 0,
                            "feed_errors": connector.errors if connector else 0,
                            "cpu": result["cpu"],
                            "worker_log_tail": worker_log[-1500:],
                        }
                    )
            asyncio.run(_triggers(db.dsn, True))
            log("the trigger alone (one connection, synchronous_commit off)")
            try:
                report["trigger_micro"] = asyncio.run(_trigger_micro(db.dsn, 6, 2000))
            except Exception as exc:  # the HTTP rounds are reported whatever happens here
                report["trigger_micro"] = {"error": repr(exc)}
            report["invariants"] = asyncio.run(invariants(db.dsn))
        finally:
            server.stop()
            receiver.close()
            report["server_log_tail"] = server.log.read_text(errors="replace")[-2000:]
            shutil.rmtree(workdir, ignore_errors=True)
        # reported before the database is dropped (that can wait long for a checkpoint)
        report["machine"]["load_avg_after"] = os.getloadavg()
        summary: dict[str, Any] = {}
        for variant in VARIANTS:
            runs = [x for x in report["runs"] if x["variant"] == variant]
            summary[variant] = {
                "orders_per_s": _median([x["orders_per_s"] for x in runs]),
                "orders_per_s_rounds": [x["orders_per_s"] for x in runs],
                "p50_ms": _median([x["p50_ms"] for x in runs if x["p50_ms"] is not None]),
                "p99_ms": _median([x["p99_ms"] for x in runs if x["p99_ms"] is not None]),
            }
        off = summary["off"]["orders_per_s"] or 1.0
        for variant in VARIANTS:
            summary[variant]["ratio_to_off"] = round(summary[variant]["orders_per_s"] / off, 3)
        report["summary"] = summary
        print_report(report)
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {out}")
    bad = any(report["invariants"].values()) or any(x["errors"] for x in report["runs"])
    return 1 if bad else 0


def print_report(report: dict[str, Any]) -> None:
    head = (
        f"{'round':>5} {'variant':<8} {'orders/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'journal':>8} {'events':>7} {'hooks':>6} {'unsent':>6} {'feed rows':>9}"
    )
    print(head)
    print("-" * len(head))
    for x in report["runs"]:
        print(
            f"{x['round']:>5} {x['variant']:<8} {x['orders_per_s']:>9.1f} "
            f"{(x['p50_ms'] or 0):>7.1f} {(x['p99_ms'] or 0):>7.1f} {x['errors']:>6} "
            f"{x['journal_rows']:>8} {x['events']:>7} {x['webhooks_received']:>6} "
            f"{x['webhooks_left_unsent']:>6} {x['feed_rows_read']:>9}"
        )
    print()
    print(
        f"{'variant':<8} {'orders/s (median)':>18} {'ratio to off':>13} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for variant, s in report["summary"].items():
        print(
            f"{variant:<8} {s['orders_per_s']:>18.1f} {s['ratio_to_off']:>13.3f} "
            f"{s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f}   rounds {s['orders_per_s_rounds']}"
        )
    m = report["machine"]
    print(
        f"machine: {m['cpus']} CPUs, load average before {m['load_avg_before']}, "
        f"after {m.get('load_avg_after')} (shared: other work is noise)"
    )
    t = report["trigger_micro"]
    if "error" in t:
        print(f"journal trigger alone: failed ({t['error']})")
    else:
        print(
            f"journal trigger alone: {t['median_us_off']} µs/tx off, {t['median_us_on']} µs/tx "
            f"on (median of {t['rounds']} x {t['transactions_per_round']} one-row "
            f"transactions): {t['trigger_us_per_row']} µs per stock row changed"
        )
    print(f"invariants (rows breaking each, all must be 0): {report['invariants']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
