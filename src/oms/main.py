"""The FastAPI application: routers, lifespan, exception handlers, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.connectors.asyncio import AsyncAdapt_Error
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from oms import __version__
from oms.config import Settings, get_settings
from oms.console import router as console
from oms.db import create_engine, create_sessionmaker
from oms.holds.router import router as holds_router
from oms.inventory.feed_router import router as stock_feed_router
from oms.inventory.router import router as inventory_router
from oms.messages.router import opt_outs as message_opt_outs_router
from oms.messages.router import router as messages_router
from oms.orders.router import router as orders_router
from oms.payments.router import router as payments_router
from oms.promises.router import router as promises_router
from oms.purchasing.router import router as purchasing_router
from oms.reports.router import router as reports_router
from oms.returns.router import router as returns_router
from oms.routing import geo
from oms.routing.router import router as routing_router
from oms.shared import metrics
from oms.shared.admission import AdmissionGate
from oms.shared.errors import (
    PROBLEM_JSON,
    UNSTORABLE_TEXT,
    UNSTORABLE_TEXT_SQLSTATES,
    ProblemError,
    ServiceUnavailable,
)
from oms.shared.middleware import RequestContextMiddleware
from oms.shared.openapi import Problem, document_transport_problems
from oms.shipments.router import router as shipments_router
from oms.stores.router import router as stores_router
from oms.tracking.router import router as tracking_router
from oms.waves.router import router as waves_router
from oms.webhooks.inbound.router import router as inbound_webhooks_router
from oms.webhooks.outbound.router import router as outbound_webhooks_router

log = logging.getLogger("oms")
RAW_BODY_PREFIXES = (
    "/v1/webhooks/inbound/",  # WooCommerce's setup ping is a form
    "/console/",  # the operations console's HTML forms (oms.console)
)
MAX_VALIDATION_ERRORS = 50

DESCRIPTION = """
**oms** is a headless order-management service: a guarded order lifecycle, multi-warehouse
inventory that never oversells, explainable routing, and webhooks in and out.

* Authenticate with an API key: `Authorization: Bearer oms_<prefix>_<secret>` (create one with
  `oms apikey create`). Roles: `admin`, `storefront`, `fulfillment`, `connector`.
* Money is always integer **minor units** (cents) with an ISO 4217 `currency`.
* Every error is RFC 9457 `application/problem+json` with a stable `code` to branch on.
* Retry order creation safely with an `Idempotency-Key` header.
"""


def _problem_response(request: Request, problem: ProblemError) -> JSONResponse:
    return JSONResponse(
        problem.to_dict(instance=request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers or None,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {"field": ".".join(loc), "loc": loc, "message": err.get("msg"), "type": err.get("type")}
        )
    return out


def install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return _problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            problem = ProblemError(
                "the request body is not valid JSON", code="malformed_json", title="Malformed JSON"
            )
        else:
            extra: dict[str, Any] = {"errors": errors[:MAX_VALIDATION_ERRORS]}
            if len(errors) > MAX_VALIDATION_ERRORS:  # keep the answer small whatever was sent
                extra["errors_total"] = len(errors)
            problem = ProblemError(
                "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                status=422,
                code="validation_error",
                title="The request is not valid",
                **extra,
            )
        return _problem_response(request, problem)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: "malformed_json",  # a body FastAPI cannot parse (e.g. not UTF-8)
            404: "not_found",
            405: "method_not_allowed",
            415: "unsupported_media_type",
        }
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route of the path
            headers["Allow"] = ", ".join(_allowed_methods(request))
        problem = ProblemError(
            str(exc.detail),
            status=exc.status_code,
            code=codes.get(exc.status_code, f"http_{exc.status_code}"),
            title=str(exc.detail),
            headers=headers,
        )
        return _problem_response(request, problem)

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        problem = ServiceUnavailable(
            "the database is unavailable; retry shortly",
            code="database_unavailable",
            headers={"Retry-After": "2"},
        )
        return _problem_response(request, problem)

    app.add_exception_handler(OperationalError, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)
    # refused, reset, timed out, or the embedded server's Unix socket gone (FileNotFoundError)
    app.add_exception_handler(OSError, _db_down)

    async def _database_error(
        request: Request, exc: Exception, sqlstate: str, lost: bool
    ) -> JSONResponse:
        if lost or sqlstate in _UNAVAILABLE or sqlstate.startswith("08"):
            return await _db_down(request, exc)
        if sqlstate in _TRANSIENT:
            # a deadlock or serialization failure: oms takes its locks in one order so that
            # none should happen (oms.orders.locking); should one, the request was rolled back
            # whole and may simply be sent again
            log.warning("transaction aborted by the database", extra={"sqlstate": sqlstate})
            return _problem_response(
                request,
                ServiceUnavailable(
                    "the request conflicted with a concurrent one and was rolled back; retry",
                    code="transient_conflict",
                    headers={"Retry-After": "1"},
                ),
            )
        if sqlstate in UNSTORABLE_TEXT_SQLSTATES:
            return _problem_response(
                request,
                ProblemError(
                    UNSTORABLE_TEXT,
                    status=422,
                    code="invalid_character",
                    title="The request is not valid",
                ),
            )
        log.exception("database error", exc_info=exc)
        return _problem_response(request, _internal_error())

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        # asyncpg errors reach us as SQLAlchemy's generic adapter class: branch on SQLSTATE
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return await _database_error(request, exc, sqlstate, exc.connection_invalidated)

    @app.exception_handler(asyncpg.PostgresError)
    async def _postgres(request: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        # a driver error that reached us untranslated (oms.db.DriverConnection translates its own)
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        return await _database_error(request, exc, sqlstate, False)

    @app.exception_handler(AsyncAdapt_Error)
    async def _adapted(request: Request, exc: AsyncAdapt_Error) -> JSONResponse:
        # SQLAlchemy's DBAPI-level error, should one be raised unwrapped (nothing in oms drives
        # the adapted connection directly); InterfaceError = connection closed
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        return await _database_error(request, exc, sqlstate, _connection_lost(exc))

    async def _asyncpg_client(request: Request, exc: Exception) -> JSONResponse:
        return await _database_error(request, exc, "", _connection_lost(exc))

    app.add_exception_handler(asyncpg.InterfaceError, _asyncpg_client)
    app.add_exception_handler(asyncpg.InternalClientError, _asyncpg_client)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # a bug: answer with a problem (no details), Starlette re-raises it to the server's log
        return _problem_response(request, _internal_error())


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path (for ``Allow``)."""
    scope = {  # a fresh scope: the request's own carries the route it was matched to
        "type": "http",
        "path": request.scope["path"],
        "root_path": request.scope.get("root_path", ""),
        "method": "",
    }
    routes: Iterable[Any] = request.app.routes
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)  # routers included lazily
    if flatten is not None:
        routes = flatten(request.app.routes)
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _connection_lost(exc: Exception) -> bool:
    """A driver error that means the connection broke (the server went away mid-operation)."""
    name = type(exc).__name__
    return name == "InternalClientError" or (name == "InterfaceError" and "closed" in str(exc))


def _internal_error() -> ProblemError:
    return ProblemError("internal error", status=500, code="internal_error", title="Internal error")


# query_canceled (statement_timeout), lock_not_available (lock_timeout), admin/crash shutdown,
# cannot_connect_now (starting up), too_many_connections; class 08 is connection exceptions
_UNAVAILABLE = frozenset({"57014", "55P03", "57P01", "57P02", "57P03", "53300"})
# deadlock_detected, serialization_failure: the transaction was rolled back, nothing was stored
_TRANSIENT = frozenset({"40P01", "40001"})


DOCS_ASSETS = Path(__file__).parent / "static" / "docs"
"""Swagger UI and ReDoc, shipped in the package (see its NOTICE.md): /docs works offline."""
DOCS_ASSETS_URL = "/static/docs"


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc``, every asset served from the package, none from a
    CDN: on a host without internet access the pages still work."""
    assets = DOCS_ASSETS_URL
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS, check_dir=True), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{assets}/swagger-ui/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=favicon,
            oauth2_redirect_url="/docs/oauth2-redirect",
            # no badge fetched from the public validator
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database engine is created in the lifespan from ``settings``."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # the offline geo tables (~80 ms each) load now, not on the first order
        await asyncio.to_thread(geo.preload)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="oms",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package instead of a CDN: install_docs
        redoc_url=None,
        openapi_tags=[
            {"name": "orders", "description": "Place, read and move orders through their life"},
            {"name": "inventory", "description": "Warehouses, stock, ledger, availability"},
            {"name": "routing", "description": "Where orders ship from, and why"},
            {"name": "fulfillment", "description": "Shipments and pick queues"},
            {"name": "payments", "description": "Payments, captures and refunds"},
            {"name": "returns", "description": "Returns (RMAs), restocking"},
            {
                "name": "promises",
                "description": "Delivery promises: warehouse calendars (time zone, cut-off, "
                "handling, working days, holidays) and transit times by country and band",
            },
            {
                "name": "purchasing",
                "description": "Suppliers, purchase orders and their receipts, reorder "
                "policies and suggestions that show their inputs",
            },
            {
                "name": "inbound-webhooks",
                "description": "Connectors post signed webhooks (Shopify, WooCommerce, oms "
                "format); every delivery is kept in an inbox, deduplicated, replayable",
            },
            {
                "name": "outbound-webhooks",
                "description": "Subscriptions to oms events, signed per Standard Webhooks; "
                "delivery log and redelivery",
            },
            {
                "name": "reports",
                "description": "Best sellers, customers, countries, channels, days and "
                "fulfilment KPIs (admin); JSON or CSV",
            },
            {
                "name": "stores",
                "description": "Stores as fulfilment points: click and collect, transfers "
                "between locations, till sales, store staff keys",
            },
            {
                "name": "messages",
                "description": "Emails and SMS to customers: rules, templates, providers, "
                "opt-outs, each order's message log (admin)",
            },
            {
                "name": "tracking",
                "description": "The customer's tracking page and JSON, by signed link (no key)",
            },
            {"name": "meta", "description": "Health, readiness, metrics and the state machine"},
        ],
    )
    app.state.settings = settings
    install_exception_handlers(app)
    app.add_middleware(
        AdmissionGate,
        limit=settings.effective_max_in_flight,
        timeout_s=settings.effective_admission_timeout_s,
    )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        raw_body_prefixes=RAW_BODY_PREFIXES,
    )
    app.include_router(orders_router)
    app.include_router(holds_router)
    app.include_router(inventory_router)
    app.include_router(stock_feed_router)
    app.include_router(routing_router)
    app.include_router(promises_router)
    app.include_router(purchasing_router)
    app.include_router(payments_router)
    app.include_router(returns_router)
    app.include_router(inbound_webhooks_router)
    app.include_router(outbound_webhooks_router)
    app.include_router(reports_router)
    app.include_router(shipments_router)
    app.include_router(stores_router)
    app.include_router(messages_router)
    app.include_router(message_opt_outs_router)
    app.include_router(tracking_router)
    app.include_router(waves_router)
    install_docs(app)
    if settings.console_enabled:
        console.install(app)  # /console: server-rendered pages, same services (oms.console)

    @app.get("/healthz", tags=["meta"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["meta"],
        summary="Readiness: the database answers",
        responses={503: {"model": Problem, "description": "Database unreachable"}},
    )
    async def readyz(request: Request) -> Any:
        try:
            async with asyncio.timeout(2):
                async with request.app.state.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"
            problem = ServiceUnavailable(
                f"database unreachable ({type(exc).__name__})",
                code="database_unavailable",
                headers={"Retry-After": "2"},
            )
            return _problem_response(request, problem)
        return {"status": "ready", "database": "ok"}

    @app.get("/metrics", tags=["meta"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        document_transport_problems(schema, raw_body_prefixes=RAW_BODY_PREFIXES)
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory oms.main:app_factory``."""
    return create_app()
