"""Database hang: PostgreSQL stops answering (SIGSTOP, not killed) for a few seconds under load.

A hung database is worse than a dead one: connections stay open, nothing is refused, every
round trip just never comes back. While it hangs, every request ends within the configured
bound (`Settings.db_request_bound_s`: pool wait + connect + one command) with a 503
`database_unavailable` problem and Retry-After, never a 500. Once it resumes, the same
`oms serve` process answers every request again within seconds: each connection that saw a
timeout was discarded, so none comes back out of step with its server session (a stale
transaction, a savepoint that does not exist, an aborted transaction).

Only a private embedded cluster is paused: its postmaster (found through its data directory)
and every process it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.config import Settings
from oms.db import create_engine, create_sessionmaker, driver_connection
from oms.embedded import EmbeddedPostgres, temp_data_dir
from oms.schema import upgrade_head
from oms.shared.roles import Role
from tests.helpers import assert_stock_invariants, auth, make_key, order_body, stock
from tests.reliability.conftest import Server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

CLIENTS = 16
SKUS = [f"HANG-{i:02}" for i in range(CLIENTS)]  # a SKU and a customer per client: no lock
# waits on a hot stock row or customer total, which would end in 503s of their own
SETTINGS = Settings(  # small, so that the hang outlasts every one of them
    db_pool_timeout_s=1.0,
    db_connect_timeout_s=1.0,
    db_command_timeout_s=1.5,
    db_statement_timeout_ms=1000,
)
TIMEOUTS = {
    f"OMS_{name.upper()}": str(getattr(SETTINGS, name))
    for name in (
        "db_pool_timeout_s",
        "db_connect_timeout_s",
        "db_command_timeout_s",
        "db_statement_timeout_ms",
    )
}
BOUND_S = SETTINGS.db_request_bound_s  # 3.5 s
SLACK_S = 1.0  # scheduling on a busy 2-CPU machine (client, server and Postgres share it)
HANG_S = 6.0
SETTLE_S = 2.0  # after resuming, requests started this much later must all succeed
AFTER_S = 5.0  # load kept up after resuming


@dataclass
class Sample:
    started: float
    elapsed: float
    path: str
    status: int  # 0: the connection to oms itself failed
    code: str | None
    retry_after: str | None

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


@pytest.fixture
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    """A private Postgres this test may pause (never the machine's shared one)."""
    data_dir = temp_data_dir(prefix="oms-hang-")
    pg = EmbeddedPostgres(data_dir)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4: ppid
            out.append(int(entry.name))
    return out


class Pause:
    """SIGSTOP / SIGCONT for every process of one private cluster."""

    def __init__(self, pg: EmbeddedPostgres) -> None:
        pid = pg.postmaster_pid
        assert pid is not None, "the private Postgres is not running"
        # the postmaster runs in its data directory: make sure it is ours
        assert Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == pg.data_dir.resolve()
        self.postmaster = pid
        self.stopped: list[int] = []

    def stop(self) -> None:
        os.kill(self.postmaster, signal.SIGSTOP)  # first: it forks no one while stopped
        self.stopped = [self.postmaster]
        for child in _children(self.postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
                self.stopped.append(child)

    def resume(self) -> None:
        for pid in [*reversed(self.stopped), *_children(self.postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped = []


async def _load(
    base: str, token: str, stop: asyncio.Event, samples: list[Sample], placed: list[str]
) -> None:
    """CLIENTS clients placing an order and reading it back, one polling /readyz, until stop."""

    async def call(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
        started = time.monotonic()
        try:
            resp = await client.request(method, path, **kw)
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
            samples.append(Sample(started, time.monotonic() - started, path, 0, error, None))
            await asyncio.sleep(0.05)
            return None
        elapsed = time.monotonic() - started
        problem = resp.headers.get("content-type") == "application/problem+json"
        code = resp.json().get("code") if problem else None
        retry_after = resp.headers.get("retry-after")
        samples.append(Sample(started, elapsed, path, resp.status_code, code, retry_after))
        if resp.status_code == 503:
            await asyncio.sleep(0.1)  # a polite client waits (less than Retry-After, to probe)
        return resp

    async def client_loop(client: httpx.AsyncClient, sku: str) -> None:
        body = order_body(
            customer={"id": f"cus_{sku}"}, lines=[{"sku": sku, "quantity": 1, "unit_price": 850}]
        )
        while not stop.is_set():
            resp = await call(client, "POST", "/v1/orders", json=body)
            if resp is not None and resp.status_code == 201:
                placed.append(resp.json()["id"])
                await call(client, "GET", f"/v1/orders/{placed[-1]}")

    async def prober(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            await call(client, "GET", "/readyz")
            await call(client, "GET", "/healthz")
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=CLIENTS + 2)
    timeout = httpx.Timeout(BOUND_S * 4)
    async with httpx.AsyncClient(
        base_url=base, headers=auth(token), timeout=timeout, limits=limits
    ) as client:
        await asyncio.gather(*(client_loop(client, sku) for sku in SKUS), prober(client))


async def test_a_hung_database_gives_bounded_503s_then_every_request_succeeds(
    embedded_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = embedded_pg.url
    await asyncio.to_thread(upgrade_head, url)
    engine = create_engine(Settings(database_url=url), url)
    try:
        sessionmaker = create_sessionmaker(engine)
        token = await make_key(sessionmaker, Role.ADMIN)
        levels = dict.fromkeys(SKUS, 1_000_000)
        await stock(sessionmaker, "BER", levels, latitude=52.52, longitude=13.4)
    finally:
        await engine.dispose()

    server = Server(url, log_path=tmp_path / "serve.log", env=TIMEOUTS)
    await asyncio.to_thread(server.start)
    pause = Pause(embedded_pg)
    samples: list[Sample] = []
    placed: list[str] = []
    stop = asyncio.Event()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        load = asyncio.create_task(_load(server.base, token, stop, samples, placed))
        await asyncio.sleep(1.5)  # healthy
        hung_at = time.monotonic()
        pause.stop()
        await asyncio.sleep(HANG_S)
        pause.resume()
        resumed_at = time.monotonic()
        await asyncio.sleep(AFTER_S)
        stop.set()
        await asyncio.wait_for(load, timeout=BOUND_S * 5)
        assert server.proc.poll() is None and server.proc.pid == pid, "oms serve restarted"
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as client:
            final = await client.get("/readyz")
        # every transaction oms began has ended on the server too: none left open by a
        # connection that went back to the pool out of step with its session
        await asyncio.sleep(0.5)
        engine = create_engine(Settings(database_url=url), url)
        try:
            async with engine.connect() as conn:
                open_transactions = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'oms' AND state LIKE 'idle in transaction%' AND pid <> "
                            "pg_backend_pid()"
                        )
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
    finally:
        pause.resume()
        stop.set()
        server.stop()

    log = server.tail(400_000)
    errors = [
        json.loads(line).get("exc", "")[-1500:]
        for line in log.splitlines()
        if '"level": "error"' in line
    ]
    api = [s for s in samples if s.path != "/healthz"]
    after = [s for s in api if s.started >= resumed_at]
    failed_after = [s for s in after if s.status not in (200, 201, 503)]
    slowest = max(samples, key=lambda s: s.elapsed)
    summary = (
        f"{len(samples)} requests; {sum(s.status == 503 for s in api)} x 503, "
        f"{sum(s.status >= 500 and s.status != 503 for s in api)} x 5xx other than 503; "
        f"after resuming: {len(failed_after)}/{len(after)} failed "
        f"({100 * len(failed_after) / max(1, len(after)):.0f}%); "
        f"slowest {slowest.elapsed:.2f}s (bound {BOUND_S:.1f}s + {SLACK_S:.1f}s)"
    )
    print(summary)  # for -s
    timeline = "\n".join(  # what did not succeed, in seconds since the hang began
        f"{s.started - hung_at:+6.2f}s {s.elapsed:5.2f}s {s.status} {s.code} {s.path}"
        for s in sorted(samples, key=lambda s: s.started)
        if s.status not in (200, 201)
    )
    report = (
        f"{summary}; hung for {resumed_at - hung_at:.2f}s\n{timeline[-6000:]}\n"
        f"{len(errors)} errors logged, last ones:\n" + "\n--\n".join(errors[-3:])
    )

    assert final.status_code == 200, f"{final.text}\n{report}"
    dropped = [s for s in samples if s.status == 0]
    assert not dropped, f"oms dropped connections: {dropped[:3]}\n{report}"
    bad = [s for s in samples if s.status not in (200, 201, 503)]
    assert not bad, f"unexpected answers: {bad[:5]}\n{report}"
    assert not errors, report
    unavailable = [s for s in samples if s.status == 503]
    # in flight: the database's own failure; still waiting their turn (oms.shared.admission)
    # when that did not move for the pool timeout: server_busy; both with Retry-After
    assert all(s.code in ("database_unavailable", "server_busy") for s in unavailable), unavailable[
        :5
    ]
    assert any(s.code == "database_unavailable" for s in unavailable), unavailable[:5]
    assert all(s.retry_after and s.retry_after.isdigit() for s in unavailable), unavailable[:5]
    assert all(s.status == 200 for s in samples if s.path == "/healthz"), "liveness failed"
    late = [s for s in samples if s.elapsed > BOUND_S + SLACK_S]
    assert not late, f"blocked beyond the bound: {late[:5]}\n{report}"

    before = [s for s in api if s.ended < hung_at]
    assert before and all(s.status in (200, 201) for s in before), report
    during = [s for s in api if hung_at <= s.started and s.ended <= resumed_at]
    assert any(s.path == "/readyz" for s in during), "readyz stayed ready"
    assert any(s.path.startswith("/v1/") for s in during), "no API answer while hung"
    assert all(s.status == 503 for s in during), [s for s in during if s.status != 503][:5]
    settled = [s for s in api if s.started >= resumed_at + SETTLE_S]
    assert settled, report
    assert all(s.status in (200, 201) for s in settled), (
        [s for s in settled if s.status not in (200, 201)][:5],
        report,
    )
    assert open_transactions == 0, f"{open_transactions} transactions left open on the server"

    # every order acknowledged is there, and stock is consistent after the hang
    engine = create_engine(Settings(database_url=url), url)
    try:
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    text("SELECT count(*) FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": placed},
                )
            ).scalar_one()
        assert placed and stored == len(placed), f"{len(placed) - stored} acknowledged orders lost"
        await assert_stock_invariants(engine)
    finally:
        await engine.dispose()


async def _sleep(session: AsyncSession, *, via_driver: bool) -> None:
    if via_driver:
        await (await driver_connection(session)).execute("SELECT pg_sleep(3)")
    else:
        await session.execute(text("SELECT pg_sleep(3)"))


async def test_a_round_trip_that_times_out_discards_its_connection(database_url: str) -> None:
    """The mechanism alone: a statement the client stops waiting for (command timeout, well
    under the server's statement timeout) ends in OperationalError with the connection
    invalidated, whether sent through SQLAlchemy or the driver; the pool's only connection is
    replaced, and the next transaction on it is a clean one."""
    settings = Settings(
        database_url=database_url,
        db_pool_size=1,
        db_command_timeout_s=0.3,
        db_statement_timeout_ms=10_000,
    )
    engine = create_engine(settings)
    maker = create_sessionmaker(engine)
    try:
        for via_driver in (False, True):
            async with maker() as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                started = time.monotonic()
                with pytest.raises(OperationalError) as caught:
                    await _sleep(session, via_driver=via_driver)
                assert caught.value.connection_invalidated
                assert time.monotonic() - started < 1.5
            async with maker() as session:
                assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
                driver = await driver_connection(session)
                assert await driver.fetchval("SELECT count(*) FROM pg_stat_activity") > 0
                await session.commit()
    finally:
        await engine.dispose()
