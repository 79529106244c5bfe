"""Load generator process for ``bench/load.py``: drives one scenario at one concurrency level
over HTTP/1.1 keep-alive and prints the results as JSON on stdout.

Reads its spec (JSON) from stdin. It is a deliberately lean client (raw asyncio streams on
uvloop, request bodies encoded before the clock starts) because it shares the CPUs with the
server and the database; its own CPU use is measured and reported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import resource
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

from _common import (
    CpuProbe,
    cumulative,
    dumps,
    latency_summary,
    order_body,
    postgres_pids,
    process_tree,
    zipf_weights,
)


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i < 0:
            raise HttpError("response without Content-Length")
        j = lower.find(b"\r\n", i + 2)
        length = int(raw[i + 17 : j])
        payload = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in lower:
            await self.close()
        return status, payload


def _head(method: str, path: str, host: str, token: str, extra: str = "", length: int = 0) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}"]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter[str]] = defaultdict(Counter)
        self.codes: dict[str, Counter[str]] = defaultdict(Counter)
        self.recording = False

    def add(self, op: str, started: float, done: float, status: int, payload: bytes) -> None:
        if not self.recording:
            return
        self.latency[op].append(done - started)
        self.status[op][str(status)] += 1
        if status >= 400:
            try:
                code = json.loads(payload).get("code", "?")
            except ValueError:
                code = "unparsable"
            self.codes[op][str(code)] += 1

    def error(self, op: str, exc: BaseException) -> None:
        if self.recording:
            self.status[op]["transport_error"] += 1
            self.codes[op][type(exc).__name__] += 1

    def summary(self, wall_s: float) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        for op in sorted(set(self.latency) | set(self.status)):
            statuses = self.status[op]
            ops[op] = {
                "count": sum(statuses.values()),
                "per_s": round(sum(statuses.values()) / wall_s, 1),
                "status": dict(statuses),
                "error_codes": dict(self.codes[op]),
                **latency_summary(self.latency[op]),
            }
        return ops


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    hostport = f"{host}:{port}"
    conc = int(spec["concurrency"])
    scenario = spec["scenario"]
    rng = random.Random(spec.get("seed", 1))
    token, admin = spec["token"], spec["admin_token"]
    prefix = spec["key_prefix"]
    cum = cumulative(zipf_weights())

    # Encode request bodies before the clock starts.
    if scenario == "flash":
        bodies = [
            dumps(
                order_body(
                    rng,
                    cum,
                    fixed_lines=[{"sku": spec["flash_sku"], "quantity": 1, "unit_price": 4999}],
                )
            )
            for _ in range(1000)
        ]
    else:
        bodies = [dumps(order_body(rng, cum)) for _ in range(3000)]
    counter = 0
    rec = Recorder()
    conns = [Connection(host, port) for _ in range(conc)]
    await asyncio.gather(*(c.open() for c in conns))

    async def place(conn: Connection) -> tuple[int, bytes]:
        nonlocal counter
        counter += 1
        body = bodies[counter % len(bodies)]
        head = _head(
            "POST", "/v1/orders", hostport, token, f"Idempotency-Key: {prefix}-{counter}", len(body)
        )
        return await conn.request(head, body)

    placed: deque[str] = deque(maxlen=20_000)
    unpaid: deque[str] = deque(maxlen=20_000)
    avail_skus = [f"SKU-{i:05d}" for i in range(1, 200)]
    pay_body = b'{"to":"paid","reason":"captured"}'

    async def mixed_op(conn: Connection) -> tuple[str, int, bytes]:
        r = rng.random()
        if r < 0.50 or not placed:
            status, payload = await place(conn)
            if status == 201:
                oid = json.loads(payload)["id"]
                placed.append(oid)
                unpaid.append(oid)
            return "place", status, payload
        if r < 0.75:
            oid = placed[rng.randrange(len(placed))]
            head = _head("GET", f"/v1/orders/{oid}", hostport, token)
            return ("get_order", *await conn.request(head))
        if r < 0.90:
            skus = "&".join(f"sku={s}" for s in rng.sample(avail_skus, 3))
            head = _head("GET", f"/v1/inventory/availability?{skus}", hostport, token)
            return ("availability", *await conn.request(head))
        if not unpaid:
            return ("get_order", *await conn.request(_head("GET", "/healthz", hostport, token)))
        oid = unpaid.popleft()
        head = _head("POST", f"/v1/orders/{oid}/transitions", hostport, admin, "", len(pay_body))
        return ("transition", *await conn.request(head, pay_body))

    first_201: list[float] = []
    last_201: list[float] = []
    remaining = [int(spec.get("requests", 0))]

    async def worker(conn: Connection, deadline: float) -> None:
        while True:
            now = time.perf_counter()
            if scenario == "flash":
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            elif now >= deadline:
                return
            try:
                if scenario == "mixed":
                    op, status, payload = await mixed_op(conn)
                else:
                    op = "place"
                    status, payload = await place(conn)
            except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                rec.error("place", exc)
                await conn.close()
                continue
            done = time.perf_counter()
            rec.add(op, now, done, status, payload)
            if status == 201 and op == "place":
                if not first_201:
                    first_201.append(now)
                last_201[:] = [done]

    cpu_spec = spec.get("cpu") or {}
    groups: dict[str, Callable[[], list[int]]] = {}
    if cpu_spec.get("server_pid"):
        groups["server"] = functools.partial(process_tree, int(cpu_spec["server_pid"]))
    if cpu_spec.get("postmaster_pid"):
        groups["postgres"] = functools.partial(
            postgres_pids, int(cpu_spec["postmaster_pid"]), cpu_spec["database"]
        )
    probe = CpuProbe(groups)

    warmup = float(spec.get("warmup_s", 0))
    duration = float(spec.get("duration_s", 0))
    t0 = time.perf_counter()
    if warmup > 0 and scenario != "flash":
        await asyncio.gather(*(worker(c, t0 + warmup) for c in conns))
    rec.recording = True
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    probe.start()
    start = time.perf_counter()
    await asyncio.gather(*(worker(c, start + duration) for c in conns))
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = probe.stop(wall)
    cpu["client_cores"] = round(
        (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / wall, 2
    )
    await asyncio.gather(*(c.close() for c in conns))
    ops = rec.summary(wall)
    placed_ok = ops.get("place", {}).get("status", {}).get("201", 0)
    out: dict[str, Any] = {
        "scenario": scenario,
        "concurrency": conc,
        "wall_s": round(wall, 3),
        "orders": placed_ok,
        "orders_per_s": round(placed_ok / wall, 1),
        "ops_per_s": round(sum(o["count"] for o in ops.values()) / wall, 1),
        "ops": ops,
        "cpu": cpu,
    }
    if scenario == "flash" and first_201:
        sell_s = last_201[0] - start
        out["sell_out_s"] = round(sell_s, 3)
        out["orders_per_s"] = round(placed_ok / sell_s, 1) if sell_s > 0 else None
    return out


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the bench runs in the project venv
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
