"""What every console page shares: the templates, the signed-in viewer and what their role may
open, CSRF checks, form parsing, and errors shown as pages (not problem+json).

Errors: a service's :class:`~oms.shared.errors.ProblemError` (the same errors the API answers
with) reaches :class:`ConsoleRoute`, which renders it as a page with the same status; the
request's transaction was rolled back by the session dependency before that, so a refused
action changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.console import sessions
from oms.console.sessions import Lifetime, Viewer
from oms.shared.clock import utcnow
from oms.shared.errors import ProblemError
from oms.shared.roles import Role
from oms.webhooks.inbound.money import exponent
from oms.webhooks.outbound.targets import redact

log = logging.getLogger("oms.console")

PREFIX = "/console"
STATIC = Path(__file__).resolve().parent.parent / "static" / "console"
"""htmx (vendored, see htmx.LICENSE), the stylesheet; served at /console/static."""
COOKIE = "oms_console"
SIGN_IN_CSRF_COOKIE = "oms_console_signin"
MAX_FORM_FIELDS = 200

ADMIN = frozenset({Role.ADMIN})
READERS = frozenset({Role.ADMIN, Role.STOREFRONT, Role.FULFILLMENT})
"""Who may read orders (as ``GET /v1/orders``: storefront keys see their channel only)."""
MOVERS = READERS
"""Who may move an order (``POST /v1/orders/{id}/transitions``; the state machine also checks
each move's roles)."""
WAREHOUSE = frozenset({Role.ADMIN, Role.FULFILLMENT})
"""Pick/pack/ship, the stock ledger and adjustments (the API's fulfillment operations)."""

SECURITY_HEADERS = {
    # no inline script or style anywhere in the console: only files it serves itself
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NAV: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("Dashboard", "/console/dashboard", ADMIN),
    ("Orders", "/console/orders", READERS),
    ("Warehouse", "/console/warehouse", WAREHOUSE),
    ("Inventory", "/console/inventory", WAREHOUSE),
    ("Integrations", "/console/integrations", ADMIN),
)


class ConsoleError(Exception):
    """Show an error page with this status and message."""

    def __init__(self, status: int, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {403: "Not allowed", 404: "Not found"}.get(status, "Refused")


class SignInRequired(Exception):
    """No live session: go to the sign-in page (and come back here afterwards)."""


# ---- templates -----------------------------------------------------------------------------


def money(amount: int | None, currency: str) -> str:
    """Minor units as a decimal amount with its currency (``1999, EUR`` -> ``19.99 EUR``)."""
    if amount is None:
        return "–"
    digits = exponent(currency)
    if digits == 0:
        return f"{amount:,} {currency}"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole:,}.{frac:0{digits}d} {currency}"


def when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration (``5400`` -> ``1 h 30 min``)."""
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours / 24:.1f} days"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f} %"


def humanize(value: str | None) -> str:
    """``country_not_served`` -> ``Country not served``."""
    if not value:
        return ""
    text = value.replace("_", " ")
    return text[:1].upper() + text[1:]


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    money=money, when=when, duration=duration, percent=percent, humanize=humanize, redact=redact
)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page. htmx requests get the whole page too and pick their part (``hx-select``)."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    nav = [
        (label, href, href == request.url.path or request.url.path.startswith(href + "/"))
        for label, href, roles in NAV
        if viewer is not None and viewer.role in roles
    ]
    html = environment.get_template(template).render(
        request=request,
        viewer=viewer,
        csrf=viewer.csrf_token if viewer else "",
        nav=nav,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """After a form: see the result with a GET (POST/redirect/GET)."""
    return RedirectResponse(url, status_code=303)


# ---- who is signed in ----------------------------------------------------------------------


def lifetime(request: Request) -> Lifetime:
    settings = request.app.state.settings
    return Lifetime(
        idle=timedelta(minutes=settings.console_session_idle_minutes),
        absolute=timedelta(hours=settings.console_session_max_hours),
    )


async def viewer_for(request: Request, session: AsyncSession, roles: Iterable[Role]) -> Viewer:
    """The signed-in viewer if their role may open this page; else sign in (no session) or a
    403 page (their key's role may not)."""
    session_id = request.cookies.get(COOKIE)
    viewer = None
    if session_id:
        viewer = await sessions.load(
            session, session_id=session_id, lifetime=lifetime(request), now=utcnow()
        )
    if viewer is None:
        raise SignInRequired
    request.state.viewer = viewer
    if viewer.role not in frozenset(roles):
        raise ConsoleError(
            403,
            f"A {viewer.role.value} key may not open this page: it needs one of "
            + ", ".join(sorted(r.value for r in roles))
            + ".",
        )
    return viewer


async def form(request: Request) -> dict[str, list[str]]:
    """The URL-encoded form of a POST (the console's forms send nothing else)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise ConsoleError(415, "Send the form as application/x-www-form-urlencoded.")
    body = (await request.body()).decode("utf-8", "replace")
    out: dict[str, list[str]] = {}
    for name, value in parse_qsl(body, keep_blank_values=True)[:MAX_FORM_FIELDS]:
        out.setdefault(name, []).append(value)
    refuse_nul(out.items())
    return out


def refuse_nul(items: Iterable[tuple[str, str | list[str]]]) -> None:
    """A 422 page for a NUL character in a form or query (Postgres cannot store it; the API
    answers the same with ``invalid_character``)."""
    for name, value in items:
        values = [value] if isinstance(value, str) else value
        if "\x00" in name or any("\x00" in v for v in values):
            raise ConsoleError(
                422, "Text cannot contain a NUL character (\\u0000).", title="Not valid"
            )


def field(data: dict[str, list[str]], name: str) -> str:
    """A form field's first value, stripped ('' when absent)."""
    return (data.get(name) or [""])[0].strip()


def whole_number(value: str, name: str, *, digits: int = 18) -> int:
    """A form or query value of ASCII digits (at most ``digits``) as an int; a 422 page
    otherwise (``str.isdigit`` also accepts ``²``, which ``int`` refuses)."""
    if not (value.isascii() and value.isdigit() and len(value) <= digits):
        raise ConsoleError(422, f"{name}: '{value[:40]}' is not a whole number.")
    return int(value)


async def checked_form(request: Request, viewer: Viewer) -> dict[str, list[str]]:
    """The form of a state-changing request, refused (403) unless it carries the session's
    CSRF token: another site can make the browser send the cookie, not read the token."""
    data = await form(request)
    if not sessions.same_token(field(data, "csrf_token"), viewer.csrf_token):
        raise ConsoleError(
            403,
            "The form's security token is missing or wrong (CSRF). Reload the page and try again.",
            title="Form refused",
        )
    return data


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# ---- the route class: errors as pages, security headers ------------------------------------


class ConsoleRoute(APIRoute):
    """A console route: errors become pages; every answer gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                refuse_nul(request.query_params.multi_items())
                response = await handler(request)
            except SignInRequired:
                target = PREFIX  # after a form: the form's URL takes POSTs only
                if request.method == "GET":
                    target = request.url.path
                    if request.url.query:
                        target += "?" + request.url.query
                response = redirect(f"{PREFIX}/sign-in?next={quote(target, safe='')}")
            except ConsoleError as exc:
                response = render(
                    request, "error.html", exc.status, title=exc.title, message=exc.message
                )
            except RequestValidationError as exc:  # a malformed id in the path or query
                response = render(
                    request,
                    "error.html",
                    404 if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()) else 422,
                    title="Not found or not valid",
                    message="; ".join(
                        f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                        for e in exc.errors()[:5]
                    ),
                )
            except ValidationError as exc:  # a form checked with the API's own schema
                response = render(
                    request,
                    "error.html",
                    422,
                    title="The form is not valid",
                    message="; ".join(
                        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                        for e in exc.errors()[:5]
                    ),
                )
            except ProblemError as exc:
                response = render(
                    request,
                    "error.html",
                    exc.status,
                    title=exc.title,
                    message=exc.detail,
                    code=exc.code,
                )
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
        if "\\" not in value and "//" not in value:
            return value
    return PREFIX
