"""The embedded PostgreSQL launcher against real PostgreSQL binaries (no mocks)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from oms.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_bin_dirs, temp_data_dir

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="the privilege drop only happens as root")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = temp_data_dir()
    yield path
    EmbeddedPostgres(path).stop()  # in case a test failed with the server up
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A fresh mkdtemp directory (mode 0700, owned by whoever runs the tests)."""
    path = Path(tempfile.mkdtemp(prefix="oms-pg-", dir="/tmp"))
    yield path
    EmbeddedPostgres(path / "pgdata").stop()
    shutil.rmtree(path, ignore_errors=True)


def _process_user(pid: int) -> str:
    out = subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.strip()


def _modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in paths}


async def test_data_survives_a_restart(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir)
    pg.start()
    conn = await asyncpg.connect(pg.dsn)
    try:
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text NOT NULL)")
        await conn.execute("INSERT INTO kept VALUES (1, 'survives')")
    finally:
        await conn.close()
    pg.stop()
    assert pg.postmaster_pid is None

    again = EmbeddedPostgres(data_dir)
    assert again.start() == pg.url
    conn = await asyncpg.connect(again.dsn)
    try:
        assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == "survives"
    finally:
        await conn.close()
    again.stop()


async def test_sqlalchemy_url_reaches_the_database_with_our_settings(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir, database="orders_db") as pg:
        assert pg.url.startswith("postgresql+asyncpg://postgres@/orders_db?host=/")
        engine = create_async_engine(pg.url)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT current_database(), current_setting('max_connections'), "
                            "current_setting('listen_addresses'), current_setting('fsync'), "
                            "current_setting('TimeZone'), "
                            "pg_encoding_to_char(encoding) FROM pg_database "
                            "WHERE datname = current_database()"
                        )
                    )
                ).one()
        finally:
            await engine.dispose()
    assert tuple(row) == ("orders_db", "200", "", "on", "UTC", "UTF8")


def test_start_and_stop_are_idempotent(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir)
    url = pg.start()
    pid = pg.postmaster_pid
    assert pid is not None
    assert pg.start() == url
    assert pg.postmaster_pid == pid

    # A second launcher on the same directory adopts the running server (pg_ctl status).
    other = EmbeddedPostgres(data_dir)
    assert other.start() == url
    assert other.postmaster_pid == pid

    pg.stop()
    assert pg.postmaster_pid is None
    pg.stop()
    other.stop()
    _wait_gone(pid, zombie_ok=True)  # some container inits reap orphans only every few seconds


def test_concurrent_first_starts_share_one_server(data_dir: Path) -> None:
    launchers = [EmbeddedPostgres(data_dir) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        urls = list(pool.map(lambda pg: pg.start(), launchers))
    assert len(set(urls)) == 1
    assert len({pg.postmaster_pid for pg in launchers}) == 1
    launchers[0].stop()


SYSTEM_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.mark.skipif(not SYSTEM_BIN_DIRS, reason="no system PostgreSQL in /usr/lib/postgresql")
async def test_system_binaries_can_be_chosen(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = SYSTEM_BIN_DIRS[-1]
    monkeypatch.setenv("OMS_PG_BINDIR", str(bin_dir))
    with EmbeddedPostgres(data_dir) as pg:
        conn = await asyncpg.connect(pg.dsn)
        try:
            version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
        finally:
            await conn.close()
    assert version // 10000 == int(bin_dir.parent.name)


async def test_a_killed_server_is_recovered(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir)
    pg.start()
    pid = pg.postmaster_pid
    assert pid is not None
    _kill_server_hard(pid)
    assert (data_dir / "postmaster.pid").exists()  # left behind, as after a crash

    pg.start()
    assert pg.postmaster_pid not in (None, pid)
    conn = await asyncpg.connect(pg.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    pg.stop()


def _kill_server_hard(pid: int) -> None:
    """SIGKILL the postmaster, then wait until it and its children are gone."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    os.kill(pid, signal.SIGKILL)
    for process in [pid, *map(int, children.stdout.split())]:
        _wait_gone(process)


def _wait_gone(pid: int, *, zombie_ok: bool = False, timeout: float = 30) -> None:
    """Wait until ``pid`` is gone: exited and reaped by init, or just exited if ``zombie_ok``."""
    deadline = time.monotonic() + timeout
    while True:
        ps = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        state = ps.stdout.strip()
        if not state or (zombie_ok and state.startswith("Z")):
            return
        assert time.monotonic() < deadline, f"process {pid} still exists ({state})"
        time.sleep(0.05)


def test_too_long_socket_path_is_refused_before_touching_the_disk() -> None:
    long_dir = Path("/tmp") / ("oms-" + "x" * 90) / "pgdata"
    with pytest.raises(EmbeddedPostgresError, match="OMS_DATA_DIR"):
        EmbeddedPostgres(long_dir).start()
    assert not long_dir.parent.exists()


@root_only
def test_as_root_the_server_runs_unprivileged_and_only_the_data_dir_changes(
    private_dir: Path,
) -> None:
    private_dir.chmod(0o755)  # the test's own directory: make it enterable for `nobody`
    data = private_dir / "pgdata"
    watched = [*data.parents]
    for bin_dir in find_bin_dirs():
        watched += [*bin_dir.parents, bin_dir, bin_dir / "postgres"]
    before = _modes(watched)

    pg = EmbeddedPostgres(data)
    pg.start()
    try:
        pid = pg.postmaster_pid
        assert pid is not None
        assert _process_user(pid) == "nobody"
        nobody = pwd.getpwnam("nobody")
        assert (data.stat().st_uid, data.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert _modes(watched) == before
    finally:
        pg.stop()
    assert _modes(watched) == before


@root_only
def test_as_root_an_unreachable_parent_is_refused_with_a_clear_message(
    private_dir: Path,
) -> None:
    mode = private_dir.stat().st_mode
    assert stat.S_IMODE(mode) == 0o700
    data = private_dir / "pgdata"
    with pytest.raises(EmbeddedPostgresError) as info:
        EmbeddedPostgres(data).start()
    message = str(info.value)
    assert f"cannot enter {private_dir}," in message
    assert "'nobody'" in message
    assert "OMS_DATA_DIR" in message
    assert private_dir.stat().st_mode == mode
    assert not data.exists()


@root_only
def test_as_root_an_unknown_server_user_is_refused(data_dir: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match="does not exist; set OMS_PG_USER"):
        EmbeddedPostgres(data_dir, run_as="oms-no-such-user").start()
