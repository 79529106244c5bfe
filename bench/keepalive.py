"""Dropped connections under keep-alive clients: 0 expected over 100,000 requests (issue 23).

Usage::

    .venv/bin/python bench/keepalive.py                    # embedded Postgres, 100,000 requests
    .venv/bin/python bench/keepalive.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/keepalive.py --server-env OMS_HTTP_KEEPALIVE_TIMEOUT_S=5  # old default

Starts ``oms serve`` (its own defaults: workers, pool, keep-alive) on a fresh database, places a
few orders, then sends reads over a pool of 64 keep-alive connections used the way httpx's
pool uses them (most recently used first; a connection idle for 5 s or closed by the server is
replaced before use, never reused): order lookups by id (``GET /v1/orders/{id}``) and
``GET /healthz``, in bursts at a changing number of concurrent clients (8 to 64, so some
connections idle while others work). Between two bursts every open connection is reused once
more at the last moment such a client allows (idle for 4.998 s): a server closing idle
connections after 5 s (the old default) crosses these requests. Every request must get an
answer: a connection reset or closed with a request on it (``httpx.ReadError`` for httpx)
counts as dropped. Loopback only; bounded by ``--requests`` (a few minutes on 2 shared
cores). Writes ``bench/results/keepalive.json``; exits 1 if any request was dropped or
answered 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import select
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from load import RESULTS, Server, create_keys, create_warehouses, database, load_stock, log

CLIENT_EXPIRY_S = 5.0  # httpx's default keepalive_expiry
PROBE_MARGIN_S = 0.002  # probes reuse a connection idle for 5 s less this


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _place_orders(base: str, token: str, count: int) -> list[str]:
    ids = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n in range(count):
            body = {
                "channel": "web",
                "currency": "EUR",
                "customer": {"id": f"cus_{n}", "email": f"c{n}@example.com"},
                "shipping_address": {
                    "name": "Customer",
                    "lines": ["Unter den Linden 1"],
                    "city": "Berlin",
                    "postal_code": "10117",
                    "country": "DE",
                },
                "payment_method": "card",
                "shipping_fee": 0,
                "lines": [{"sku": "SKU-00001", "quantity": 1, "unit_price": 1000}],
            }
            resp = await client.post(
                "/v1/orders", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            resp.raise_for_status()
            ids.append(resp.json()["id"])
    return ids


class Client:
    """A keep-alive HTTP/1.1 connection used as a pooled client uses it (httpx, aiohttp...):
    reused while idle for less than ``expiry`` seconds and not closed by the server (checked
    before each reuse, like httpcore's readability check), else replaced by a new one."""

    def __init__(self, host: str, port: int, expiry: float) -> None:
        self.host, self.port, self.expiry = host, port, expiry
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = 0.0
        self.reconnects = 0

    def _usable(self) -> bool:
        if self.writer is None or self.reader is None:
            return False
        if time.monotonic() - self.idle_since >= self.expiry:
            return False
        if self.reader.at_eof() or self.writer.is_closing():
            return False
        # readable while idle: the server closed it (its FIN is in)
        poller = select.poll()
        poller.register(self.writer.get_extra_info("socket").fileno(), select.POLLIN)
        return not poller.poll(0)

    async def get(self, head: bytes) -> tuple[int, bytes]:
        if not self._usable():
            self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.reconnects += 1
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(head)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lower = raw.lower()
        i = lower.find(b"\r\ncontent-length:")
        length = int(raw[i + 17 : lower.find(b"\r\n", i + 2)])
        body = await self.reader.readexactly(length)
        self.idle_since = time.monotonic()
        if b"\r\nconnection: close" in lower:
            self.close()
        return int(raw[9:12]), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(
    host: str, port: int, token: str, order_ids: list[str], requests: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    probe_s = CLIENT_EXPIRY_S - PROBE_MARGIN_S
    sent = bursts = 0
    pool = [Client(host, port, CLIENT_EXPIRY_S) for _ in range(64)]
    heads = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        for path in [*(f"/v1/orders/{oid}" for oid in order_ids), *["/healthz"] * 80]
    ]
    started = time.monotonic()

    async def worker(count: int) -> None:
        client = pool.pop()  # most recently used first, as httpx does
        try:
            await worker_on(client, count)
        finally:
            pool.append(client)

    async def probe(client: Client) -> None:
        """One request on an idle connection at the last moment the client still reuses it."""
        if client.writer is None:
            return
        await asyncio.sleep(max(0.0, client.idle_since + probe_s - time.monotonic()))
        await worker_on(client, 1)

    async def worker_on(client: Client, count: int) -> None:
        for _ in range(count):
            try:
                status, body = await client.get(rng.choice(heads))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                outcomes["dropped"] += 1
                errors[type(exc).__name__] += 1
                client.close()
                continue
            outcomes[str(status)] += 1
            if status >= 500:
                codes[body[:200].decode(errors="replace")] += 1

    while sent < requests:
        clients = rng.choice((8, 16, 32, 64))
        burst = min(requests - sent, rng.randint(2_000, 8_000))
        per = [burst // clients + (1 if i < burst % clients else 0) for i in range(clients)]
        await asyncio.gather(*(worker(c) for c in per))
        sent += burst
        bursts += 1
        log(f"{sent} requests, {clients} clients in the last burst, {dict(outcomes)}")
        if sent < requests:  # the pause: every idle connection is reused at the last moment
            probes = [c for c in pool if c.writer is not None]
            await asyncio.gather(*(probe(c) for c in probes))
            sent += len(probes)
    for client in pool:
        client.close()
    return {
        "requests": sent,
        "bursts": bursts,
        "connections_opened": sum(c.reconnects for c in pool),
        "wall_s": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes),
        "dropped": outcomes["dropped"],
        "dropped_by_error": dict(errors),
        "server_errors": sum(v for k, v in outcomes.items() if k.startswith("5")),
        "server_error_bodies": dict(codes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a Postgres server to create a fresh database on")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workers", type=int, help="oms worker processes (default: oms's own)")
    parser.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for oms")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--output", default=str(RESULTS / "keepalive.json"))
    args = parser.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.server_env)
    with database(args.database_url, keep=False) as db:
        from oms.schema import upgrade_head

        upgrade_head(db.sqlalchemy_url)
        keys = asyncio.run(create_keys(db.sqlalchemy_url))
        workdir = Path(tempfile.mkdtemp(prefix="oms-keepalive-"))
        server = Server(db.sqlalchemy_url, args.workers, env, workdir)
        try:
            server.wait_ready()
            create_warehouses(server.base, keys["admin"])
            asyncio.run(load_stock(db.dsn, expected_units=10_000, flash={}))
            order_ids = asyncio.run(_place_orders(server.base, keys["storefront"], 20))
            log(f"oms on port {server.port}; {len(order_ids)} orders to read")
            result = _run(
                drive(
                    "127.0.0.1",
                    server.port,
                    keys["storefront"],
                    order_ids,
                    args.requests,
                    args.seed,
                )
            )
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    result |= {"command": " ".join(["bench/keepalive.py", *(argv or sys.argv[1:])])}
    result |= {"server_env": env, "probe_idle_s": CLIENT_EXPIRY_S - PROBE_MARGIN_S}
    print(json.dumps(result, indent=2))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["dropped"] or result["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
