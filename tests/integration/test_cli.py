"""The `oms` command as operators run it: CSV import, API keys, and `oms serve` on an embedded
Postgres (the README's run command path) in a scratch folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.cli import read_stock_csv
from tests.helpers import order_body

OMS = [sys.executable, "-m", "oms.cli"]


def _run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        OMS + args,
        env=os.environ | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_csv_errors_name_line_and_column(tmp_path: Path) -> None:
    cases = {
        "warehouse,sku\nBER,A\n": "line 1: missing columns ['on_hand']",
        "warehouse,sku,on_hand\nBER,A,5\nBER,B,five\n": "line 3, column on_hand: 'five'",
        "warehouse,sku,on_hand\nBER,A,-1\n": "line 2, column on_hand: must not be negative",
        "warehouse,sku,on_hand\n,A,1\n": "line 2, column warehouse: empty",
        "warehouse,sku,on_hand,colour\nBER,A,1,red\n": "unknown columns ['colour']",
        "warehouse,sku,on_hand\n": "no rows",
    }
    for content, message in cases.items():
        path = tmp_path / "stock.csv"
        path.write_text(content)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            read_stock_csv(path)


async def test_csv_import_all_or_nothing(
    tmp_path: Path, clean_db: AsyncEngine, migrated: str
) -> None:
    insert = (
        "INSERT INTO warehouses (id, code, name, country, priority, is_pickup_store, active) "
        "VALUES (gen_random_uuid(), 'BER', 'Berlin', 'DE', 1, false, true)"
    )
    async with clean_db.begin() as conn:
        await conn.execute(text(insert))
    env = {"OMS_DATABASE_URL": migrated}
    bad = tmp_path / "bad.csv"
    bad.write_text("warehouse,sku,on_hand\nBER,A,5\nNOPE,B,3\n")
    result = _run(["inventory", "import", str(bad)], env)
    assert result.returncode == 1
    assert "line 3, column warehouse" in result.stderr
    good = tmp_path / "good.csv"
    good.write_text("warehouse,sku,on_hand,reorder_point\nBER,A,5,2\nBER,B,3,\n")
    async with clean_db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM stock_levels"))).scalar_one() == 0
    result = _run(["inventory", "import", str(good)], env)
    assert result.returncode == 0, result.stderr
    async with clean_db.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT sku, on_hand, reorder_point FROM stock_levels ORDER BY sku")
            )
        ).all()
        ledger = (
            await conn.execute(text("SELECT sum(quantity) FROM inventory_movements"))
        ).scalar_one()
    assert [tuple(r) for r in rows] == [("A", 5, 2), ("B", 3, None)]
    assert ledger == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = os.environ | {"OMS_PORT": str(port), "OMS_WORKERS": "1"}
    env.pop("OMS_DATABASE_URL", None)
    proc = subprocess.Popen(
        OMS + ["serve"], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("oms serve did not become ready")
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_serve_with_embedded_postgres_survives_restart() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="oms-cli-"))
    workdir.chmod(0o755)  # our own scratch folder; the unprivileged Postgres user must enter it
    try:
        port = _free_port()
        with _serving(workdir, port):
            created = _run(["apikey", "create", "--name", "ci", "--role", "admin"], {}, cwd=workdir)
            assert created.returncode == 0, created.stderr
            token = json.loads(created.stdout)["key"]
            headers = {"Authorization": f"Bearer {token}"}
            base = f"http://127.0.0.1:{port}"
            wh = {
                "code": "BER",
                "name": "Berlin",
                "country": "DE",
                "latitude": 52.5,
                "longitude": 13.4,
            }
            assert httpx.post(f"{base}/v1/warehouses", json=wh, headers=headers).status_code == 201
            adj = {"warehouse": "BER", "sku": "MUG-01", "type": "receive", "quantity": 5}
            assert (
                httpx.post(
                    f"{base}/v1/inventory/adjustments", json=adj, headers=headers
                ).status_code
                == 201
            )
            body = order_body(lines=[{"sku": "MUG-01", "quantity": 2, "unit_price": 850}])
            order = httpx.post(f"{base}/v1/orders", json=body, headers=headers)
            assert order.status_code == 201, order.text
        assert (workdir / ".oms" / "pgdata" / "PG_VERSION").is_file()
        with _serving(workdir, port):  # data kept across restarts
            got = httpx.get(f"{base}/v1/orders/{order.json()['id']}", headers=headers)
            assert got.status_code == 200
            assert got.json()["routed_to"] == ["BER"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
