"""`oms serve` as operators run it, process by process: every uvicorn worker process writes the
JSON access line, and a stop signal (SIGTERM or SIGINT, one worker or several) stops everything
`oms serve` started, the embedded Postgres last and cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oms.embedded import EmbeddedPostgres, find_bin_dirs
from tests.reliability.conftest import OMS, Server, free_port


def _access_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for raw in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(raw)
            if isinstance(entry, dict) and entry.get("logger") == "oms.access":
                lines.append(entry)
    return lines


def test_every_worker_process_writes_the_access_line(migrated: str, tmp_path: Path) -> None:
    # two worker processes: uvicorn spawns both, so neither inherits the parent's logging set-up
    server = Server(
        migrated,
        log_path=tmp_path / "serve.log",
        env={"OMS_WORKERS": "2", "OMS_DATA_DIR": str(tmp_path / "data")},
    ).start()
    try:
        sent = [f"access-{n:02d}" for n in range(16)]
        for rid in sent:  # a new connection each time: the kernel spreads them over the workers
            resp = httpx.get(f"{server.base}/healthz", headers={"X-Request-ID": rid}, timeout=5)
            assert resp.status_code == 200
            assert resp.headers["x-request-id"] == rid
    finally:
        server.stop()
    lines = _access_lines(server.tail(1_000_000))
    logged = {str(e.get("request_id")) for e in lines}
    missing = [rid for rid in sent if rid not in logged]
    assert not missing, f"no access line for {missing}; log:\n{server.tail()}"
    first = next(e for e in lines if e.get("request_id") == sent[0])
    assert first["path"] == "/healthz" and first["status"] == 200 and first["level"] == "info"


def _server_connections(port: int, state: str = "01") -> Counter[int]:
    """Sockets on the server side of ``port`` in ``state`` (01: established, 0A: listening),
    per process id (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, inode = fields[1], fields[9]
                if fields[3] == state and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    owners: Counter[int] = Counter()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    owners[int(proc.name)] += 1
    return owners


def test_connections_opened_at_once_are_spread_over_the_workers(
    migrated: str, tmp_path: Path
) -> None:
    """uvicorn's shared listening socket let the first worker to wake accept every waiting
    connection (30 of 32 on one of two workers, measured): each worker now listens on a socket
    of its own (SO_REUSEPORT) and the kernel spreads the connections."""
    server = Server(
        migrated,
        log_path=tmp_path / "serve.log",
        env={"OMS_WORKERS": "2", "OMS_DATA_DIR": str(tmp_path / "data")},
    ).start()
    conns: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30  # both workers listening (the parent holds both too)
        while len(_server_connections(server.port, "0A")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
        for c in conns:  # each answered: accepted by some worker, kept alive
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: oms\r\n\r\n")
        for c in conns:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        owners = _server_connections(server.port)
        assert sum(owners.values()) == 32, owners
        assert len(owners) == 2 and min(owners.values()) >= 4, owners
    finally:
        for c in conns:
            c.close()
        server.stop()


# ---- stop signals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One scratch folder (and so one embedded cluster) for every signal case: initdb once."""
    path = Path(tempfile.mkdtemp(prefix="oms-sig-"))
    path.chmod(0o755)  # the unprivileged Postgres user (when root) must enter it
    try:
        yield path
    finally:
        EmbeddedPostgres(path / ".oms" / "pgdata").stop()  # in case a case failed
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (by parent pid), with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                with contextlib.suppress(OSError):
                    raw = Path(f"/proc/{child}/cmdline").read_bytes()
                    found[child] = raw.replace(b"\0", b" ").decode(errors="replace")
                    frontier.append(child)
    return found


def _cluster_state(data_dir: Path) -> str:
    bin_dir = next(find_bin_dirs())
    out = subprocess.run(
        [str(bin_dir / "pg_controldata"), str(data_dir)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"},
        check=False,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Database cluster state:"):
            return line.split(":", 1)[1].strip()
    return f"unknown: {out!r}"


def _serve(workdir: Path, log_path: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "OMS_PORT": str(port),
        "OMS_WORKERS": str(workers),
        "OMS_SERVE_WORKER": "true",  # as scripts/serve runs it: the relay beside the API
        "OMS_DATA_DIR": str(workdir / ".oms"),
        "OMS_WORKER_POLL_INTERVAL_S": "0.2",
    }
    for name in ("OMS_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            OMS + ["serve"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _assert_all_stopped(started: dict[int, str], data_dir: Path, why: str) -> None:
    deadline = time.monotonic() + 5  # a just-killed child may take a moment to go
    while time.monotonic() < deadline and any(_alive(p) for p in started):
        time.sleep(0.1)
    survivors = {p: cmd for p, cmd in started.items() if _alive(p)}
    assert not survivors, f"still running after {why}: {survivors}"
    assert _cluster_state(data_dir) == "shut down"
    assert not (data_dir / "postmaster.pid").exists()


def _clean_up(proc: subprocess.Popen[bytes], started: dict[int, str], data_dir: Path) -> None:
    """Leave nothing behind, whatever a test's outcome."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in started:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    EmbeddedPostgres(data_dir).stop()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_everything_serve_started(
    workdir: Path, signum: signal.Signals, workers: int
) -> None:
    port = free_port()
    data_dir = workdir / ".oms" / "pgdata"
    log_path = workdir / f"serve-{signum.name}-{workers}.log"
    proc = _serve(workdir, log_path, port, workers)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-4000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not ready: {log_path.read_text(errors='replace')[-4000:]}")
        started = _descendants(proc.pid)
        postmaster = EmbeddedPostgres(data_dir).postmaster_pid
        assert postmaster is not None and _alive(postmaster)
        started[postmaster] = "postgres (postmaster)"
        assert any("oms.cli worker" in cmd for cmd in started.values()), started
        spawned = sum("spawn_main" in cmd for cmd in started.values())  # uvicorn's workers
        assert spawned == (workers if workers > 1 else 0), started

        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
        _assert_all_stopped(started, data_dir, signum.name)
        output = log_path.read_text(errors="replace")
        assert "Traceback" not in output, output[-4000:]
    finally:
        _clean_up(proc, started, data_dir)


def test_sigterm_while_starting_stops_postgres_too(workdir: Path) -> None:
    """A stop signal before the API serves (Postgres starting, migrations) stops Postgres."""
    data_dir = workdir / ".oms" / "pgdata"
    proc = _serve(workdir, workdir / "serve-starting.log", free_port(), 1)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        postmaster = None
        while postmaster is None and time.monotonic() < deadline and proc.poll() is None:
            postmaster = EmbeddedPostgres(data_dir).postmaster_pid
            time.sleep(0.01)
        assert postmaster is not None, (workdir / "serve-starting.log").read_text()
        started = {postmaster: "postgres (postmaster)"}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _assert_all_stopped(started, data_dir, "SIGTERM while starting")
    finally:
        _clean_up(proc, started, data_dir)
