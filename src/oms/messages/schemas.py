"""Request and response bodies of the messages API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "sms"]
Language = Annotated[
    str,
    Field(
        min_length=2,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        examples=["it"],
        description="BCP 47 language tag (`it`, `en-GB`); matched case-insensitively",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class TemplateWrite(Strict):
    """A template: Jinja2 syntax, run in a sandbox (no code, no underscore attributes), every
    name must exist in the event's context; the HTML body is autoescaped and may carry no
    active content. SMS: `body_text` only."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "Ordine {{ order.number }} spedito",
                    "body_text": "Ciao {{ order.customer_name }}, il tuo ordine "
                    "{{ order.number }} è in viaggio: {{ tracking_url }}",
                    "body_html": "<p>Ciao {{ order.customer_name }}, il tuo ordine "
                    '<a href="{{ tracking_url }}">{{ order.number }}</a> è in viaggio.</p>',
                }
            ]
        },
    )

    subject: Annotated[str, Field(max_length=1000)] | None = None
    body_text: Annotated[str, Field(min_length=1, max_length=65_536)]
    body_html: Annotated[str, Field(max_length=65_536)] | None = None


class TemplateRead(BaseModel):
    event_type: str
    channel: Channel
    language: str
    source: Literal["default", "saved"] = Field(
        description="`saved` through the API, or the packaged `default`"
    )
    subject: str | None
    body_text: str
    body_html: str | None
    updated_at: datetime | None


class PreviewRequest(Strict):
    """Render a template against a real order: the saved (or default) template of
    (event_type, channel, language), or the `template` given here (not saved)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "8f14e45f-ceea-467f-a0e6-1c2b3d4e5f60",
                    "event_type": "shipment.shipped",
                    "channel": "email",
                    "language": "it",
                }
            ]
        },
    )

    order_id: uuid.UUID
    event_type: Annotated[str, Field(min_length=1, max_length=64)]
    channel: Channel
    language: Language | None = Field(
        default=None, description="Unset: the language the order's message would use"
    )
    template: TemplateWrite | None = None


class PreviewRead(BaseModel):
    language: str
    recipient: str | None = Field(description="Who the message would go to (none: no address)")
    subject: str | None
    body_text: str
    body_html: str | None


class EventChannels(Strict):
    email: bool = False
    sms: bool = False


class RuleWrite(Strict):
    """Which events of the sales channel send an email and/or an SMS (events not listed send
    nothing), and the language of orders that name none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "default_language": "it",
                    "events": {
                        "order.placed": {"email": True},
                        "shipment.shipped": {"email": True, "sms": True},
                        "order.delivered": {"sms": True},
                    },
                }
            ]
        },
    )

    default_language: Language = "en"
    events: dict[Annotated[str, Field(max_length=64)], EventChannels] = Field(max_length=100)


class RuleRead(BaseModel):
    sales_channel: str
    source: Literal["default", "saved"]
    default_language: str | None
    events: dict[str, EventChannels]


class SmtpWrite(Strict):
    """SMTP server. `password` is write-only: omit it to keep the stored one, `null` to clear."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "host": "smtp.example.com",
                    "port": 587,
                    "security": "starttls",
                    "sender": "Shop <orders@shop.example>",
                    "username": "orders@shop.example",
                    "password": "app-password",
                }
            ]
        },
    )

    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    sender: Annotated[str, Field(min_length=3, max_length=320)]
    username: Annotated[str, Field(max_length=320)] | None = None
    password: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="Write-only; never returned"
    )


class SmsWrite(Strict):
    """A JSON-over-HTTP SMS provider. `token` is write-only (sent as a Bearer token): omit it to
    keep the stored one, `null` to clear."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://sms.example.com/v1/messages",
                    "sender": "SHOP",
                    "token": "sk_live_...",
                    "id_field": "id",
                }
            ]
        },
    )

    url: Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://")]
    sender: Annotated[str, Field(max_length=32)] | None = None
    token: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="Write-only; never returned"
    )
    id_field: Annotated[str, Field(min_length=1, max_length=64)] = "id"


class ProviderRead(BaseModel):
    channel: Channel
    source: Literal["api", "settings", "none"] = Field(
        description="`api`: saved here; `settings`: the OMS_SMTP_* settings; `none`"
    )
    settings: dict[str, str | int | None] = Field(description="Everything but the secret")
    secret_set: bool = Field(description="Whether a password / token is stored (never shown)")
    updated_at: datetime | None


class OptOutRead(BaseModel):
    channel: Channel
    address: str
    opted_out: bool
    since: datetime | None


class MessageAttemptRead(BaseModel):
    attempt: int
    outcome: str = Field(description="`sent`, `retry`, `dead` or `lease_expired`")
    provider_message_id: str | None
    error: str | None
    duration_ms: int | None
    at: datetime


class MessageRead(BaseModel):
    id: int
    event_type: str
    channel: Channel
    recipient: str
    language: str
    status: str = Field(
        description="`pending`, `sending`, `failed` (retry due), `sent`, `dead`, `skipped` "
        "(opted out or no template)"
    )
    subject: str | None
    attempts: list[MessageAttemptRead]
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
