"""The ``oms`` command: serve, worker, migrate, openapi, apikey."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oms.config import Settings, get_settings

if TYPE_CHECKING:
    from oms.inventory.service import BulkRow


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """While stopping what a command started, a second Ctrl-C or SIGTERM must not cut it short."""
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in stops}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """OMS_DATABASE_URL if set; otherwise an embedded Postgres under OMS_DATA_DIR, stopped on
    the way out (also when a stop signal interrupts its start)."""
    if settings.database_url:
        yield settings.database_url
        return
    from oms.embedded import EmbeddedPostgres, EmbeddedPostgresError

    data_dir = settings.data_dir.resolve() / "pgdata"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data_dir)
    try:
        url = pg.start()
    except EmbeddedPostgresError as exc:
        raise SystemExit(f"oms: cannot start the embedded Postgres: {exc}") from None
    except BaseException:  # e.g. Ctrl-C while pg_ctl was starting it
        if pg.started_here:
            with _signals_ignored():
                pg.stop()
        raise
    print(f"oms: embedded Postgres at {data_dir}", file=sys.stderr)
    try:
        yield url
    finally:
        if pg.started_here:  # leave a server another oms process started alone
            with _signals_ignored():
                pg.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API (and, with OMS_SERVE_WORKER, the relay) until SIGTERM or SIGINT.

    Either signal ends it the same way, whatever the number of worker processes: uvicorn shuts
    its workers down gracefully, then the relay is stopped, then the embedded Postgres (if this
    command started it), cleanly (``pg_ctl stop -m fast``). SIGTERM is turned into the
    KeyboardInterrupt that SIGINT raises, so that it unwinds through the same ``finally``
    blocks: left at its default, SIGTERM ends the process on the spot when uvicorn re-raises it
    after its own shutdown (one worker), orphaning the relay and Postgres.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _serve(args, get_settings())
    except KeyboardInterrupt:
        pass
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    from oms.shared.logging import configure_logging, logging_config

    configure_logging(settings.log_level, settings.log_format)
    workers = args.workers or settings.workers
    with database_url(settings) as url:
        os.environ["OMS_DATABASE_URL"] = url
        os.environ["OMS_WORKERS"] = str(workers)  # the processes size their pools by it
        get_settings.cache_clear()
        if settings.run_migrations_on_start and not args.no_migrate:
            from oms.schema import upgrade_head

            upgrade_head(url)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            prom_dir = settings.data_dir.resolve() / "prometheus"
            shutil.rmtree(prom_dir, ignore_errors=True)
            prom_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
        import uvicorn

        from oms import supervisor
        from oms.server import uvicorn_options

        relay = None
        try:
            if settings.serve_worker:  # the outbox relay beside the API (scripts/serve)
                relay = subprocess.Popen([sys.executable, "-m", "oms.cli", "worker"])
            options: dict[str, Any] = {
                "host": args.host or settings.host,
                "port": args.port or settings.port,
                "workers": workers,
                # applied by uvicorn in every worker process it spawns, not only in this one
                "log_config": logging_config(settings.log_level, settings.log_format),
                # limits and timeouts, and the guard against slow or oversized clients
                **uvicorn_options(settings),
            }
            if workers > 1 and supervisor.reuse_port_supported():
                # a listening socket per worker: connections spread evenly (oms.supervisor)
                config = uvicorn.Config("oms.main:app_factory", factory=True, **options)
                try:
                    sockets = supervisor.worker_sockets(config, workers)
                except OSError as exc:
                    raise SystemExit(f"oms serve: cannot listen: {exc}") from None
                supervisor.BalancedMultiprocess(config, sockets).run()
            else:
                uvicorn.run("oms.main:app_factory", factory=True, **options)
        finally:
            if relay is not None:
                with _signals_ignored():
                    _stop_process(relay, timeout=15)


def _stop_process(proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cmd_migrate(args: argparse.Namespace) -> int:
    from oms.schema import upgrade_head

    with database_url(get_settings()) as url:
        upgrade_head(url)
    print("oms: database is at the latest migration", file=sys.stderr)
    return 0


def openapi_document() -> dict[str, object]:
    from oms.main import create_app

    app = create_app(Settings(database_url="postgresql+asyncpg://unused/unused"))
    return app.openapi()


def cmd_openapi(args: argparse.Namespace) -> int:
    text = json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"
    out = Path(args.output)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"oms: {out} is stale; run `oms openapi`", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"oms: wrote {out}", file=sys.stderr)
    return 0


async def _apikey(args: argparse.Namespace, url: str) -> int:
    from oms.auth import service
    from oms.db import create_engine, create_sessionmaker
    from oms.shared.errors import ProblemError
    from oms.shared.roles import Role

    engine = create_engine(get_settings(), url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if args.action == "create":
                key, token = await service.create_api_key(
                    session, name=args.name, role=Role(args.role), channel=args.channel
                )
                print(
                    json.dumps(
                        {
                            "id": str(key.id),
                            "prefix": key.prefix,
                            "role": key.role,
                            "channel": key.channel,
                            "key": token,
                        }
                    )
                )
            elif args.action == "list":
                for k in await service.list_api_keys(session):
                    print(
                        json.dumps(
                            {
                                "id": str(k.id),
                                "prefix": k.prefix,
                                "name": k.name,
                                "role": k.role,
                                "channel": k.channel,
                                "revoked": k.revoked_at is not None,
                            }
                        )
                    )
            else:
                await service.revoke_api_key(session, prefix=args.prefix)
                print(f"oms: revoked {args.prefix}", file=sys.stderr)
    except ProblemError as exc:
        print(f"oms: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    with database_url(get_settings()) as url:
        return asyncio.run(_apikey(args, url))


_CSV_COLUMNS = ("warehouse", "sku", "on_hand")
_CSV_OPTIONAL = ("safety_stock", "low_stock_threshold", "reorder_point", "reorder_quantity")


def _csv_int(raw: str, line: int, column: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"line {line}, column {column}: '{raw}' is not a whole number") from None
    if value < 0:
        raise ValueError(f"line {line}, column {column}: must not be negative")
    return value


def read_stock_csv(path: Path) -> list[BulkRow]:
    """Parse a stock CSV; raise ValueError naming the line and column of the first bad value."""
    import csv

    from oms.inventory.service import BulkRow

    rows: list[BulkRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [c for c in _CSV_COLUMNS if c not in header]
        unknown = [c for c in header if c not in _CSV_COLUMNS + _CSV_OPTIONAL]
        if missing or unknown:
            raise ValueError(
                f"line 1: missing columns {missing or '-'}, unknown columns {unknown or '-'}"
            )
        for line, record in enumerate(reader, start=2):
            cells = {c: (record.get(c) or "").strip() for c in header}
            for column in ("warehouse", "sku"):
                if not cells[column]:
                    raise ValueError(f"line {line}, column {column}: empty")
            optional = {
                c: _csv_int(cells[c], line, c) if cells[c] else None
                for c in _CSV_OPTIONAL
                if c in cells
            }
            rows.append(
                BulkRow(
                    warehouse=cells["warehouse"],
                    sku=cells["sku"],
                    on_hand=_csv_int(cells["on_hand"], line, "on_hand"),
                    **optional,
                )
            )
    if not rows:
        raise ValueError("the file has no rows")
    return rows


async def _import_stock(path: Path, url: str) -> int:
    from oms.db import create_engine, create_sessionmaker
    from oms.inventory.service import bulk_load
    from oms.shared.errors import ProblemError

    try:
        rows = read_stock_csv(path)
    except (ValueError, OSError) as exc:
        print(f"oms: {path}: {exc}; nothing was imported", file=sys.stderr)
        return 1
    engine = create_engine(get_settings(), url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            count = await bulk_load(
                session, rows=rows, actor="cli:import", reason=f"import {path.name}"
            )
    except ProblemError as exc:  # e.g. bulk_row_invalid, below_reserved: they name the row
        where, detail = "", exc.detail
        if "row" in exc.extra:
            where = f"line {int(exc.extra['row']) + 1}"  # the header is line 1
            where += f", column {exc.extra['column']}: " if "column" in exc.extra else ": "
            detail = detail.split(": ", 1)[-1]
        print(f"oms: {path}: {where}{detail}; nothing was imported", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"oms: imported {count} stock rows from {path}", file=sys.stderr)
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    with database_url(get_settings()) as url:
        return asyncio.run(_import_stock(Path(args.csv), url))


async def _worker(args: argparse.Namespace, url: str, settings: Settings) -> int:
    from oms.db import create_engine, create_sessionmaker
    from oms.worker import Relay, http_client

    engine = create_engine(settings, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with http_client(settings) as client:
            relay = Relay(
                sessionmaker=create_sessionmaker(engine), client=client, settings=settings
            )
            stats = await relay.run(stop=stop, once=args.once)
    finally:
        await engine.dispose()
    if args.once:
        print(
            json.dumps(
                {"events_fanned_out": stats.fanned_out, "attempts": stats.attempts}
                | stats.outcomes
                | {"inbox_applied": stats.inbox_applied}
            )
        )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from oms.shared.logging import configure_logging

    settings = get_settings()
    overrides: dict[str, object] = {}
    if args.concurrency:
        overrides["worker_concurrency"] = args.concurrency
    if args.poll_interval:
        overrides["worker_poll_interval_s"] = args.poll_interval
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    with database_url(settings) as url:
        return asyncio.run(_worker(args, url, settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oms", description="oms order-management service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (embedded Postgres if no URL is set)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (default OMS_WORKERS)")
    serve.add_argument("--no-migrate", action="store_true", help="skip `alembic upgrade head`")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="alembic upgrade head")
    migrate.set_defaults(func=cmd_migrate)

    openapi = sub.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", default="openapi/openapi.json")
    openapi.add_argument("--check", action="store_true", help="fail if the file is stale")
    openapi.set_defaults(func=cmd_openapi)

    apikey = sub.add_parser("apikey", help="manage API keys")
    ak = apikey.add_subparsers(dest="action", required=True)
    create = ak.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--role", required=True, choices=["admin", "storefront", "fulfillment", "connector"]
    )
    create.add_argument("--channel", help="bind a storefront/connector key to one channel")
    ak.add_parser("list", help="list keys (never the secrets)")
    revoke = ak.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    apikey.set_defaults(func=cmd_apikey)

    worker = sub.add_parser(
        "worker", help="deliver outbound webhooks and apply pending inbound events"
    )
    worker.add_argument("--once", action="store_true", help="drain what is due, then exit")
    worker.add_argument("--concurrency", type=int, help="parallel sends (OMS_WORKER_CONCURRENCY)")
    worker.add_argument(
        "--poll-interval", type=float, help="idle sleep in seconds (OMS_WORKER_POLL_INTERVAL_S)"
    )
    worker.set_defaults(func=cmd_worker)

    inventory = sub.add_parser("inventory", help="inventory tools")
    inv = inventory.add_subparsers(dest="action", required=True)
    imp = inv.add_parser(
        "import",
        help="load stock from CSV (warehouse,sku,on_hand[,safety_stock,low_stock_threshold,"
        "reorder_point,reorder_quantity]); all rows or none",
    )
    imp.add_argument("csv")
    inventory.set_defaults(func=cmd_inventory)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
