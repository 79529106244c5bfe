"""The ``oms`` command: serve, migrate, openapi, apikey."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oms.config import Settings, get_settings


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """OMS_DATABASE_URL if set; otherwise an embedded Postgres under OMS_DATA_DIR."""
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
    print(f"oms: embedded Postgres at {data_dir}", file=sys.stderr)
    try:
        yield url
    finally:
        if pg.started_here:  # leave a server another oms process started alone
            pg.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    workers = args.workers or settings.workers
    with database_url(settings) as url:
        os.environ["OMS_DATABASE_URL"] = url
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

        from oms.shared.logging import configure_logging

        configure_logging(settings.log_level, settings.log_format)
        uvicorn.run(
            "oms.main:app_factory",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=workers,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            timeout_graceful_shutdown=10,
        )
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
