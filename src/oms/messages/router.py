"""HTTP routes of customer messages (admin): templates and previews, rules per sales channel,
providers with write-only secrets, opt-outs, and an order's message log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.messages import service
from oms.messages.rendering import TemplateSource
from oms.messages.schemas import (
    Channel,
    MessageRead,
    OptOutRead,
    PreviewRead,
    PreviewRequest,
    ProviderRead,
    RuleRead,
    RuleWrite,
    SmsWrite,
    SmtpWrite,
    TemplateRead,
    TemplateWrite,
)
from oms.shared.clock import utcnow
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role
from oms.tracking.redaction import TemplatePathRoute

router = APIRouter(prefix="/v1", tags=["messages"])
# an address in a path is personal data: these routes are logged by their template
opt_outs = APIRouter(prefix="/v1", tags=["messages"], route_class=TemplatePathRoute)
"""Mounted by ``oms.main`` next to ``router``."""
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

EventType = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z0-9_.\-]+$", examples=["order.placed"]),
]
Lang = Annotated[
    str,
    Path(
        min_length=2,
        max_length=35,
        pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$",
        examples=["it"],
        description="BCP 47 language tag (`it`, `en-GB`); matched case-insensitively",
    ),
]
SalesChannel = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["web"])
]
Address = Annotated[
    str,
    Path(
        min_length=3,
        max_length=320,
        description="An email address (email) or a phone number (sms), as on orders",
        examples=["ada@example.com"],
    ),
]


@router.get(
    "/messages/templates",
    response_model=list[TemplateRead],
    summary="Message templates in effect",
    description=(
        "Every template oms would use: the packaged defaults (English and Italian, for every "
        "customer event) and the ones saved through the API, which replace the default of the "
        "same event, channel and language (`source`). Filter by event type, channel, language."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def list_templates(
    session: Session,
    principal: Admin,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    channel: Channel | None = None,
    language: Annotated[str | None, Query(max_length=35)] = None,
) -> list[TemplateRead]:
    found = await service.list_templates(
        session, event_type=event_type, channel=channel, language=language
    )
    return [TemplateRead.model_validate(t) for t in found]


@router.put(
    "/messages/templates/{event_type}/{message_channel}/{language}",
    response_model=TemplateRead,
    summary="Save a message template",
    description=(
        "Creates or replaces the template of an event, channel and language. Jinja2 syntax in "
        "a sandbox: no code runs, attributes starting with `_` are refused, every name must be "
        "in the event's context (`order.number`, `order.customer_name`, `order.lines`, "
        "`order.total`, `shipment.carrier`, `shipment.tracking_number`, "
        "`shipment.tracking_link`, `shipment.deliver_by`, `refund.amount`, `tracking_url`...). "
        "The HTML body is autoescaped and may not carry scripts, event handlers or "
        "`javascript:` links. The template is rendered against a sample order before it is "
        "saved: 422 `template_invalid` (with the `part` and `reason`) if it fails; 422 "
        "`unknown_event_type` for an event type that is not registered or not about an order."
    ),
    responses=problems(422, 401, 403, 503),
)
async def put_template(
    event_type: EventType,
    message_channel: Channel,
    language: Lang,
    body: TemplateWrite,
    session: Session,
    principal: Admin,
) -> TemplateRead:
    saved = await service.put_template(
        session,
        event_type=event_type,
        channel=message_channel,
        language=language,
        source=TemplateSource(body.subject, body.body_text, body.body_html),
        actor=principal.actor,
        now=utcnow(),
    )
    return TemplateRead.model_validate(saved)


@router.delete(
    "/messages/templates/{event_type}/{message_channel}/{language}",
    status_code=204,
    response_class=Response,
    summary="Remove a saved template",
    description="The packaged default, if there is one, applies again. 404 `template_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_template(
    event_type: EventType,
    message_channel: Channel,
    language: Lang,
    session: Session,
    principal: Admin,
) -> Response:
    await service.delete_template(
        session, event_type=event_type, channel=message_channel, language=language
    )
    return Response(status_code=204)


@router.post(
    "/messages/preview",
    response_model=PreviewRead,
    summary="Preview a message against a real order",
    description=(
        "Renders the template in effect for (event type, channel, language), or the `template` "
        "in the body (not saved), with a real order's data: what its customer would receive. "
        "Nothing is sent. Without `language`, the one the order's message would use (the "
        "order's, then its channel's default, then `OMS_MESSAGE_FALLBACK_LANGUAGE`). 404 for "
        "an unknown order or `template_not_found`; 422 `template_invalid`, "
        "`unknown_event_type`."
    ),
    responses=problems(404, *AUTH_PROBLEMS),
)
async def preview(
    body: PreviewRequest, request: Request, session: Session, principal: Admin
) -> PreviewRead:
    source = None
    if body.template is not None:
        t = body.template
        source = TemplateSource(t.subject, t.body_text, t.body_html)
    language, recipient, rendered = await service.preview(
        session,
        settings=request.app.state.settings,
        order_id=body.order_id,
        event_type=body.event_type,
        channel=body.channel,
        language=body.language,
        source=source,
        now=utcnow(),
    )
    return PreviewRead(
        language=language,
        recipient=recipient,
        subject=rendered.subject,
        body_text=rendered.body_text,
        body_html=rendered.body_html,
    )


@router.get(
    "/messages/rules/{sales_channel}",
    response_model=RuleRead,
    summary="Which events send which messages, for a sales channel",
    description="The saved rules of the channel, or the defaults (`source`).",
    responses=problems(*AUTH_PROBLEMS),
)
async def get_rule(sales_channel: SalesChannel, session: Session, principal: Admin) -> RuleRead:
    return RuleRead.model_validate(await service.get_rule(session, sales_channel=sales_channel))


@router.put(
    "/messages/rules/{sales_channel}",
    response_model=RuleRead,
    summary="Set which events send which messages, for a sales channel",
    description=(
        "Replaces the channel's rules: for each event type, whether its customer gets an email "
        "and/or an SMS (events not listed send nothing), and the default language for orders "
        "that name none. Any registered event type about an order may be listed (e.g. "
        "`shipment.ready_for_pickup`); 422 `unknown_event_type` otherwise. Applies to events "
        "recorded from now on that the worker has not produced yet."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def put_rule(
    sales_channel: SalesChannel, body: RuleWrite, session: Session, principal: Admin
) -> RuleRead:
    saved = await service.put_rule(
        session,
        sales_channel=sales_channel,
        default_language=body.default_language,
        rules={k: v.model_dump() for k, v in body.events.items()},
        now=utcnow(),
    )
    return RuleRead.model_validate(saved)


def _provider_read(view: service.ProviderView) -> ProviderRead:
    return ProviderRead(
        channel=view.channel,
        source=view.source,
        settings=view.settings,
        secret_set=view.secret_set,
        updated_at=view.updated_at,
    )


@router.get(
    "/messages/providers/{message_channel}",
    response_model=ProviderRead,
    summary="A channel's provider (the secret shown as set or not)",
    description=(
        "The SMTP server (email) or the HTTP SMS provider (sms) messages are sent with: saved "
        "through the API (`api`), else for email the `OMS_SMTP_*` settings (`settings`), else "
        "`none` (messages wait). The password / token is never returned: `secret_set` only."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def get_provider(
    message_channel: Channel, request: Request, session: Session, principal: Admin
) -> ProviderRead:
    view = await service.describe_provider(
        session, channel=message_channel, settings=request.app.state.settings
    )
    return _provider_read(view)


@router.put(
    "/messages/providers/email",
    response_model=ProviderRead,
    summary="Set the SMTP server for customer emails",
    description=(
        "STARTTLS (`starttls`, refused if the server cannot), implicit TLS (`tls`) or none "
        "(local relays), with optional AUTH. `password` is write-only: omitted keeps the stored "
        "one, `null` clears it; it is never returned nor logged."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def put_email_provider(
    body: SmtpWrite, request: Request, session: Session, principal: Admin
) -> ProviderRead:
    values = body.model_dump(exclude={"password"})
    await service.put_provider(
        session,
        channel="email",
        values=values,
        secret=body.password,
        keep_secret="password" not in body.model_fields_set,
        allow_private=True,  # (SMTP relays are often local: the host is not a URL target)
        now=utcnow(),
    )
    view = await service.describe_provider(
        session, channel="email", settings=request.app.state.settings
    )
    return _provider_read(view)


@router.put(
    "/messages/providers/sms",
    response_model=ProviderRead,
    summary="Set the HTTP SMS provider",
    description=(
        "A provider taking one JSON POST per message (`to`, `from`, `text`; `Authorization: "
        "Bearer <token>`, `Idempotency-Key`), answering 2xx with the message's id in "
        "`id_field`. `token` is write-only: omitted keeps the stored one, `null` clears it. "
        "The URL is held to the policy of webhook targets: 422 `sms_url_not_allowed` (with the "
        "`reason`) for credentials in it or a host that is a loopback, private, link-local or "
        "cloud metadata address (allowed, but metadata, with "
        "`OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS`); the name is resolved and checked again at every "
        "send, and the request goes to the checked address."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def put_sms_provider(
    body: SmsWrite, request: Request, session: Session, principal: Admin
) -> ProviderRead:
    await service.put_provider(
        session,
        channel="sms",
        values=body.model_dump(exclude={"token"}),
        secret=body.token,
        keep_secret="token" not in body.model_fields_set,
        allow_private=request.app.state.settings.webhook_allow_private_targets,
        now=utcnow(),
    )
    view = await service.describe_provider(
        session, channel="sms", settings=request.app.state.settings
    )
    return _provider_read(view)


@router.get(
    "/orders/{order_id}/messages",
    response_model=list[MessageRead],
    summary="The messages sent (or not) to an order's customer",
    description=(
        "Every message produced for the order's events, oldest first: channel, recipient, "
        "language, status, and each attempt (outcome, provider id, error, duration)."
    ),
    responses=problems(404, *AUTH_PROBLEMS),
)
async def order_messages(
    order_id: uuid.UUID, session: Session, principal: Admin
) -> list[MessageRead]:
    found = await service.messages_of(session, order_id=order_id)
    return [MessageRead.model_validate(m) for m in found]


@opt_outs.put(
    "/messages/opt-outs/{message_channel}/{address}",
    response_model=OptOutRead,
    summary="Opt a customer's address out of a channel",
    description=(
        "No message goes to this email address (email) or phone number (sms) from now on; "
        "messages produced for it are logged as `skipped`. Idempotent."
    ),
    responses=problems(*AUTH_PROBLEMS),
)
async def opt_out(
    message_channel: Channel, address: Address, session: Session, principal: Admin
) -> OptOutRead:
    found = await service.opt_out(session, channel=message_channel, address=address, now=utcnow())
    return OptOutRead.model_validate(found)


@opt_outs.delete(
    "/messages/opt-outs/{message_channel}/{address}",
    response_model=OptOutRead,
    summary="Opt an address back in",
    description="Messages go to the address again (idempotent).",
    responses=problems(*AUTH_PROBLEMS),
)
async def opt_in(
    message_channel: Channel, address: Address, session: Session, principal: Admin
) -> OptOutRead:
    return OptOutRead.model_validate(
        await service.opt_in(session, channel=message_channel, address=address)
    )


@opt_outs.get(
    "/messages/opt-outs/{message_channel}/{address}",
    response_model=OptOutRead,
    summary="Whether an address is opted out",
    description="`opted_out` and since when.",
    responses=problems(*AUTH_PROBLEMS),
)
async def get_opt_out(
    message_channel: Channel, address: Address, session: Session, principal: Admin
) -> OptOutRead:
    return OptOutRead.model_validate(
        await service.get_opt_out(session, channel=message_channel, address=address)
    )
