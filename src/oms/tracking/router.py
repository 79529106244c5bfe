"""The customer's tracking page (HTML) and its JSON, reached by a signed link: no API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse

from oms.deps import Session
from oms.shared.clock import utcnow
from oms.shared.errors import ProblemError
from oms.shared.openapi import problems
from oms.tracking import page, service
from oms.tracking.redaction import TemplatePathRoute
from oms.tracking.schemas import TrackingRead

# the token is a credential: logged by the route's template, never as a working link
router = APIRouter(tags=["tracking"], route_class=TemplatePathRoute)

Token = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The signed token of a tracking link (from a message to the customer)",
        examples=["q1ZOUn8Sk2bJm6HUn7wOBwAAAABnJ8rQ3uNmTz0Lx1E7nqXDfz0vJ3tWmG1Xa4w"],
    ),
]

_DESCRIPTION = (
    "No API key: the signed link is the authorisation (HMAC-SHA256 over the order and an expiry, "
    "keyed by `OMS_TRACKING_SECRET` or a key kept in the database). Shows the order number, "
    "status, destination city and country, each parcel (carrier, tracking number and link, "
    "shipped/delivered days, the promised days when the order has them) and returns; never "
    "prices, names, contact details or internal ids. 404 `tracking_link_invalid` for a "
    "malformed, altered or unknown link; 410 `tracking_link_expired` past its expiry "
    "(`OMS_TRACKING_LINK_TTL_DAYS` after the message that carried it)."
)


@router.get(
    "/v1/tracking/{token}",
    response_model=TrackingRead,
    summary="An order's tracking, as its customer sees it (JSON)",
    description=_DESCRIPTION,
    responses=problems(404, 410, 422, 503, bearer=False, d410="The tracking link has expired"),
)
async def tracking_json(
    token: Token, request: Request, response: Response, session: Session
) -> TrackingRead:
    # the URL is the credential: no shared cache keeps the answer (nor its errors), no Referer
    try:
        found = await service.view(
            session, settings=request.app.state.settings, token=token, now=utcnow()
        )
    except ProblemError as exc:
        exc.headers = {**page.API_HEADERS, **exc.headers}
        raise
    response.headers.update(page.API_HEADERS)
    return TrackingRead.model_validate(found.data)


@router.get("/track/{token}", response_class=HTMLResponse, include_in_schema=False)
async def tracking_page(token: str, request: Request, session: Session) -> HTMLResponse:
    """The customer's tracking page: the JSON's content as HTML (README "Tracking page"); a
    page, not an API operation, so not in the OpenAPI document. Bad links get HTML error pages
    (404, 410), never a problem document."""
    try:
        found = await service.view(
            session, settings=request.app.state.settings, token=token, now=utcnow()
        )
    except ProblemError as exc:
        if exc.status not in (404, 410):
            raise
        return HTMLResponse(
            page.render_error(code=exc.code), status_code=exc.status, headers=page.HEADERS
        )
    body = page.render_page(found.data, language=found.language)
    return HTMLResponse(body, headers=page.HEADERS)
