"""The operations console: server-rendered pages at /console for the people who run the back
office (customer service, warehouse and store staff, the operations lead).

Every page and action calls the same services and flows as the API routes do (orders, holds,
fulfilment, inventory, reports, webhooks): the console has no business rules of its own, only
what to show and which form sends what. Who may open what follows the role of the API key the
user signed in with, as the API's ``require(...)`` does (see ``oms.console.web``), and a
fulfilment key scoped to some warehouses sees those only.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from oms.auth.service import Principal, may_see_warehouse, visible_warehouses
from oms.console import charts, sessions
from oms.console.sessions import Viewer
from oms.console.web import (
    ADMIN,
    COOKIE,
    MOVERS,
    PREFIX,
    READERS,
    SIGN_IN_CSRF_COOKIE,
    STATIC,
    WAREHOUSE,
    ConsoleError,
    ConsoleRoute,
    checked_form,
    field,
    form,
    lifetime,
    new_sign_in_token,
    redirect,
    render,
    safe_next,
    set_cookie,
    viewer_for,
    whole_number,
)
from oms.deps import Session
from oms.flows import backorders, blockers, fulfilment
from oms.flows import intake as intake_flow
from oms.inventory import service as inventory_service
from oms.inventory.schemas import AdjustmentCreate
from oms.orders import domain, views
from oms.orders import service as orders_service
from oms.orders.hold_schemas import HoldCreate, HoldReason, HoldRelease
from oms.orders.schemas import RerouteRequest, ShipmentTransitionRequest, TransitionRequest
from oms.payments import service as payments_service
from oms.reports import service as reports_service
from oms.returns import service as returns_service
from oms.shared.clock import utcnow
from oms.shared.codes import is_currency
from oms.shared.logging import request_id_var
from oms.shared.openapi import BigId
from oms.shared.roles import Role
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.inbound.money import exponent
from oms.webhooks.outbound import service as outbound_service

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25
DONE = {
    "hold_placed": "Hold placed: the order has left the pick queue.",
    "hold_released": "Hold released.",
    "moved": "Order moved.",
    "rerouted": "Order routed again.",
    "picked": "Shipment picked.",
    "packed": "Shipment packed.",
    "shipped": "Shipment shipped.",
    "adjusted": "Stock adjusted.",
    "redelivered": "Delivery queued to be sent again.",
    "replayed": "Inbound event processed again.",
    "replay_failed": "Processed again, and it failed again: the inbox below shows why.",
    "signed_out": "You are signed out.",
}
"""Messages shown after a form succeeded (``?done=<key>``; fixed text, never from the URL)."""


def _done(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


def install(app: FastAPI) -> None:
    """Mount the console and its static files (htmx, stylesheet) on ``app``."""
    app.mount(
        f"{PREFIX}/static", StaticFiles(directory=STATIC, check_dir=True), name="console-static"
    )
    app.include_router(router)


# ---- sign in / out -------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request, session: Session) -> Response:
    viewer = await viewer_for(request, session, READERS)
    start = {
        Role.ADMIN: "/dashboard",
        Role.FULFILLMENT: "/warehouse",
        Role.STOREFRONT: "/orders",
    }[viewer.role]
    return redirect(PREFIX + start)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    token = new_sign_in_token()
    response = render(
        request,
        "sign_in.html",
        sign_in_token=token,
        next=safe_next(next),
        error=None,
        done=_done(request),
    )
    set_cookie(request, response, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, session: Session) -> Response:
    data = await form(request)
    target = safe_next(field(data, "next"))
    cookie_token = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    if not cookie_token or not sessions.same_token(field(data, "csrf_token"), cookie_token):
        raise ConsoleError(
            403,
            "The sign-in form's security token is missing or wrong (CSRF). Open the sign-in "
            "page again.",
            title="Form refused",
        )
    signed = await sessions.sign_in(
        session, token=field(data, "api_key"), lifetime=lifetime(request), now=utcnow()
    )
    if signed is not None and (previous := request.cookies.get(COOKIE)):
        await sessions.sign_out(session, session_id=previous)  # one session per browser
    if signed is None:
        token = new_sign_in_token()
        refused = render(
            request,
            "sign_in.html",
            401,
            sign_in_token=token,
            next=target,
            error="That API key is unknown, revoked, or of a role the console does not serve "
            "(connector keys).",
            done=None,
        )
        set_cookie(request, refused, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
        return refused
    response = redirect(target)
    max_age = int(lifetime(request).absolute.total_seconds())
    set_cookie(request, response, COOKIE, signed.session_id, max_age=max_age)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, session: Session) -> Response:
    viewer = await viewer_for(request, session, READERS)
    await checked_form(request, viewer)
    await sessions.sign_out(session, session_id=request.cookies.get(COOKIE, ""))
    response = redirect(f"{PREFIX}/sign-in?done=signed_out")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# ---- orders --------------------------------------------------------------------------------


def _day(value: str, name: str, *, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    except (ValueError, OverflowError) as exc:  # 9999-12-31 has no day after it
        raise ConsoleError(400, f"{name}: '{value}' is not a date (YYYY-MM-DD).") from exc


@router.get("/orders", response_class=HTMLResponse)
async def orders(
    request: Request,
    session: Session,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[list[str] | None, Query()] = None,
    channel: Annotated[str, Query(max_length=64)] = "",
    created_from: Annotated[str, Query(max_length=10)] = "",
    created_to: Annotated[str, Query(max_length=10)] = "",
    blocked_by: Annotated[str, Query(max_length=16)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    viewer = await viewer_for(request, session, READERS)
    q = q.strip()
    try:
        statuses = [domain.OrderStatus(s) for s in status or [] if s]
    except ValueError as exc:
        raise ConsoleError(400, "Unknown order status.") from exc
    if blocked_by and blocked_by not in {"hold", "payment", "backorder", "wave"}:
        raise ConsoleError(400, "Unknown blocker: choose hold, payment or backorder.")
    number = email = reference = None
    if q:
        try:
            order_id = uuid.UUID(q)
        except ValueError:
            order_id = None
        if order_id is not None:
            return redirect(f"{PREFIX}/orders/{order_id}")
        digits = q.lstrip("#")
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            number = int(digits)
        elif "@" in q:
            email = q.lower()
        else:
            reference = q
    filters = orders_service.OrderFilter(
        status=statuses or None,
        channel=channel.strip() or None,
        customer_email=email,
        number=number,
        external_reference=reference,
        created_from=_day(created_from, "Created from"),
        created_to=_day(created_to, "Created to", end=True),
        blocked_by=blocked_by or None,
    )
    found, next_cursor = await orders_service.list_orders(
        session, principal=viewer.principal, filters=filters, limit=PAGE_SIZE, cursor=cursor or None
    )
    scope = visible_warehouses(viewer.principal)
    if scope is not None:
        # a store's key lists its stores' orders only, as it may open only those (the order
        # service's list has no warehouse scope yet): fill the page from a few more
        found = await _in_scope(session, found, scope)
        for _ in range(SCOPED_EXTRA_PAGES):
            if len(found) >= PAGE_SIZE or next_cursor is None:
                break
            more, next_cursor = await orders_service.list_orders(
                session,
                principal=viewer.principal,
                filters=filters,
                limit=PAGE_SIZE,
                cursor=next_cursor,
            )
            found += await _in_scope(session, more, scope)
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor" and v]
    return render(
        request,
        "orders.html",
        orders=found,
        next_cursor=next_cursor,
        query=query,
        q=q,
        statuses=list(domain.OrderStatus),
        chosen=set(statuses),
        channel=channel,
        created_from=created_from,
        created_to=created_to,
        blocked_by=blocked_by,
        searched_by="number"
        if number is not None
        else "email"
        if email
        else "external reference"
        if reference
        else None,
    )


SCOPED_EXTRA_PAGES = 4
"""Pages of orders read beyond the first to fill a store key's page (the rest: Next page)."""


async def _in_scope(session: Session, orders: list[Any], scope: frozenset[uuid.UUID]) -> list[Any]:
    """The orders with a live shipment at one of ``scope``'s warehouses (the rule
    ``GET /v1/orders/{id}`` applies to a scoped key, ``orders.locking.refuse_outside_scope``)."""
    if not orders:
        return []
    parcels = await orders_service.shipments_for(session, order_ids=[o.id for o in orders])
    return [
        o
        for o in orders
        if any(
            v.shipment.warehouse_id in scope and v.shipment.status != "cancelled"
            for v in parcels[o.id]
        )
    ]


def _allowed_moves(read: Any, role: Role) -> list[domain.Transition]:
    """The transitions the order's status allows that this role may make (the state machine's
    own table; the service checks again)."""
    targets = set(read.allowed_transitions)
    current = domain.OrderStatus(read.status)
    return [
        t
        for t in domain.TRANSITIONS
        if t.source == current and t.target in targets and role in t.roles
    ]


async def _order_page(
    request: Request, session: Session, viewer: Viewer, order_id: uuid.UUID
) -> dict[str, Any]:
    principal = viewer.principal
    order = await orders_service.get_order(session, order_id=order_id, principal=principal)
    shipments = (await orders_service.shipments_for(session, order_ids=[order.id]))[order.id]
    holds = await orders_service.list_holds(session, order_id=order.id, principal=principal)
    read = views.to_read(order, shipments, [h for h in holds if h.released_at is None])
    history = await orders_service.order_history(session, order_id=order.id, principal=principal)
    total, payments, refunds = await payments_service.payments_of(
        session, order_id=order.id, principal=principal
    )
    rmas = await returns_service.returns_of(session, order_id=order.id, principal=principal)
    rma_lines = await returns_service.lines_of(session, return_ids=[r.id for r in rmas])
    _, found_blockers = await blockers.order_blockers(
        session,
        order_id=order.id,
        principal=principal,
        handling_time=timedelta(hours=request.app.state.settings.handling_time_hours),
        now=utcnow(),
    )
    routing = order.routing or {}
    explanation = routing.get("explanation") or None
    return {
        "order": read,
        "holds": [views.hold_read(h) for h in holds],
        "history": history,
        "total": total,
        "captured": sum(p.captured_amount for p in payments),
        "refunded": sum(r.amount for r in refunds),
        "payments": payments,
        "refunds": refunds,
        "returns": [(r, rma_lines.get(r.id, [])) for r in rmas],
        "blockers": found_blockers,
        "routing": routing,
        "explanation": explanation,
        "moves": _allowed_moves(read, viewer.role),
        "hold_reasons": list(HoldReason),
        "is_admin": viewer.role == Role.ADMIN,
        "may_ship": viewer.role in WAREHOUSE,
    }


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_detail(request: Request, session: Session, order_id: uuid.UUID) -> Response:
    viewer = await viewer_for(request, session, READERS)
    page = await _order_page(request, session, viewer, order_id)
    return render(request, "order.html", done=_done(request), **page)


@router.post("/orders/{order_id}/transitions", response_class=HTMLResponse)
async def move_order(request: Request, session: Session, order_id: uuid.UUID) -> Response:
    viewer = await viewer_for(request, session, MOVERS)
    data = await checked_form(request, viewer)
    try:
        target = domain.OrderStatus(field(data, "to"))
    except ValueError as exc:
        raise ConsoleError(400, "Unknown target status.") from exc
    change = TransitionRequest(
        to=target,
        reason=field(data, "reason") or None,  # the API's schema refuses what is too long
        carrier=field(data, "carrier") or None,
        tracking_number=field(data, "tracking_number") or None,
        expected_version=whole_number(v, "Expected version")
        if (v := field(data, "expected_version"))
        else None,
    )
    await fulfilment.transition_order(
        session,
        order_id=order_id,
        change=change,
        principal=viewer.principal,
        request_id=request_id_var.get(),
    )
    return redirect(f"{PREFIX}/orders/{order_id}?done=moved")


@router.post("/orders/{order_id}/holds", response_class=HTMLResponse)
async def place_hold(request: Request, session: Session, order_id: uuid.UUID) -> Response:
    viewer = await viewer_for(request, session, ADMIN)
    data = await checked_form(request, viewer)
    body = HoldCreate(reason=field(data, "reason"), note=field(data, "note") or None)
    await orders_service.place_hold(
        session,
        order_id=order_id,
        reason=body.reason.value,
        note=body.note,
        principal=viewer.principal,
        request_id=request_id_var.get(),
    )
    return redirect(f"{PREFIX}/orders/{order_id}?done=hold_placed")


@router.post("/orders/{order_id}/holds/{hold_id}/release", response_class=HTMLResponse)
async def release_hold(
    request: Request, session: Session, order_id: uuid.UUID, hold_id: uuid.UUID
) -> Response:
    viewer = await viewer_for(request, session, ADMIN)
    data = await checked_form(request, viewer)
    body = HoldRelease(note=field(data, "note") or None)
    await orders_service.release_hold(
        session,
        order_id=order_id,
        hold_id=hold_id,
        note=body.note,
        principal=viewer.principal,
        request_id=request_id_var.get(),
    )
    return redirect(f"{PREFIX}/orders/{order_id}?done=hold_released")


@router.post("/orders/{order_id}/reroute", response_class=HTMLResponse)
async def reroute(request: Request, session: Session, order_id: uuid.UUID) -> Response:
    viewer = await viewer_for(request, session, ADMIN)
    data = await checked_form(request, viewer)
    body = RerouteRequest(reason=field(data, "reason") or None)
    await orders_service.reroute_order(
        session,
        order_id=order_id,
        principal=viewer.principal,
        reason=body.reason,
        request_id=request_id_var.get(),
    )
    return redirect(f"{PREFIX}/orders/{order_id}?done=rerouted")


# ---- warehouse work ------------------------------------------------------------------------


async def _visible_warehouses(session: Session, principal: Principal) -> list[Any]:
    found = await inventory_service.list_warehouses(session, include_inactive=False)
    return [w for w in found if may_see_warehouse(principal, w.id)]


async def _warehouse(session: Session, principal: Principal, code: str) -> Any:
    for w in await _visible_warehouses(session, principal):
        if w.code == code:
            return w
    raise ConsoleError(404, f"No active warehouse '{code}' you may work in.")


@router.get("/warehouse", response_class=HTMLResponse)
async def warehouses(request: Request, session: Session) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    found = await _visible_warehouses(session, viewer.principal)
    if len(found) == 1:
        return redirect(f"{PREFIX}/warehouse/{found[0].code}")
    return render(request, "warehouses.html", warehouses=found)


@router.get("/warehouse/{code}", response_class=HTMLResponse)
async def warehouse(
    request: Request,
    session: Session,
    code: str,
    order: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    wh = await _warehouse(session, viewer.principal, code)
    scanned = order.strip().lstrip("#")
    if scanned:  # an order number scanned from a packing slip: straight to its work
        number = whole_number(scanned, "Order number")
        found, _ = await orders_service.list_orders(
            session,
            principal=viewer.principal,
            filters=orders_service.OrderFilter(number=number),
            limit=1,
            cursor=None,
        )
        here = found and any(  # only an order with a shipment from here (no other store's)
            view.shipment.warehouse_id == wh.id
            for view in (await orders_service.shipments_for(session, order_ids=[found[0].id]))[
                found[0].id
            ]
        )
        if not here:
            raise ConsoleError(404, f"No order number {number} with a shipment from {wh.code}.")
        return redirect(f"{PREFIX}/warehouse/{wh.code}/orders/{found[0].id}")
    queue = await orders_service.pick_queue(session, warehouse_code=wh.code, limit=50)
    return render(request, "warehouse.html", warehouse=wh, queue=queue, done=_done(request))


@router.get("/warehouse/{code}/orders/{order_id}", response_class=HTMLResponse)
async def shipment_work(
    request: Request, session: Session, code: str, order_id: uuid.UUID
) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    wh = await _warehouse(session, viewer.principal, code)
    order = await orders_service.get_order(session, order_id=order_id, principal=viewer.principal)
    shipments = (await orders_service.shipments_for(session, order_ids=[order.id]))[order.id]
    holds = await orders_service.active_holds(session, order_id=order.id)
    read = views.to_read(order, shipments, holds)
    mine = [s for s in read.shipments if s.warehouse == wh.code]
    if not mine:
        raise ConsoleError(404, f"Order {order.number} has no shipment from {wh.code}.")
    names = {ln.id: ln.name for ln in read.lines if ln.name}
    return render(
        request,
        "shipment_work.html",
        warehouse=wh,
        order=read,
        shipments=mine,
        names=names,
        done=_done(request),
    )


@router.post("/warehouse/{code}/orders/{order_id}/shipments/{shipment_id}")
async def move_shipment(
    request: Request, session: Session, code: str, order_id: uuid.UUID, shipment_id: uuid.UUID
) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    data = await checked_form(request, viewer)
    wh = await _warehouse(session, viewer.principal, code)
    try:
        target = domain.ShipmentStatus(field(data, "to"))
    except ValueError as exc:
        raise ConsoleError(400, "Unknown shipment step.") from exc
    parcels = (await orders_service.shipments_for(session, order_ids=[order_id]))[order_id]
    shipment = next((v for v in parcels if v.shipment.id == shipment_id), None)
    if shipment is None or shipment.shipment.warehouse_id != wh.id:  # the URL names it all
        raise ConsoleError(404, f"This order has no such shipment from {wh.code}.")
    if target == domain.ShipmentStatus.PICKED:
        # the picker scanned each SKU off the shelf: all of the shipment's, and nothing else
        expected = {ln["sku"] for ln in shipment.lines}
        scanned = {s.strip() for s in data.get("sku", []) if s.strip()}
        if scanned != expected:
            wrong = sorted(scanned - expected)
            missing = sorted(expected - scanned)
            parts = []
            if wrong:
                parts.append("not on this shipment: " + ", ".join(wrong))
            if missing:
                parts.append("not scanned yet: " + ", ".join(missing))
            raise ConsoleError(
                422,
                "Scan every SKU of the shipment before picking it (" + "; ".join(parts) + ").",
                title="Scan mismatch",
            )
    change = ShipmentTransitionRequest(
        to=target,
        carrier=field(data, "carrier") or None,
        tracking_number=field(data, "tracking_number") or None,
    )
    await fulfilment.transition_shipment(
        session,
        shipment_id=shipment_id,
        change=change,
        principal=viewer.principal,
        request_id=request_id_var.get(),
    )
    done = {"picked": "picked", "packed": "packed", "shipped": "shipped"}.get(target.value, "moved")
    if target == domain.ShipmentStatus.SHIPPED:
        return redirect(f"{PREFIX}/warehouse/{wh.code}?done={done}")
    return redirect(f"{PREFIX}/warehouse/{wh.code}/orders/{order_id}?done={done}")


# ---- dashboard -----------------------------------------------------------------------------

WINDOWS = {"7": 7, "30": 30, "90": 90}


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: Session,
    days: Annotated[str, Query(max_length=3)] = "30",
    channel: Annotated[str, Query(max_length=64)] = "",
    currency: Annotated[str, Query(max_length=3)] = "",
) -> Response:
    await viewer_for(request, session, ADMIN)
    if days not in WINDOWS:
        raise ConsoleError(400, "Choose a window of 7, 30 or 90 days.")
    currency = currency.strip().upper()
    if currency and not is_currency(currency):
        raise ConsoleError(400, f"'{currency}' is not an ISO 4217 currency code.")
    end = utcnow()
    window = reports_service.Window(
        start=end - timedelta(days=WINDOWS[days]),
        end=end,
        channel=channel.strip() or None,
        currency=currency or None,
    )
    daily = await reports_service.daily(session, window=window, tz="UTC")
    kpis = await reports_service.fulfilment(
        session, window=window, late_after=timedelta(hours=48), as_of=end
    )
    late = await reports_service.late_orders(
        session, window=window, late_after=timedelta(hours=48), as_of=end, limit=10
    )
    low_stock = await inventory_service.replenishment(session, limit=20)
    channels = await reports_service.top_channels(
        session,
        window=reports_service.Window(start=window.start, end=end),
        limit=20,
        sort="orders",
    )
    health = await _webhook_health(session)
    per_currency: dict[str, list[dict[str, Any]]] = {}
    for row in daily:
        per_currency.setdefault(row["currency"], []).append(row)
    day_charts = []
    for cur, rows in sorted(per_currency.items()):
        points = [charts.Point(r["day"].strftime("%m-%d"), r["orders"]) for r in rows]
        revenue = [charts.Point(r["day"].strftime("%m-%d"), r["revenue"]) for r in rows]
        digits = 10 ** exponent(cur)  # minor units per major unit (ISO 4217)
        day_charts.append(
            {
                "currency": cur,
                "rows": rows,
                "orders_chart": charts.bar_chart(
                    title=f"Orders per day ({cur})", points=points, fmt=lambda v: f"{v:,.0f}"
                ),
                "revenue_chart": charts.bar_chart(
                    title=f"Revenue per day ({cur})",
                    points=[charts.Point(p.label, p.value / digits) for p in revenue],
                    fmt=lambda v: f"{v:,.0f}",
                    color=charts.ALT,
                ),
            }
        )
    durations = [
        ("Placed → paid", kpis["time_to_paid"]),
        ("Placed → shipped", kpis["time_to_shipped"]),
        ("Placed → delivered", kpis["time_to_delivered"]),
    ]
    hours = [charts.Point(label, (d["median_s"] or 0) / 3600) for label, d in durations]
    rates = [
        ("Split orders", kpis["split"]["share"]),
        ("Late orders", kpis["late"]["rate"]),
        ("Return rate", kpis["returns"]["rate"]),
        ("Cancellations", kpis["cancellation_rate"]),
        ("Fill rate", kpis["fill"]["rate"]),
    ]
    return render(
        request,
        "dashboard.html",
        days=days,
        windows=list(WINDOWS),
        channel=channel,
        currency=currency,
        channels=sorted({r["channel"] for r in channels}),
        window=window,
        day_charts=day_charts,
        kpis=kpis,
        durations=durations,
        durations_chart=charts.hbar_chart(
            title="Median hours from placement", points=hours, fmt=lambda v: f"{v:,.1f} h"
        ),
        rates=rates,
        rates_chart=charts.hbar_chart(
            title="Rates over the window's orders",
            points=[charts.Point(label, (r or 0) * 100) for label, r in rates],
            fmt=lambda v: f"{v:.1f} %",
            maximum=100,
        ),
        late=late,
        low_stock=low_stock,
        health=health,
        health_chart=charts.hbar_chart(
            title="Outbound webhook deliveries by status",
            points=[charts.Point(s, n) for s, n in health["deliveries"]],
            fmt=lambda v: f"{v:,.0f}",
        ),
    )


HEALTH_STATUSES = ("pending", "failed", "dead", "delivered")
HEALTH_SAMPLE = 200


async def _webhook_health(session: Session) -> dict[str, Any]:
    """Deliveries per status (counted up to HEALTH_SAMPLE each), disabled subscriptions, and
    failed inbound events."""
    counts = []
    for status in HEALTH_STATUSES:
        rows, more = await outbound_service.list_deliveries(
            session,
            filters=outbound_service.DeliveryFilter(status=[status]),
            limit=HEALTH_SAMPLE,
            cursor=None,
        )
        counts.append((status, len(rows), more is not None))
    subs = await outbound_service.list_subscriptions(session)
    failed_in, more_in = await inbound_service.list_inbox(
        session,
        filters=inbound_service.InboxFilter(status=["failed"]),
        limit=HEALTH_SAMPLE,
        cursor=None,
    )
    return {
        "deliveries": [(s, n) for s, n, _ in counts],
        "capped": {s for s, _, more in counts if more},
        "subscriptions": len(subs),
        "disabled": sum(1 for s in subs if not s.enabled),
        "inbound_failed": len(failed_in),
        "inbound_capped": more_in is not None,
        "sample": HEALTH_SAMPLE,
    }


# ---- inventory -----------------------------------------------------------------------------

ADJUSTMENTS = ("receive", "count", "correct")
"""As `POST /v1/inventory/adjustments`: receive adds units, count sets on hand, correct adds
or removes (a negative quantity)."""


@router.get("/inventory", response_class=HTMLResponse)
async def inventory(
    request: Request,
    session: Session,
    sku: Annotated[str, Query(max_length=64)] = "",
    warehouse: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    visible = await _visible_warehouses(session, viewer.principal)
    codes = {w.code for w in visible}
    if warehouse and warehouse not in codes:
        raise ConsoleError(404, f"No active warehouse '{warehouse}' you may see.")
    sku = sku.strip()
    scope = visible_warehouses(viewer.principal)
    levels = [
        lv
        for lv in await inventory_service.list_levels(
            session,
            warehouse_code=warehouse or None,
            sku=sku or None,
            limit=200,
            offset=0,
            scope=scope,
        )
        if lv.warehouse_code in codes
    ]
    ledger = [
        (code, m)
        for code, m in await inventory_service.list_movements(
            session,
            warehouse_code=warehouse or None,
            sku=sku or None,
            reference_id=None,
            limit=50,
            before_id=None,
            scope=scope,
        )
        if code in codes
    ]
    availability = (
        await inventory_service.availability(session, skus=[sku], warehouse_code=warehouse or None)
        if sku
        else []
    )
    replenishment = [
        r
        for r in await inventory_service.replenishment(session, limit=50)
        if r["warehouse"] in codes
    ]
    return render(
        request,
        "inventory.html",
        sku=sku,
        warehouse=warehouse,
        warehouses=visible,
        levels=levels,
        ledger=ledger,
        availability=availability,
        replenishment=replenishment,
        adjustments=ADJUSTMENTS,
        done=_done(request),
    )


@router.post("/inventory/adjustments", response_class=HTMLResponse)
async def adjust(request: Request, session: Session) -> Response:
    viewer = await viewer_for(request, session, WAREHOUSE)
    data = await checked_form(request, viewer)
    if not field(data, "reason"):
        raise ConsoleError(422, "Say why the stock changes (the reason goes in the ledger).")
    try:
        quantity = int(field(data, "quantity"))
    except ValueError as exc:
        raise ConsoleError(422, "The quantity must be a whole number.") from exc
    body = AdjustmentCreate(  # the API's own validation of an adjustment
        warehouse=field(data, "warehouse"),
        sku=field(data, "sku"),
        type=field(data, "type"),  # validated by the schema
        quantity=quantity,
        reason=field(data, "reason"),
        reference=field(data, "reference") or None,
    )
    await _warehouse(session, viewer.principal, body.warehouse)
    view = await inventory_service.adjust_stock(
        session,
        warehouse_code=body.warehouse,
        sku=body.sku,
        kind=body.type,
        quantity=body.quantity,
        expected_on_hand=None,
        reason=body.reason,
        reference=body.reference,
        actor=viewer.principal.actor,
        scope=visible_warehouses(viewer.principal),
    )
    code, sku = body.warehouse, body.sku
    if view.available > 0:  # as the API does: orders waiting for this SKU are filled now
        await backorders.fill_after_stock_change(
            session,
            skus=[sku],
            actor=viewer.principal.actor,
            actor_role=viewer.role.value,
            request_id=request_id_var.get(),
        )
    query = urlencode({"sku": sku, "warehouse": code, "done": "adjusted"})
    return redirect(f"{PREFIX}/inventory?{query}")


# ---- integrations --------------------------------------------------------------------------


DELIVERY_STATUSES = ("pending", "delivering", "failed", "dead", "delivered")


@router.get("/integrations", response_class=HTMLResponse)
async def integrations(
    request: Request,
    session: Session,
    status: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    await viewer_for(request, session, ADMIN)
    subs = await outbound_service.list_subscriptions(session)
    wanted = (
        [status] if status in {"pending", "delivering", "failed", "dead", "delivered"} else None
    )
    deliveries, _ = await outbound_service.list_deliveries(
        session, filters=outbound_service.DeliveryFilter(status=wanted), limit=50, cursor=None
    )
    inbox, _ = await inbound_service.list_inbox(
        session,
        filters=inbound_service.InboxFilter(status=["failed", "pending"]),
        limit=50,
        cursor=None,
    )
    by_sub = Counter(d.subscription_id for d in deliveries if d.status in {"failed", "dead"})
    return render(
        request,
        "integrations.html",
        subscriptions=subs,
        failing=by_sub,
        deliveries=deliveries,
        inbox=inbox,
        status=status,
        done=_done(request),
    )


@router.post("/integrations/deliveries/{delivery_id}/redeliver", response_class=HTMLResponse)
async def redeliver(request: Request, session: Session, delivery_id: BigId) -> Response:
    viewer = await viewer_for(request, session, ADMIN)
    await checked_form(request, viewer)
    await outbound_service.redeliver(session, delivery_id=delivery_id)
    return redirect(f"{PREFIX}/integrations?done=redelivered")


@router.post("/integrations/inbox/{inbox_id}/replay", response_class=HTMLResponse)
async def replay(request: Request, session: Session, inbox_id: BigId) -> Response:
    viewer = await viewer_for(request, session, ADMIN)
    await checked_form(request, viewer)
    row = await inbound_service.replay(
        session, inbox_id=inbox_id, request_id=request_id_var.get(), apply=intake_flow.apply_event
    )
    # the outcome is recorded either way (attempts, error): show it rather than roll it back
    done = "replay_failed" if row.status == "failed" else "replayed"
    return redirect(f"{PREFIX}/integrations?done={done}")
